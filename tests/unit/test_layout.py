"""The house rules of the source tree, checked: no import cycle, layers point
down, no file past 400 lines, and the installed package list is complete."""
from __future__ import annotations

import ast
import configparser
import os
import subprocess
import sys

import pytest

from tests.support.cluster import ROOT

MAX_LINES = 400


def _modules(package_dir: str, package: str) -> dict[str, str]:
    """Module name -> file for every .py under ``package_dir``."""
    out = {}
    for folder, _, files in os.walk(package_dir):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), package_dir)[:-3]
                parts = [package] + [p for p in rel.split(os.sep) if p != "__init__"]
                out[".".join(parts)] = os.path.join(folder, name)
    return out


def _imports(module: str, path: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports, at any depth of its code.
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    is_pkg = path.endswith("__init__.py")
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import mod`` depends on pkg.mod; ``from pkg import name``, on pkg
            names = [("%s.%s" % (target, a.name)) if "%s.%s" % (target, a.name) in known
                     else target for a in node.names]
        else:
            continue
        for name in names:
            if name in known and name != module:
                found.add(name)
    return found


def _graph(package_dir: str, package: str) -> dict[str, set[str]]:
    mods = _modules(package_dir, package)
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if colour.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in colour:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(graph):
        if m not in colour:
            found = visit(m)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("folder,package", [("flin", "flin"), ("perf", "flin_perf")])
def test_no_module_imports_in_a_circle(folder, package):
    graph = _graph(os.path.join(ROOT, folder), package)
    assert len(graph) > 5
    assert _cycle(graph) is None, "import cycle: %s" % " -> ".join(_cycle(graph) or [])


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


FLOOR = {"flin.protocol", "flin.linkframe", "flin.ring", "flin.errors", "flin.config", "flin.curve",
         "flin.figures", "flin.zmqflags", "flin.nodeview", "flin.zapgate"}
# what each layer may import (besides the floor and its own package)
ALLOWED = {
    "flin.client": set(),
    "flin.router": set(),
    "flin.shardworker": set(),
    "flin.ops": {"flin.supervisor.datadir"},
    "flin.cluster": {"flin.client", "flin.shardworker.encoding", "flin.shardworker.handoff",
                     "flin.shardworker.following"},
    "flin.supervisor": {"flin.router", "flin.shardworker", "flin.client", "flin.cluster"},
    "flin.cli": {"flin.client", "flin.supervisor", "flin.ops", "flin.cluster"},
}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_only_point_down(layer):
    graph = _graph(os.path.join(ROOT, "flin"), "flin")
    bad = []
    for mod, deps in graph.items():
        if _package_of(mod) != layer:
            continue
        for dep in deps:
            if dep in FLOOR or _package_of(dep) == layer or dep == "flin":
                continue
            if not any(dep == a or dep.startswith(a + ".") for a in ALLOWED[layer]):
                bad.append("%s imports %s" % (mod, dep))
    assert not bad, bad


def test_the_floor_imports_only_the_floor():
    graph = _graph(os.path.join(ROOT, "flin"), "flin")
    bad = ["%s imports %s" % (m, d) for m in FLOOR for d in graph[m] if d not in FLOOR]
    assert not bad, bad


@pytest.mark.parametrize("entry,forbidden", [
    ("flin", ["flin.router", "flin.shardworker", "flin.supervisor", "flin.config", "flin.ops",
              "flin.cli", "zmq.auth"]),
    ("flin.ops.backup", ["flin.router", "flin.shardworker"]),
    ("flin.ops.restore", ["flin.router", "flin.shardworker"]),
    ("flin.ops.repair", ["flin.router", "flin.shardworker"]),
])
def test_what_an_import_loads(entry, forbidden):
    """Measured in a fresh interpreter: the client loads no server code, the
    offline tools load neither the router nor the worker."""
    code = "import sys, %s; print('\\n'.join(sorted(sys.modules)))" % entry
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd="/").stdout.split()
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not bad, "%s loads %s" % (entry, bad)


def test_no_file_passes_400_lines():
    long = []
    for top in ("flin", "perf", "tests"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path) as f:
                        n = sum(1 for _ in f)
                    if n > MAX_LINES:
                        long.append("%s: %d" % (os.path.relpath(path, ROOT), n))
    assert not long, long


def test_setup_cfg_installs_every_package_and_no_top_level_perf():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    listed = set(cfg["options"]["packages"].split())
    on_disk = {m for m, p in _modules(os.path.join(ROOT, "flin"), "flin").items()
               if p.endswith("__init__.py")}
    assert on_disk <= listed, "missing from setup.cfg: %s" % sorted(on_disk - listed)
    assert "perf" not in listed and "flin_perf" in listed
    assert cfg["options"]["package_dir"].split() == ["flin_perf", "=", "perf"]


def test_every_package_says_what_it_owns_and_may_import():
    for pkg in ("client", "router", "shardworker", "supervisor", "ops", "cli"):
        doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, "flin", pkg, "__init__.py")).read()))
        assert doc and "import" in doc, "flin/%s/__init__.py needs a docstring with its imports" % pkg
