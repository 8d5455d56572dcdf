"""One host's data folder: its manifest (``flin.json``), its owner lock
(``flin.lock``), the owner-only run folder (``run/``: sockets, the
supervisor's state) and how to find and stop the supervisor serving it. The
supervisor, the offline tools (``flin.ops``) and the CLI share this; it
imports no process role.

    DATA/flin.json          format, shard count, ring parameters (written once)
    DATA/flin.lock          the owner lock; holds "PID ROLE" of its holder
    DATA/shard-NN/          one LevelDB per shard
    DATA/run/children.json  deaths and broken shards, for ``flin status``
    DATA/run/shards.link    the router's Unix socket for the workers

One cluster, one owner: the supervisor takes ``flock(LOCK_EX)`` on
``flin.lock`` before it touches anything and holds it for its life. Its
children inherit the open lock, so the folder stays owned until the last
process of that cluster has exited, even when the supervisor was SIGKILLed:
a new start waits for them (their LevelDB locks go with them) instead of
failing or racing them. ``flin repair`` and ``flin restore`` take the same
lock, so they never rewrite the files of a live cluster, and only the owner
removes files in ``run/``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import time
from typing import Any

from ..config import Config
from ..ring import Ring
from . import processes

log = logging.getLogger("flin.supervisor")

FORMAT_VERSION = 1
MANIFEST = "flin.json"
LOCK = "flin.lock"


class StartError(Exception):
    """The cluster cannot start; the message says why and what to do."""


class Busy(StartError):
    """The data folder is owned by live processes (a cluster, or what is left of one)."""


def write_json(path: str, obj: Any, durable: bool = True) -> None:
    """Replace ``path`` with ``obj`` as JSON atomically (a temporary file
    renamed over it); ``durable`` also fsyncs the file before the rename."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2 if durable else None)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


# -- the owner lock ---------------------------------------------------------------
SUPERVISOR, REPAIR, RESTORE = "supervisor", "repair", "restore"   # who holds the lock
_WHO = {SUPERVISOR: "a Flin supervisor (pid %d) already serves %s",
        REPAIR: "`flin repair` (pid %d) is working on %s",
        RESTORE: "`flin restore` (pid %d) is writing %s"}


def lock_path(cfg: Config) -> str:
    """The data folder's owner lock; it holds ``PID ROLE`` of its holder."""
    return os.path.join(os.path.abspath(cfg.data), LOCK)


class Owner:
    """The held owner lock of a data folder. Forked children inherit it."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd

    def clear(self) -> None:
        """Name no holder any more, still holding the lock: a supervisor's
        exit lets go of it, so that ``stop`` returns once it is gone."""
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)

    def release(self) -> None:
        """Clear the holder and let go (the children must be gone by now)."""
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = -1


def _holder(fd: int) -> tuple[int, str] | None:
    """``(pid, role)`` written in the lock, None if it names none."""
    try:
        pid, role = os.pread(fd, 64, 0).decode().split()
        return int(pid), role
    except (OSError, ValueError):
        return None


def holders(path: str) -> list[int]:
    """The processes that have ``path`` open (read from /proc)."""
    real = os.path.realpath(path)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % name):
                if os.readlink("/proc/%s/fd/%s" % (name, fd)) == real:
                    found.append(int(name))
                    break
        except OSError:
            continue
    return sorted(found)


def take(cfg: Config, role: str, doing: str, wait: float = 1.0) -> Owner:
    """Take the owner lock of ``cfg.data`` (which must exist) as ``role``
    (``SUPERVISOR``, ``REPAIR``, ``RESTORE``), to do ``doing``.

    Raises ``Busy`` at once if a live holder has it. If only the processes
    of a dead supervisor hold it (they exit on their own: the kernel signals
    them when it dies), or a holder has not yet said who it is, waits up to
    ``wait`` s. ``StartError`` if the lock file cannot be opened."""
    path = lock_path(cfg)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartError("cannot open the owner lock %s: %s" % (path, exc.strerror)) from None
    deadline = time.monotonic() + wait
    said = False
    me = os.getpid()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise StartError("cannot lock %s: %s" % (path, exc.strerror)) from None
        else:
            mark = b"%d %s\n" % (me, role.encode())
            os.pwrite(fd, mark, 0)         # then cut: a reader never sees it empty
            os.ftruncate(fd, len(mark))
            return Owner(path, fd)
        holder = _holder(fd)
        others = [p for p in holders(path) if p != me]
        if holder is not None and processes.alive(holder[0]) and holder[0] in others:
            os.close(fd)
            raise Busy((_WHO.get(holder[1], "pid %d holds %s") % (holder[0], cfg.data))
                       + "; cannot " + doing)
        if time.monotonic() >= deadline:
            os.close(fd)
            raise Busy("processes %s of an earlier cluster still hold %s (kill them if "
                       "they are stuck); cannot %s" % (others or "(unknown)", cfg.data, doing))
        if not said and holder is not None and holder[1] == SUPERVISOR:
            log.warning("waiting for the processes of an earlier cluster on %s to exit "
                        "(pids %s)", cfg.data, others or "unknown")
            said = True
        time.sleep(0.05)


def owned(cfg: Config) -> bool:
    """Does any process hold the owner lock of ``cfg.data``?"""
    try:
        fd = os.open(lock_path(cfg), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)    # closing drops the probe's own shared lock, if it got one


def holder_of(cfg: Config) -> tuple[int, str] | None:
    """``(pid, role)`` that the lock of ``cfg.data`` names (maybe no longer true)."""
    try:
        fd = os.open(lock_path(cfg), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _holder(fd)
    finally:
        os.close(fd)


def running_pid(cfg: Config) -> int | None:
    """The pid of the supervisor serving ``cfg.data``, if one is alive."""
    holder = holder_of(cfg)
    if holder is None or holder[1] != SUPERVISOR or not processes.alive(holder[0]) \
            or not owned(cfg):
        return None
    return holder[0]


class StopTimeout(TimeoutError):
    """The cluster did not stop within the wait; the message says what still runs."""


def stop(cfg: Config, timeout: float = 30.0) -> bool:
    """SIGTERM the supervisor serving ``cfg.data`` and wait until every
    process of its cluster has exited (the folder is free to start again).
    False if none was running; ``StopTimeout`` if it is still running.
    With no supervisor but an earlier cluster's processes still exiting,
    waits for them too."""
    pid = running_pid(cfg)
    if pid is None:
        holder = holder_of(cfg)
        if holder is None or holder[1] != SUPERVISOR or not owned(cfg):
            return False      # nothing runs, or a repair or restore that stop must not touch
    else:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not owned(cfg):
            return True
        time.sleep(0.05)
    raise StopTimeout("the cluster on %s did not stop within %.0fs (processes %s still "
                      "run)"
                      % (cfg.data, timeout, holders(lock_path(cfg)) or pid))


# -- the manifest and the shard folders ---------------------------------------------
def load_manifest(cfg: Config) -> dict | None:
    """The data folder's manifest, None if it has none."""
    path = os.path.join(cfg.data, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)  # type: ignore[no-any-return]


def write_manifest(cfg: Config, ring: Ring, **extra: object) -> dict:
    """Write ``flin.json`` (atomically): the data format, shard count and ring."""
    manifest = {"format": FORMAT_VERSION, "shards": cfg.shards, "ring": ring.params(),
                "created": time.time(), **extra}
    write_json(os.path.join(cfg.data, MANIFEST), manifest)
    return manifest


def shard_present(cfg: Config, shard: int) -> bool:
    """Does the shard's LevelDB exist (a folder with its CURRENT file)?"""
    return os.path.exists(os.path.join(cfg.shard_dir(shard), "CURRENT"))


def create_shards(cfg: Config) -> None:
    """Create the shards' empty LevelDBs that do not exist yet: only ever for
    a new data folder, whose manifest says ``"creating"`` meanwhile (workers
    open theirs without ``create_if_missing``)."""
    import plyvel
    for shard in range(cfg.shards):
        if not shard_present(cfg, shard):
            try:
                plyvel.DB(cfg.shard_dir(shard), create_if_missing=True).close()
            except plyvel.Error as exc:
                raise StartError("cannot create shard %d in %s: %s"
                                 % (shard, cfg.shard_dir(shard), exc)) from None


def check_or_write_manifest(cfg: Config, ring: Ring) -> dict:
    """The data folder's manifest: created on first start (with its shards),
    then enforced, every shard's LevelDB included."""
    manifest = load_manifest(cfg)
    if manifest is not None and "cluster" in manifest:
        raise StartError("%s is node %s of cluster %s: start it with --etcd URL --cluster %s "
                         "--node %s" % (cfg.data, manifest.get("node"), manifest["cluster"],
                                        manifest["cluster"], manifest.get("node")))
    if manifest is None:
        if any(n.startswith("shard-") for n in os.listdir(cfg.data)):
            raise StartError("%s holds shard folders but no %s; refusing to guess "
                             "its layout" % (cfg.data, MANIFEST))
        # first the intent, so that a start interrupted while creating shards
        # is finished by the next one instead of refused
        manifest = write_manifest(cfg, ring, creating=True)
    if manifest.get("creating") is True and manifest.get("shards") == cfg.shards \
            and manifest.get("ring") == ring.params():
        create_shards(cfg)
        return write_manifest(cfg, ring)  # a folder without "creating" has all its shards
    if manifest.get("format") != FORMAT_VERSION:
        raise StartError("%s has data format %r; this Flin reads format %d"
                         % (cfg.data, manifest.get("format"), FORMAT_VERSION))
    if manifest.get("shards") != cfg.shards:
        raise StartError(
            "%s has %s shards, not %d. Start it without --shards (or with --shards %s); to "
            "change the count, `flin reshard --data %s --shards %d` once it runs, or offline "
            "`flin backup` it and `flin restore BACKUP --data NEW --shards %d`."
            % (cfg.data, manifest.get("shards"), cfg.shards, manifest.get("shards"), cfg.data,
               cfg.shards, cfg.shards))
    if manifest.get("ring") != ring.params():
        raise StartError("%s was made with ring %r, not %r"
                         % (cfg.data, manifest.get("ring"), ring.params()))
    missing = [s for s in range(cfg.shards) if not shard_present(cfg, s)]
    if missing:
        raise StartError(missing_shards_message(cfg, missing))
    return manifest


def missing_shards_message(cfg: Config, missing: list[int]) -> str:
    names = ", ".join("%d (%s)" % (s, cfg.shard_dir(s)) for s in missing[:4])
    more = " and %d more" % (len(missing) - 4) if len(missing) > 4 else ""
    return ("shard %s%s: no LevelDB there (the folder or its CURRENT file is missing), so "
            "its data is not in this folder. Flin creates shards only in a new data "
            "folder: put the shard's folder back and restart the cluster, or `flin "
            "restore` a backup into a new folder" % (names, more))
