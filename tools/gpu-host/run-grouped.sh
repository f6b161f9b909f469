#!/usr/bin/env bash
# Issue 19 on one GPU, in one device call (after build-carry.sh), most important first; a
# section is skipped once 540 s have passed (the device tool's limit is 600 s):
#   run(carry=["build-gpu/carry-kernels"], command="tools/gpu-host/run-grouped.sh build-gpu/carry-kernels")
# kernel tests (grouped GEMM, expert FFN), the kernel bench's grouped rows, Qwen3-30B-A3B (12
# layers) and the paper model on one GPU with --expert-gemm cublas vs auto and --launch eager
# vs graph, --verify with both, a plain PyTorch decode step on the same card, and a quick
# profile with the calibrated simulation of the same runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-grouped.log") 2>&1
T0=$(date +%s)
left() { [ $(( $(date +%s) - T0 )) -lt 540 ] || { echo "(skipped: time)"; return 1; }; }
Q="scenarios/examples/qwen3-1gpu.yaml"
P1="paper-colocated --set topology=host-4xh100 --set plan.colocated.gpus=1 --set plan.colocated.tensor_parallel=1 --steps 8"
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sec "kernel GPU tests (grouped, expert FFN)"
timeout 60 $C/test_kernels_gpu --gtest_filter='GpuGroupedGemm.*:GpuExpertFfn.*' 2>&1 | grep -E '^\[ *(OK|FAILED|PASSED) |rror|Failure|got' | head -20
sec "kernel bench: grouped decode GEMM vs cuBLAS loop"
timeout 120 $C/masep-bench-kernels --only grouped --csv "$OUT/grouped-gemm.csv" 2>&1 | head -70
sec "verify: grouped launch forced, and graph mode"
timeout 60 "$M" exec scenarios/examples/tiny-1gpu.yaml --verify -q --expert-gemm grouped; echo "rc=$?"
timeout 60 "$M" exec scenarios/examples/tiny-1gpu.yaml --verify -q --launch graph; echo "rc=$?"
for mode in cublas auto cublas auto; do
  left || break
  sec "Qwen3-30B-A3B (12 layers) 1 GPU b64 ctx2048 --expert-gemm $mode"
  timeout 90 "$M" exec $Q -q --expert-gemm $mode; echo "rc=$?"
done
for mode in graph graph; do
  left || break
  sec "Qwen3 12 layers b64 --launch $mode (grouped auto)"
  timeout 90 "$M" exec $Q -q --launch $mode; echo "rc=$?"
done
for b in 32 128; do for mode in "--expert-gemm cublas" "--expert-gemm auto" "--launch graph"; do
  left || break
  sec "paper model co-located 1 GPU b$b ctx2048 $mode"
  timeout 90 "$M" exec $P1 --set workload.batch=$b --set workload.context=2048 -q $mode; echo "rc=$?"
done; done
if left && python3 -c "import torch" 2>/dev/null; then
  sec "plain PyTorch decode step, same card (exec/bench/torch_decode.py)"
  timeout 90 python3 exec/bench/torch_decode.py --model qwen3-30b-a3b --layers 12 --batch 64 --context 2048
  for b in 32 128; do timeout 60 python3 exec/bench/torch_decode.py --model paper-moe --batch $b --context 2048; done
fi
if left; then
  sec "profile --quick (calibration with grouped_gemm tables), then the calibrated simulation"
  timeout 150 "$M" profile --quick --out "$OUT/h100-quick.yaml" 2>&1 | tail -6
  if [ -s "$OUT/h100-quick.yaml" ]; then
    "$M" sim $Q --calibration "$OUT/h100-quick.yaml" --allow-mismatch 2>&1 | grep -E "TPOT|calibration"
    for b in 32 128; do "$M" sim $P1 --set workload.batch=$b --set workload.context=2048 --calibration "$OUT/h100-quick.yaml" --allow-mismatch 2>&1 | grep -E "TPOT"; done
  fi
fi
sec "done after $(( $(date +%s) - T0 )) s"
