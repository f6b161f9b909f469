#!/bin/sh
# Attention-side balancing (plan.balance.attention, docs/load-balancing.md "Attention side"):
# static vs predicted sequence assignment under a wide context distribution. 2-core VM, no
# GPU; run from the repository root after building build-cpu (masep).
set -e
M=${MASEP:-build-cpu/tools/masep}
O=results/load_balancing
W="workload.context={distribution: uniform, min: 128, max: 16384}"
for b in 24 96 192; do
  $M balance --attention --set "$W" --set workload.batch=$b > $O/attention-paper-b$b.txt
done
for b in 24 96; do
  $M balance --attention scenarios/paper-colocated.yaml --set "$W" --set workload.batch=$b \
    > $O/attention-paper-colocated-b$b.txt
done
# DeepSeek-V3-class (MLA approximated by MHA, so the KV cache bounds batch x context).
$M balance --attention scenarios/examples/deepseek-v3-balance.yaml --set workload.batch=128 \
  --set "workload.context={distribution: uniform, min: 64, max: 2048}" > $O/attention-dsv3-b128.txt
# Head × sequence splits of the paper's 4-GPU attention replicas: predicted vs simulated.
$M balance --splits --set "$W" --set workload.batch=192 > $O/attention-splits-paper-b192.txt
$M balance --splits --set workload.context=32768 --set workload.batch=12 \
  --set plan.micro_batches=1 > $O/attention-splits-paper-ctx32768.txt
