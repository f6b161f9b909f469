#!/bin/sh
# The time predictor against measured executor op times (docs/load-balancing.md, "Predictor
# against measured op times"): 2-core VM, no GPU needed — the measured traces and the
# calibration tables are H100 runs kept under results/exec/. Run from the repository root
# after building build-cpu (masep). Out of sample: tables of the 2026-12-07 run
# (h100x1-2026-12-07-grouped/h100-quick-run2.yaml) against traces of the 2026-12-08 run
# (h100x1-2026-12-08-fp8/*.trace.json.gz); in sample: that run's own tables.
set -e
M=${MASEP:-build-cpu/tools/masep}
O=results/load_balancing
R=results/exec
T=${TMPDIR:-/tmp}
OUT_CAL=$R/h100x1-2026-12-07-grouped/h100-quick-run2.yaml
IN_CAL=$R/h100x1-2026-12-08-fp8/h100-quick.yaml
for s in qwen3-1gpu qwen3-1gpu-fp8; do
  zcat $R/h100x1-2026-12-08-fp8/$s-graph.trace.json.gz > $T/$s-graph.json
  P="$M predict scenarios/examples/$s.yaml --measured $T/$s-graph.json"
  $P --calibration $OUT_CAL --launch graph > $O/measured-$s-out-of-sample.txt
  $P --calibration $OUT_CAL > $O/measured-$s-out-of-sample-eager-overhead.txt
  $P --calibration $IN_CAL --launch graph > $O/measured-$s-in-sample.txt
  $P > $O/measured-$s-roofline.txt
  rm -f $T/$s-graph.json
done
