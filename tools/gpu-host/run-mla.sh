#!/usr/bin/env bash
# MLA (issue 15) on one GPU in one device call, after build-carry.sh; most important first, a
# section is skipped once 540 s have passed:
#   run(carry=["build-gpu/cxz"], command="mkdir -p build-gpu/ck && tar xJf build-gpu/cxz/bundle.tar.xz -C build-gpu/ck && tools/gpu-host/run-mla.sh build-gpu/ck")
# the MLA kernel's GPU tests (then every kernel test), compute-sanitizer on them where the host
# has it, the MLA bench rows, masep exec --verify and timed runs of DeepSeek-V3's attention
# (scenarios/examples/deepseek-v3-mini-1gpu.yaml) eager and graph with a trace.
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-mla.log") 2>&1
T0=$(date +%s)
left() { [ $(( $(date +%s) - T0 )) -lt 540 ] || { echo "(skipped: time)"; return 1; }; }
D="scenarios/examples/deepseek-v3-mini-1gpu.yaml"
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sec "MLA kernel GPU tests"
timeout 120 $C/test_kernels_gpu --gtest_filter='GpuMlaAttention.*' 2>&1 | grep -E '^\[ *(OK|FAILED|PASSED|SKIPPED) |rror|Failure|Expected|Which is|got' | head -60
sec "every kernel GPU test"
timeout 200 $C/test_kernels_gpu 2>&1 | grep -E '^\[ *(FAILED|PASSED) |tests ran' | head -20
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$CS" ] && left; then
  sec "compute-sanitizer memcheck on GpuMlaAttention"
  timeout 150 $CS --tool memcheck $C/test_kernels_gpu --gtest_filter='GpuMlaAttention.*' 2>&1 | grep -E 'ERROR SUMMARY|PASSED|FAILED' | head
fi
sec "masep exec --verify, DeepSeek-V3 attention (MLA), 2 layers"
timeout 90 "$M" exec $D --verify -q; echo "rc=$?"
timeout 90 "$M" exec $D --verify -q --launch graph; echo "rc=$?"
for mode in eager graph; do
  left || break
  sec "$D --launch $mode (trace)"
  timeout 90 "$M" exec $D -q --launch $mode --trace "$OUT/dsv3-mini-$mode.json"; echo "rc=$?"
done
if left; then
  sec "kernel bench: MLA"
  timeout 200 $C/masep-bench-kernels --only mla --csv "$OUT/mla.csv" 2>&1 | grep -vE '^\s*$' | tail -80
fi
sec "done after $(( $(date +%s) - T0 )) s"
