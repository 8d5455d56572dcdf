#!/usr/bin/env bash
# A/B of two router counts on one build, alternated round by round on one
# machine so that both see the same noise (issue 13: --routers 2 against 1).
#   perf/routers_ab.sh OUT [ROUNDS] [A B] [-- extra flin bench options]
#     defaults: 3 rounds, A=1 ("before"), B=2 ("after"), 64 shards
# Writes OUT/{before,after}-b{1,100}-rN.json and OUT/summary.md (medians).
set -euo pipefail
out="$1"; rounds="${2:-3}"; a="${3:-1}"; b="${4:-2}"
shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
PY=${PYTHON:-python3}
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
    for batch in 1 100; do
        for side in before after; do
            n="$a"; [ "$side" = after ] && n="$b"
            echo "round $r, batch $batch, --routers $n" >&2
            $PY -m flin bench --routers "$n" --batch "$batch" --no-progress \
                --json "$out/$side-b$batch-r$r.json" "$@" > "$out/$side-b$batch-r$r.txt"
        done
    done
done
$PY -m flin_perf.ab_summary "$out" "routers $a" "routers $b"
