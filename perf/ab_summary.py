"""The summary of an A/B run (``perf/ab.sh``, ``perf/routers_ab.sh``): the
medians of each side's runs, alternated round by round on one machine, and
their ratio, from ``OUT/{before,after}-b{1,100}-rN.json``.

    python -m flin_perf.ab_summary OUT [BEFORE_LABEL AFTER_LABEL]

Writes and prints ``OUT/summary.md``: ops/s per phase and batch size, and
the server's CPU per op (``server_cpu_us_per_op``, all roles).
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import sys


def summary(out: str, before: str = "before", after: str = "after") -> str:
    ops: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    for path in sorted(glob.glob(os.path.join(out, "*-b*-r*.json"))):
        build, batch = os.path.basename(path).split("-")[:2]
        for res in json.load(open(path))["results"]:
            if res["target"] == "flin":
                key = (batch, res["phase"], build)
                ops.setdefault(key, []).append(res["ops_per_sec"])
                per_op = (res.get("server_cpu_us_per_op") or {}).get("total")
                if per_op is not None:
                    cpu.setdefault(key, []).append(per_op)
    lines = ["| batch | phase | %s ops/s (runs) | %s ops/s (runs) | %s / %s (medians) "
             "| server us/op %s / %s (medians) |" % (before, after, after, before, before, after),
             "|---|---|---|---|---|---|"]
    for batch, phase in sorted({(b, p) for b, p, _ in ops}, key=lambda k: (int(k[0][1:]), k[1])):
        b, a = ops[(batch, phase, "before")], ops[(batch, phase, "after")]
        mb, ma = statistics.median(b), statistics.median(a)
        cb, ca = cpu.get((batch, phase, "before")), cpu.get((batch, phase, "after"))
        cpu_col = ("%.1f / %.1f" % (statistics.median(cb), statistics.median(ca))
                   if cb and ca else "")
        def fmt(xs: list[float]) -> str:
            return ", ".join("%.1fK" % (x / 1e3) for x in xs)
        lines.append("| %s | %s | %.1fK (%s) | %.1fK (%s) | %.3f | %s |"
                     % (batch[1:], phase, mb / 1e3, fmt(b), ma / 1e3, fmt(a), ma / mb, cpu_col))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    return text


if __name__ == "__main__":
    print(summary(*sys.argv[1:]), end="")
