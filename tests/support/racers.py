"""Run the same snippet in N separate client PROCESSES, released together.

Each process makes its own ``flin.Client``, pings, says it is ready, waits
for the go line on stdin, runs ``body`` (which sees ``c``, ``me`` and
``endpoint`` and assigns ``result``) and prints ``repr(result)`` as its
last line. The parent returns the evaluated results in process order.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from .cluster import ROOT

_PRELUDE = """\
import sys, flin
endpoint, me = sys.argv[1], int(sys.argv[2])
c = flin.Client(endpoint, timeout=30.0)
assert c.ping()
print("ready", flush=True)
sys.stdin.readline()
result = None
"""


def run_racers(endpoint: str, n: int, body: str, timeout: float = 120.0) -> list:
    code = _PRELUDE + textwrap.dedent(body) + "\nc.close()\nprint(repr(result), flush=True)\n"
    procs = [subprocess.Popen([sys.executable, "-c", code, endpoint, str(i)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", "racer did not start: %r %s" % (line, p.stderr.read())
        for p in procs:  # release them together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, "racer failed:\n%s" % err
            results.append(ast.literal_eval(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
