#!/usr/bin/env bash
# Issue 19's grouped expert launch on one GPU, in one device call (after build-carry.sh):
#   run(carry=["build-gpu/carry"], command="tools/gpu-host/run-grouped.sh")
# kernel tests (grouped GEMM, expert FFN), the kernel bench's grouped rows, a quick profile
# (with the grouped_gemm tables), and Qwen3-30B-A3B (12 layers) and the paper model on one GPU
# with --expert-gemm cublas vs auto, each beside the calibrated simulation.
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-grouped.log") 2>&1
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sec "kernel GPU tests (grouped, expert FFN)"
timeout 120 $C/test_kernels_gpu --gtest_filter='GpuGroupedGemm.*:GpuExpertFfn.*' 2>&1 | grep -E '^\[ *(OK|FAILED|PASSED) |rror|Failure|got' | head -20
sec "kernel bench: grouped decode GEMM vs cuBLAS loop"
timeout 200 $C/masep-bench-kernels --only grouped --csv "$OUT/grouped-gemm.csv" 2>&1 | head -70
sec "verify with the grouped launch forced"
timeout 90 "$M" exec scenarios/examples/tiny-1gpu.yaml --verify -q --expert-gemm grouped; echo "rc=$?"
timeout 120 "$M" exec scenarios/examples/qwen3-1gpu.yaml --set workload.decode_steps=1 --verify -q --expert-gemm grouped; echo "rc=$?"
sec "profile --quick (calibration with grouped_gemm tables)"
timeout 240 "$M" profile --quick --out "$OUT/h100-quick.yaml" 2>&1 | tail -12; echo "rc=$?"
Q="scenarios/examples/qwen3-1gpu.yaml"
for mode in cublas auto cublas auto; do
  sec "timing: Qwen3-30B-A3B (12 layers) on 1 GPU, batch 64, ctx 2048, --expert-gemm $mode"
  timeout 120 "$M" exec $Q -q --expert-gemm $mode; echo "rc=$?"
done
for b in 8 256; do
  sec "timing: Qwen3 12 layers batch $b, auto vs cublas"
  for mode in cublas auto; do timeout 120 "$M" exec $Q -q --set workload.batch=$b --expert-gemm $mode; done
done
P1="paper-colocated --set topology=host-4xh100 --set plan.colocated.gpus=1 --set plan.colocated.tensor_parallel=1 --steps 8"
for b in 32 128; do for mode in cublas auto; do
  sec "timing: paper model co-located on 1 GPU, batch $b, ctx 2048, --expert-gemm $mode"
  timeout 120 "$M" exec $P1 --set workload.batch=$b --set workload.context=2048 -q --expert-gemm $mode; echo "rc=$?"
done; done
if [ -s "$OUT/h100-quick.yaml" ]; then
  sec "calibrated simulation of the same runs"
  "$M" sim $Q --calibration "$OUT/h100-quick.yaml" --allow-mismatch 2>&1 | grep -E "TPOT|calibration"
  for b in 32 128; do "$M" sim $P1 --set workload.batch=$b --set workload.context=2048 --calibration "$OUT/h100-quick.yaml" --allow-mismatch 2>&1 | grep -E "TPOT"; done
fi
if python3 -c "import torch" 2>/dev/null; then
  sec "plain PyTorch decode step, same card (exec/bench/torch_decode.py)"
  timeout 120 python3 exec/bench/torch_decode.py --model qwen3-30b-a3b --layers 12 --batch 64 --context 2048
  for b in 32 128; do timeout 120 python3 exec/bench/torch_decode.py --model paper-moe --batch $b --context 2048; done
else
  sec "no PyTorch on this host: baseline skipped"
fi
sec "CUDA graphs: --launch graph vs eager (Qwen3 12 layers b64, paper b32, tiny --verify)"
timeout 90 "$M" exec scenarios/examples/tiny-1gpu.yaml --verify -q --launch graph; echo "rc=$?"
for mode in eager graph eager graph; do timeout 120 "$M" exec $Q -q --launch $mode; echo "rc=$?"; done
for mode in eager graph; do timeout 120 "$M" exec $P1 --set workload.batch=32 --set workload.context=2048 -q --launch $mode; echo "rc=$?"; done
timeout 120 "$M" exec $Q --launch graph --trace "$OUT/qwen3-graph-trace.json" | tail -5
