#!/bin/sh
# Routing traces (docs/load-balancing.md, "Routing traces"): the paper scenario's sampled
# routing (Zipf 1.2 drifting every 8 steps) written as a tokens and a counts trace, then
# replayed. 2-core VM, no GPU; run from the repository root after building build-cpu.
set -e
M=${MASEP:-build-cpu/tools/masep}
O=results/load_balancing
Z="--set workload.routing.kind=zipf --set workload.routing.skew=1.2 --set workload.routing.drift_every=8"
$M balance $Z --write-trace $O/paper-zipf1.2-drift8.tokens.txt
$M balance $Z --write-trace $O/paper-zipf1.2-drift8.counts.txt --trace-format counts
{
  echo "sampled:"; $M sim paper $Z | grep TPOT
  for f in tokens counts; do
    echo "$f trace replayed:"
    $M sim paper --set "workload.routing={kind: trace, file: $O/paper-zipf1.2-drift8.$f.txt}" | grep TPOT
  done
} > $O/routing-trace-replay.txt
