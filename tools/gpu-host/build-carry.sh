#!/usr/bin/env bash
# Builds the Release CUDA tree for Hopper (sm_90) into build-gpu/ on the development machine
# and bundles what the GPU host lacks, so the device tool can carry build-gpu/carry (< 64 MiB):
#   tools/gpu-host/build-carry.sh          then  run(carry=["build-gpu/carry"],
#                                                    command="tools/gpu-host/run-all.sh")
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build-gpu}
cmake -S . -B $B -G Ninja -DMASEP_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DMASEP_KERNELS_CUDA_ARCHS=90 >/dev/null
ninja -C $B -j"${JOBS:-2}" masep masep-gpu test_kernels_gpu test_exec_gpu test_exec_launch_plan \
  test_exec_clock_env test_profile_gpu masep-bench-kernels
C=$B/carry
rm -rf $C && mkdir -p $C/lib
cp $B/tools/masep $B/tools/masep-gpu $B/tests/kernels/test_kernels_gpu $B/tests/exec/test_exec_gpu \
  $B/tests/exec/test_exec_launch_plan $B/tests/exec/test_exec_clock_env \
  $B/tests/exec/test_profile_gpu $B/kernels/masep-bench-kernels $C/
strip $C/masep $C/masep-gpu $C/test_* $C/masep-bench-kernels 2>/dev/null || true
tools/bundle-libs.sh $C/lib $C/masep $C/masep-gpu $C/test_* $C/masep-bench-kernels >/dev/null
du -sh $C
size=$(du -sm $C | cut -f1)
if [ "$size" -ge 60 ]; then echo "carry is ${size} MiB: too large for the device tool" >&2; exit 1; fi
