#!/usr/bin/env bash
# A/B: the same `flin bench` runs against two builds, alternated round by
# round on one machine, so that both see the same noise. Each build is a
# virtual environment with flin installed (e.g. a worktree of the commit
# before a change, set up with its own scripts/_venv.sh).
#   perf/ab.sh BEFORE_VENV AFTER_VENV OUT [ROUNDS] [-- extra flin bench options]
# BEFORE_OPTS / AFTER_OPTS (environment): options for one side only, e.g. the
# same venv twice with --routers 1 and --routers 2 (perf/routers_ab.sh);
# LABELS="A B" names the sides in the summary.
# Writes OUT/{before,after}-b{1,100}-rN.json and OUT/summary.md (medians).
set -euo pipefail
before="$1"; after="$2"; out="$3"; rounds="${4:-3}"
shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
    for batch in 1 100; do
        for build in before after; do
            venv="$before"; opts="${BEFORE_OPTS:-}"
            [ "$build" = after ] && { venv="$after"; opts="${AFTER_OPTS:-}"; }
            echo "round $r, batch $batch, $build $opts" >&2
            # shellcheck disable=SC2086  # opts are words on purpose
            "$venv/bin/flin" bench --batch "$batch" --no-progress $opts \
                --json "$out/$build-b$batch-r$r.json" "$@" > "$out/$build-b$batch-r$r.txt"
        done
    done
done
# shellcheck disable=SC2086
"$after/bin/python" -m flin_perf.ab_summary "$out" ${LABELS:-}
