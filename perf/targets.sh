#!/usr/bin/env bash
# The issue-5 target table: every scenario 3 times, side by side with its
# baseline, for 64 and 8 shards. Writes JSON per run to OUTDIR.
#   perf/targets.sh OUTDIR
set -u
out=${1:?usage: perf/targets.sh OUTDIR}
mkdir -p "$out"
FLIN=${FLIN:-flin}
for shards in 64 8; do
    for run in 1 2 3; do
        $FLIN bench --shards $shards --batch 100 --baseline engine --no-progress \
            --json "$out/s$shards-batch100-run$run.json" >/dev/null 2>>"$out/errors.log"
        $FLIN bench --shards $shards --batch 1 --pipeline 1 --baseline redis --no-progress \
            --json "$out/s$shards-batch1-run$run.json" >/dev/null 2>>"$out/errors.log"
        for mb in 64 0; do   # zipf reads, router read cache on and off, on a cluster of our own
            d=$(mktemp -d /tmp/flintargets-XXXXXX)
            $FLIN start --data "$d/data" --shards $shards --bind "ipc://$d/s" --read-cache-mb $mb \
                >"$d/out" 2>"$d/err" &
            pid=$!
            for _ in $(seq 100); do grep -q ready "$d/out" 2>/dev/null && break; sleep 0.1; done
            $FLIN bench --endpoint "ipc://$d/s" --workload zipf --no-progress \
                --json "$out/s$shards-zipf-cache$mb-run$run.json" >/dev/null 2>>"$out/errors.log"
            kill $pid; wait $pid; rm -rf "$d"
        done
    done
done
python3 - "$out" <<'PY' | tee "$out/summary.md"
import json, os, statistics, sys
out = sys.argv[1]
def runs(name):
    got = []
    for r in (1, 2, 3):
        try:
            with open(os.path.join(out, "%s-run%d.json" % (name, r))) as f:
                got.append(json.load(f))
        except (OSError, ValueError):
            pass
    return got
def fig(docs, target, phase, key="ops_per_sec", sub=None):
    vals = []
    for d in docs:
        for r in d["results"]:
            if r["target"] == target and r["phase"] == phase:
                vals.append(r[key][sub] if sub else r[key])
    return statistics.median(vals) if vals else float("nan")
print("# Speed targets: medians of 3 runs, side by side with the baselines\n")
for shards in (64, 8):
    b100, b1 = runs("s%d-batch100" % shards), runs("s%d-batch1" % shards)
    z64, z0 = runs("s%d-zipf-cache64" % shards), runs("s%d-zipf-cache0" % shards)
    m = (b100 or [{}])[0].get("machine", {})
    print("## %d shards (%s, %s cores)\n" % (shards, m.get("cpu_model", "?"), m.get("cores", "?")))
    print("| scenario | Flin | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    for phase, target in (("write", 0.8), ("read", 0.6)):
        f, e = fig(b100, "flin", phase), fig(b100, "engine", phase)
        print("| --batch 100 %s ops/s | %s | engine %s | %.2fx | >= %.1fx |" % (
            phase.upper(), format(f, ",.0f"), format(e, ",.0f"), f / e, target))
    for phase in ("write", "read"):
        f, r = fig(b1, "flin", phase), fig(b1, "redis", phase)
        print("| --batch 1 --pipeline 1 %s ops/s | %s | redis %s | %.2fx | >= 1.0x and >= 40 K |" % (
            phase.upper(), format(f, ",.0f"), format(r, ",.0f"), f / r))
    for phase in ("write", "read"):
        print("| --batch 1 --pipeline 1 %s p99 ms | %.2f | redis %.2f | | <= 5 ms |" % (
            phase.upper(), fig(b1, "flin", phase, "latency_ms", "p99"),
            fig(b1, "redis", phase, "latency_ms", "p99")))
    on, off = fig(z64, "flin", "zipf"), fig(z0, "flin", "zipf")
    print("| zipf READ ops/s, read cache 64 MiB vs off | %s | off %s | %.2fx | >= 1.5x |\n" % (
        format(on, ",.0f"), format(off, ",.0f"), on / off))
PY
