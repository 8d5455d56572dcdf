#!/usr/bin/env bash
# How Flin's throughput scales with routers and shard processes on a many-core machine.
#   perf/scale.sh OUTDIR [-r "ROUTER COUNTS"] [SHARD COUNTS...]
#     default shard counts: 1 2 4 8 16 32 64; default routers: 1 (a count or auto)
#   The 16-core table of issue 13:  perf/scale.sh OUTDIR -r "1 2 4 8 auto" 16 64
# Runs `flin bench` (write then read, 2 s each, 64 workers, 1 KiB values) for
# every routers x shards pair at --batch 100 and --batch 1, plus the engine
# baseline once per batch size, and writes one JSON per run and summary.md to
# OUTDIR. Load processes: half the cores, at most 8, so the load generator is
# not the limit and the server keeps the other half.
set -u
out=${1:?usage: perf/scale.sh OUTDIR [-r "ROUTER COUNTS"] [SHARD COUNTS...]}
shift
routers=1
if [ "${1:-}" = "-r" ]; then
    routers=${2:?-r needs a list of router counts}
    shift 2
fi
counts=${*:-1 2 4 8 16 32 64}
mkdir -p "$out"
PY=${PYTHON:-python3}
procs=$(( $(nproc) / 2 )); [ "$procs" -lt 1 ] && procs=1; [ "$procs" -gt 8 ] && procs=8
for b in 100 1; do
    $PY -m flin bench --shards 1 --batch "$b" --duration 2 --processes "$procs" --baseline engine \
        --no-progress --json "$out/engine-b$b.json" >/dev/null 2>>"$out/errors.log"
    for r in $routers; do
        for s in $counts; do
            $PY -m flin bench --shards "$s" --routers "$r" --batch "$b" --duration 2 \
                --processes "$procs" --no-progress --json "$out/r$r-s$s-b$b.json" \
                >/dev/null 2>>"$out/errors.log" \
                || echo "routers $r shards $s batch $b failed" >>"$out/errors.log"
        done
    done
done
$PY - "$out" "$routers" $counts <<'PY' | tee "$out/summary.md"
import json, os, sys
out, routers, counts = sys.argv[1], sys.argv[2].split(), [int(c) for c in sys.argv[3:]]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
first = load("engine-b100.json") or {}
m = first.get("machine", {})
m["python"] = first.get("versions", {}).get("python", "?")
print("# Flin throughput against routers and shards\n")
print("Machine: %s, %s cores, Python %s. Command: `perf/scale.sh OUTDIR -r \"%s\" %s`.\n"
      % (m.get("cpu_model", "?"), m.get("cores", "?"), m.get("python", "?"), " ".join(routers),
         " ".join(map(str, counts))))
for b in (100, 1):
    eng = load("engine-b%d.json" % b)
    e = {r["phase"]: r["ops_per_sec"] for r in (eng or {}).get("results", []) if r["target"] == "engine"}
    print("## --batch %d (engine alone, one process: write %s, read %s ops/s)\n"
          % (b, format(e.get("write", 0), ",.0f"), format(e.get("read", 0), ",.0f")))
    print("| routers | shards | write ops/s | read ops/s | write p99 ms | read p99 ms "
          "| server cores (w) | srv us/op (w) | load cores (w) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in routers:
        for s in counts:
            d = load("r%s-s%d-b%d.json" % (r, s, b))
            if not d:
                print("| %s | %d | failed | | | | | | |" % (r, s))
                continue
            got = d["config"].get("routers", r)
            x = {y["phase"]: y for y in d["results"] if y["target"] == "flin"}
            w, rd = x.get("write", {}), x.get("read", {})
            srv = "%.2f" % sum((w.get("server_cpu_cores") or {}).values())
            per_op = "%.1f" % (w.get("server_cpu_us_per_op") or {}).get("total", 0)
            print("| %s | %d | %s | %s | %.2f | %.2f | %s | %s | %s |" % (
                r if str(got) == r else "%s (%s)" % (r, got), s,
                format(w.get("ops_per_sec", 0), ",.0f"), format(rd.get("ops_per_sec", 0), ",.0f"),
                w.get("latency_ms", {}).get("p99", 0), rd.get("latency_ms", {}).get("p99", 0),
                srv, per_op, (w.get("load_cpu") or {}).get("cores")))
    print()
PY
