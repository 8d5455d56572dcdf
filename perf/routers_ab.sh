#!/usr/bin/env bash
# A/B of two router counts on one build (perf/ab.sh with the same venv on
# both sides), alternated round by round (issue 13: --routers 2 against 1).
#   perf/routers_ab.sh OUT [ROUNDS] [A B] [-- extra flin bench options]
#     defaults: 3 rounds, A=1 ("before"), B=2 ("after"), 64 shards; VENV=.venv
set -euo pipefail
out="$1"; rounds="${2:-3}"; a="${3:-1}"; b="${4:-2}"
shift $(( $# < 4 ? $# : 4 ))
venv="${VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}"
BEFORE_OPTS="--routers $a" AFTER_OPTS="--routers $b" LABELS="routers_$a routers_$b" \
    exec "$(dirname "$0")/ab.sh" "$venv" "$venv" "$out" "$rounds" "$@"
