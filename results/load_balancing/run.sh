#!/bin/sh
# Regenerates every figure of docs/load-balancing.md (2-core VM, no GPU): run from the
# repository root after building build-cpu (masep).
set -e
M=${MASEP:-build-cpu/tools/masep}
O=results/load_balancing
$M predict > $O/predict-paper.txt
$M predict scenarios/paper-colocated.yaml > $O/predict-paper-colocated.txt
$M predict --set topology.gpu=H100-SXM5-80GB --calibration sim/calibration/h100.yaml > $O/predict-paper-h100-calibrated.txt
Z="--set workload.routing.kind=zipf"
for z in 0.8 1.0 1.2 1.5; do
  $M balance $Z --set workload.routing.skew=$z --redundant 4 > $O/paper-zipf$z.txt
  $M balance scenarios/paper-colocated.yaml $Z --set workload.routing.skew=$z --redundant 16 > $O/paper-colocated-zipf$z.txt
done
# More tokens per launch (batch 2048, context 512): rows start to cost, copies pay.
$M balance $Z --set workload.routing.skew=1.5 --set workload.batch=2048 --set workload.context=512 \
  --set workload.decode_steps=4 --redundant 4 > $O/paper-batch2048-zipf1.5.txt
# Drift: hot experts change every N steps; re-place every N steps (0: once), 3 phases.
for n in 8 32; do
  for k in 0 $n; do
    $M balance $Z --set workload.routing.skew=1.5 --set workload.routing.drift_every=$n \
      --set workload.decode_steps=$((3 * n)) --redundant 4 --rebalance $k > $O/paper-drift$n-rebalance$k.txt
  done
done
$M balance scenarios/examples/deepseek-v3-balance.yaml --redundant 32 --gpus > $O/dsv3-zipf1.2-gpus.txt
for z in 0.8 1.5; do
  $M balance scenarios/examples/deepseek-v3-balance.yaml --set workload.routing.skew=$z --redundant 32 > $O/dsv3-zipf$z.txt
done
for k in 0 2; do
  $M balance scenarios/examples/deepseek-v3-balance.yaml --set workload.decode_steps=6 \
    --set workload.routing.drift_every=2 --redundant 32 --rebalance $k > $O/dsv3-drift2-rebalance$k.txt
done
# Attention side and the predictor against measured H100 op times (their own scripts).
sh $O/attention.sh
sh $O/predict-measured.sh
sh $O/routing-trace.sh
