#!/usr/bin/env bash
# What one GPU can show, in one device call (< 10 minutes on an H100):
#   run(carry=["build-gpu/carry"], command="tools/gpu-host/run-1gpu.sh")
# after tools/gpu-host/build-carry.sh on the development machine. The lowering's CPU tests,
# the kernel and executor GPU tests (the multi-GPU cases skip), --verify on one GPU, a dumped
# Program run with --program, `masep profile --quick` through masep-gpu, and a one-GPU timing
# twice (run-to-run noise). Everything lands in $OUT/run-1gpu.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-1gpu.log") 2>&1
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sec "lowering (CPU)"; $C/test_exec_launch_plan 2>&1 | tail -3
sec "kernel GPU tests"; timeout 240 $C/test_kernels_gpu 2>&1 | grep -E '^\[ *(OK|FAILED|PASSED|SKIPPED) |tests ran|rror' | tail -40
sec "exec GPU tests"; timeout 200 $C/test_exec_gpu 2>&1 | grep -E '^\[|verify  |TPOT|rror|Failure' | head -40
sec "profile GPU test"; timeout 120 $C/test_profile_gpu 2>&1 | tail -4
sec "--verify on one GPU"; timeout 90 "$M" exec scenarios/examples/tiny-1gpu.yaml --verify -q; echo "rc=$?"
sec "--program (a dumped Program)"
"$M" plan scenarios/examples/tiny-1gpu.yaml --dump "$W/p.json" >/dev/null && timeout 90 "$M" exec scenarios/examples/tiny-1gpu.yaml --program "$W/p.json" -q --trace "$W/t.json"; echo "rc=$?"
P1="paper-colocated --set topology=host-4xh100 --set plan.colocated.gpus=1 --set plan.colocated.tensor_parallel=1 --steps 8"
for b in 32 128; do for rep in 1 2; do
  sec "timing: paper model co-located on 1 GPU, batch $b, context 2048 (run $rep)"
  timeout 120 "$M" exec $P1 --set workload.batch=$b --set workload.context=2048 -q; echo "rc=$?"
done; done
sec "grouped decode GEMM vs one cuBLAS GEMM per expert (kernel bench)"
timeout 150 $C/masep-bench-kernels --only grouped --csv "$OUT/grouped-gemm.csv" 2>&1 | grep -v '^#' | head -60
Q="scenarios/examples/qwen3-1gpu.yaml -q"
for mode in cublas auto cublas auto; do
  sec "timing: Qwen3-30B-A3B (12 layers) on 1 GPU, batch 64, context 2048, --expert-gemm $mode"
  timeout 120 "$M" exec $Q --expert-gemm $mode; echo "rc=$?"
done
for b in 32 128; do for mode in cublas auto; do
  sec "timing: paper model co-located on 1 GPU, batch $b, context 2048, --expert-gemm $mode"
  timeout 120 "$M" exec $P1 --set workload.batch=$b --set workload.context=2048 -q --expert-gemm $mode; echo "rc=$?"
done; done
sec "--verify with the grouped launch forced"; timeout 90 "$M" exec scenarios/examples/tiny-1gpu.yaml --verify -q --expert-gemm grouped; echo "rc=$?"
sec "startup"; /usr/bin/time -f "masep --help: %e s %M KB" "$M" --help >/dev/null
