#!/usr/bin/env bash
# FP8 weights and the kernels' full GPU test on one GPU, in one device call (after
# build-carry.sh), most important first; a section is skipped once 540 s have passed:
#   run(carry=["build-gpu/carry-kernels"], command="tools/gpu-host/run-fp8.sh build-gpu/carry-kernels")
# every kernel GPU test; the kernel bench's grouped rows (bf16 vs cuBLAS loop, FP8); --verify
# with FP8 weights (eager and graph); Qwen3-30B-A3B (12 layers) bf16 and FP8 with measured
# traces (per-op times for the floor analysis); the paper model with the grouped size rule
# (auto) at batch 128; a quick profile and the calibrated simulation of the FP8 runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-fp8.log") 2>&1
T0=$(date +%s)
left() { [ $(( $(date +%s) - T0 )) -lt ${2:-540} ] || { echo "(skipped: time)"; return 1; }; }
Q="scenarios/examples/qwen3-1gpu.yaml"
Q8="scenarios/examples/qwen3-1gpu-fp8.yaml"
P1="paper-colocated --set topology=host-4xh100 --set plan.colocated.gpus=1 --set plan.colocated.tensor_parallel=1 --steps 8"
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sec "kernel GPU tests (all)"
timeout 200 $C/test_kernels_gpu 2>&1 | grep -E '^\[ *(OK|FAILED|PASSED|SKIPPED) |rror|Failure|tests ran' | head -80
sec "verify: FP8 weights, eager and graph"
timeout 60 "$M" exec scenarios/examples/tiny-1gpu.yaml --set model.precision.weights=fp8 --verify -q; echo "rc=$?"
timeout 60 "$M" exec scenarios/examples/tiny-1gpu.yaml --set model.precision.weights=fp8 --verify -q --launch graph; echo "rc=$?"
timeout 90 "$M" exec $Q8 --verify -q; echo "rc=$?"
sec "kernel bench: grouped decode GEMM (bf16 vs cuBLAS loop; FP8)"
timeout 150 $C/masep-bench-kernels --only grouped --csv "$OUT/grouped-gemm.csv" 2>&1 | grep -vE '^\s*$' | head -120
for run in "$Q --launch eager" "$Q --launch graph" "$Q8 --launch eager" "$Q8 --launch graph"; do
  left || break
  tag=$(basename ${run%% *} .yaml)-${run##* }
  sec "$run (trace $tag.json)"
  timeout 90 "$M" exec $run -q --trace "$OUT/$tag.json"; echo "rc=$?"
done
for b in 128 32; do
  left || break
  sec "paper model co-located 1 GPU b$b ctx2048 --expert-gemm auto --launch graph"
  timeout 90 "$M" exec $P1 --set workload.batch=$b --set workload.context=2048 -q --launch graph; echo "rc=$?"
done
if left; then
  sec "profile --quick, then the calibrated simulation of the Qwen3 runs"
  timeout 150 "$M" profile --quick --scenario $Q --scenario $Q8 --out "$OUT/h100-quick.yaml" 2>&1 | tail -6
  if [ -s "$OUT/h100-quick.yaml" ]; then
    for s in $Q $Q8; do "$M" sim $s --calibration "$OUT/h100-quick.yaml" --allow-mismatch 2>&1 | grep -E "TPOT|calibration"; done
  fi
fi
sec "done after $(( $(date +%s) - T0 )) s"
