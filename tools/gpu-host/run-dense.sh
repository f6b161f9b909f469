#!/usr/bin/env bash
# Issue 15's features the executor lowers onto existing launch kinds, not yet run on a GPU
# when this was written: dense FFN layers (kGemm + residual), shared experts of their own
# width (grouped GEMMs after the routed rows) and attention replicas of unequal size. After
# build-carry.sh, on one GPU (sections needing more GPUs are skipped), or on 4:
#   run(carry=["build-gpu/cxz"], command="mkdir -p build-gpu/ck && tar xJf build-gpu/cxz/bundle.tar.xz -C build-gpu/ck && tools/gpu-host/run-dense.sh build-gpu/ck")
#   run(kind="nvidia-h100-x4", carry=[...same...], command="... && tools/gpu-host/run-dense.sh build-gpu/ck")
# Expect: every `rc=0`; every --verify line "pass" (the multi-GPU ones compare against the
# single-GPU reference, so they check the dense layer's residual and the uneven batch split).
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-dense.log") 2>&1
T0=$(date +%s)
left() { [ $(( $(date +%s) - T0 )) -lt 540 ] || { echo "(skipped: time)"; return 1; }; }
S="scenarios/examples/tiny-2gpu.yaml"
DENSE=(--set model.dense_layers=1 --set model.dense_ffn=2048 --set model.layers=3)
SHARED=(--set model.shared_experts=1 --set model.shared_expert_ffn=3072)
ONE=(--set "plan={kind: colocated, colocated: {gpus: 1}, micro_batches: 2}")
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sec "dense FFN layer, 1 GPU: --verify (eager, graph), then a timed run with a trace"
timeout 90 "$M" exec $S "${ONE[@]}" "${DENSE[@]}" --verify -q; echo "rc=$?"
timeout 90 "$M" exec $S "${ONE[@]}" "${DENSE[@]}" --verify -q --launch graph; echo "rc=$?"
timeout 90 "$M" exec $S "${ONE[@]}" "${DENSE[@]}" -q --trace "$OUT/dense-1gpu.json"; echo "rc=$?"
sec "shared expert of its own width, 1 GPU (timing only: --verify refuses shared experts)"
timeout 90 "$M" exec $S "${ONE[@]}" "${SHARED[@]}" -q --trace "$OUT/shared-1gpu.json"; echo "rc=$?"
timeout 90 "$M" exec $S "${ONE[@]}" "${SHARED[@]}" "${DENSE[@]}" -q; echo "rc=$?"
if [ "$GPUS" -ge 2 ] && left; then
  sec "dense FFN layer, MA 1:1 on 2 GPUs: --verify against the 1-GPU reference"
  timeout 120 "$M" exec $S "${DENSE[@]}" --verify -q; echo "rc=$?"
  sec "dense, attention head-parallel 2 (the down projection writes kLayerOut) + 1 MoE GPU"
  timeout 120 "$M" exec $S "${DENSE[@]}" --set "plan.attention={gpus: 2, head_parallel: 2}" -q
  echo "rc=$?"
fi
if [ "$GPUS" -ge 3 ] && left; then
  sec "attention replicas with batch shares 3:1 (2 single GPUs) + 1 MoE GPU: --verify"
  timeout 120 "$M" exec $S --set "plan.attention={gpus: 2, replicas: [{batch_share: 3}, {batch_share: 1}]}" --verify -q
  echo "rc=$?"
fi
if [ "$GPUS" -ge 4 ] && left; then
  sec "attention replicas of 2 and 1 GPUs + 1 MoE GPU (timed, trace)"
  timeout 120 "$M" exec $S --set "plan.attention={gpus: 3, replicas: [{head_parallel: 2}, {head_parallel: 1}]}" \
    -q --trace "$OUT/uneven-4gpu.json"
  echo "rc=$?"
fi
sec "done after $(( $(date +%s) - T0 )) s"
