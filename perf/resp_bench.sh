#!/usr/bin/env bash
# Issue 14's figures: redis-benchmark (the C load generator) against Flin's
# RESP port and against a redis-server that persists as Flin does (AOF,
# appendfsync everysec), and flin bench (flin.Client) at the same shape
# against the same cluster, over TCP on loopback as RESP is: 64 connections,
# 1 KiB values, SET then GET, -P 16 and -P 1. Flin and Redis alternate
# within each round, so that the noise of a shared machine falls on both;
# perf/resp_summary.py takes the medians and the ratios.
#   perf/resp_bench.sh OUT [ROUNDS] [SHARDS] [ROUTERS]   (defaults: 3, 64, auto)
set -euo pipefail
out="$1"; rounds="${2:-3}"; shards="${3:-64}"; routers="${4:-auto}"
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${VENV:-$root/.venv}/bin/python"
mkdir -p "$out"
tmp="$(mktemp -d /tmp/flin-resp-bench.XXXXXX)"
port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cleanup() {
    [ -n "${fpid:-}" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null || true
    [ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
bench() {   # NAME PORT P N
    redis-benchmark -p "$2" -c 64 -d 1024 -r 1000000 -t set,get -n "$4" -P "$3" --csv \
        > "$out/$1-P$3-run$r.csv"
}
for r in $(seq 1 "$rounds"); do
    fport="$(port)"; zport="$(port)"; rm -rf "$tmp/data"
    "$py" -m flin start --data "$tmp/data" --shards "$shards" --routers "$routers" \
        --bind "tcp://127.0.0.1:$zport" --resp "127.0.0.1:$fport" > "$tmp/ready" 2>"$tmp/flin.log" &
    fpid=$!
    until grep -q ready "$tmp/ready"; do sleep 0.2; kill -0 "$fpid"; done
    bench flin "$fport" 16 400000; bench flin "$fport" 1 100000
    for p in 16 1; do     # flin.Client at the same shape: 64 workers, P requests in flight each
        "$py" -m flin bench -e "tcp://127.0.0.1:$zport" --workers 64 --pipeline "$p" \
            --value-size 1024 --duration 4 --no-progress --json "$out/client-P$p-run$r.json" \
            > "$out/client-P$p-run$r.txt"
    done
    kill "$fpid"; wait "$fpid" || true; fpid=""

    rport="$(port)"; rm -rf "$tmp/redis"; mkdir -p "$tmp/redis"
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp/redis" --save "" \
        --appendonly yes --appendfsync everysec > "$tmp/redis.log" 2>&1 &
    rpid=$!
    until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
    bench redis "$rport" 16 400000; bench redis "$rport" 1 100000
    kill "$rpid"; wait "$rpid" || true; rpid=""
done
"$py" "$root/perf/resp_summary.py" "$out" | tee "$out/summary.txt"
