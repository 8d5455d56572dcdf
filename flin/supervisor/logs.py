"""Logging for every process of one host: one line per event, stamped with the
process's role. Quiet by default: ``flin start`` prints where it serves and
when it is ready; per-shard events are DEBUG; every warning and error stays.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

_base_factory = logging.getLogRecordFactory()


def set_log_role(role: str) -> None:
    """Stamp every log record of this process with ``role`` (the log format's
    ``%(role)s``): ``shard-7`` on every line a worker writes."""
    base = _base_factory

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.role = role
        return record
    logging.setLogRecordFactory(factory)


class OneLineFormatter(logging.Formatter):
    """One line per event: a traceback's lines are joined with `` | ``."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def setup_logging(level: str) -> None:
    """Log to stderr (``DATA/flin.log`` with ``--detach``), one line per event:
    time, pid, role (``supervisor``, ``router``, ``shard-N``, ``metrics``),
    logger, level, message. Children set their role in ``become_child``."""
    set_log_role("supervisor")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(
        "%(asctime)s %(process)d %(role)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
