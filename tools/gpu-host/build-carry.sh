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
  $B/tests/exec/test_profile_gpu $C/
strip $C/masep $C/masep-gpu $C/test_* 2>/dev/null || true
tools/bundle-libs.sh $C/lib $C/masep $C/masep-gpu $C/test_* >/dev/null
# A smaller carry for tools/gpu-host/run-grouped.sh (kernels and one-GPU exec timings only).
K=$B/carry-kernels
rm -rf $K && mkdir -p $K
cp -a $C/lib $C/masep $C/masep-gpu $C/test_kernels_gpu $K/
cp $B/kernels/masep-bench-kernels $K/ && strip $K/masep-bench-kernels 2>/dev/null || true
# The same, xz-compressed (about 8 MiB): the device tool carries build-gpu/cxz and the command
# unpacks it first (tools/gpu-host/run-fp8.sh and run-mla.sh show the call).
X=$B/cxz
rm -rf $X && mkdir -p $X && tar cJf $X/bundle.tar.xz -C $K .
du -sh $C $K $X
# The device tool takes at most 64 MiB: the tracked files travel with the carry.
tracked=$(git ls-files -z | du -cm --files0-from=- 2>/dev/null | tail -1 | cut -f1)
for d in $C $K; do
  size=$(du -sm $d | cut -f1)
  if [ $((size + tracked)) -ge 63 ]; then
    echo "warning: $d ($size MiB) + tracked files ($tracked MiB) exceed the device tool's 64 MiB" >&2
  fi
done
