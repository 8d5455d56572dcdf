#!/usr/bin/env bash
# A/B: the same `flin bench` runs against two builds, alternated round by
# round on one machine, so that both see the same noise. Each build is a
# virtual environment with flin installed (e.g. a worktree of the commit
# before a change, set up with its own scripts/_venv.sh).
#   perf/ab.sh BEFORE_VENV AFTER_VENV OUT [ROUNDS] [-- extra flin bench options]
# Writes OUT/{before,after}-b{1,100}-rN.json and OUT/summary.md (medians).
set -euo pipefail
before="$1"; after="$2"; out="$3"; rounds="${4:-3}"
shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
    for batch in 1 100; do
        for build in before after; do
            venv="$before"; [ "$build" = after ] && venv="$after"
            echo "round $r, batch $batch, $build" >&2
            "$venv/bin/flin" bench --batch "$batch" --no-progress \
                --json "$out/$build-b$batch-r$r.json" "$@" > "$out/$build-b$batch-r$r.txt"
        done
    done
done
"$after/bin/python" - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "*-b*-r*.json"))):
    build, batch = os.path.basename(path).split("-")[:2]
    for res in json.load(open(path))["results"]:
        if res["target"] == "flin":
            rows.setdefault((batch, res["phase"], build), []).append(res["ops_per_sec"])
lines = ["| batch | phase | before ops/s (runs) | after ops/s (runs) | after / before (medians) |",
         "|---|---|---|---|---|"]
for batch, phase in sorted({(b, p) for b, p, _ in rows}, key=lambda k: (int(k[0][1:]), k[1])):
    b, a = rows[(batch, phase, "before")], rows[(batch, phase, "after")]
    mb, ma = statistics.median(b), statistics.median(a)
    fmt = lambda xs: ", ".join("%.1fK" % (x / 1e3) for x in xs)
    lines.append("| %s | %s | %.1fK (%s) | %.1fK (%s) | %.3f |"
                 % (batch[1:], phase, mb / 1e3, fmt(b), ma / 1e3, fmt(a), ma / mb))
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
