#!/usr/bin/env bash
# How Flin's throughput scales with shard processes on a many-core machine.
#   perf/scale.sh OUTDIR [SHARD COUNTS...]      (default counts: 1 2 4 8 16 32 64)
# Runs `flin bench` (write then read, 2 s each, 64 workers, 1 KiB values) for
# every shard count at --batch 100 and --batch 1, plus the engine baseline
# once per batch size, and writes one JSON per run and summary.md to OUTDIR.
# Load processes: half the cores, at most 8, so the load generator is not the
# limit and the server keeps the other half.
set -u
out=${1:?usage: perf/scale.sh OUTDIR [SHARD COUNTS...]}
shift
counts=${*:-1 2 4 8 16 32 64}
mkdir -p "$out"
PY=${PYTHON:-python3}
procs=$(( $(nproc) / 2 )); [ "$procs" -lt 1 ] && procs=1; [ "$procs" -gt 8 ] && procs=8
for b in 100 1; do
    $PY -m flin bench --shards 1 --batch "$b" --duration 2 --processes "$procs" --baseline engine \
        --no-progress --json "$out/engine-b$b.json" >/dev/null 2>>"$out/errors.log"
    for s in $counts; do
        $PY -m flin bench --shards "$s" --batch "$b" --duration 2 --processes "$procs" \
            --no-progress --json "$out/s$s-b$b.json" >/dev/null 2>>"$out/errors.log" \
            || echo "shards $s batch $b failed" >>"$out/errors.log"
    done
done
$PY - "$out" $counts <<'PY' | tee "$out/summary.md"
import json, os, sys
out, counts = sys.argv[1], [int(c) for c in sys.argv[2:]]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
first = load("engine-b100.json") or {}
m = first.get("machine", {})
m["python"] = first.get("versions", {}).get("python", "?")
print("# Flin throughput against shard count\n")
print("Machine: %s, %s cores, Python %s. Command: `perf/scale.sh OUTDIR %s`.\n"
      % (m.get("cpu_model", "?"), m.get("cores", "?"), m.get("python", "?"), " ".join(map(str, counts))))
for b in (100, 1):
    eng = load("engine-b%d.json" % b)
    e = {r["phase"]: r["ops_per_sec"] for r in (eng or {}).get("results", []) if r["target"] == "engine"}
    print("## --batch %d (engine alone, one process: write %s, read %s ops/s)\n"
          % (b, format(e.get("write", 0), ",.0f"), format(e.get("read", 0), ",.0f")))
    print("| shards | write ops/s | read ops/s | write p99 ms | read p99 ms | server cores (w) | load cores (w) |")
    print("|---|---|---|---|---|---|---|")
    for s in counts:
        d = load("s%d-b%d.json" % (s, b))
        if not d:
            print("| %d | failed | | | | | |" % s)
            continue
        r = {x["phase"]: x for x in d["results"] if x["target"] == "flin"}
        w, rd = r.get("write", {}), r.get("read", {})
        srv = "%.2f" % sum((w.get("server_cpu_cores") or {}).values())
        print("| %d | %s | %s | %.2f | %.2f | %s | %s |" % (
            s, format(w.get("ops_per_sec", 0), ",.0f"), format(rd.get("ops_per_sec", 0), ",.0f"),
            w.get("latency_ms", {}).get("p99", 0), rd.get("latency_ms", {}).get("p99", 0),
            srv, (w.get("load_cpu") or {}).get("cores")))
    print()
PY
