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
"$after/bin/python" -m flin_perf.ab_summary "$out"
