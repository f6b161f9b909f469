#!/usr/bin/env bash
# Copies the shared libraries that masep binaries need from Debian packages (yaml-cpp, fmt,
# TBB, Boost, ...) next to them, so binaries built on a development machine run on a GPU host
# that lacks those packages:  tools/bundle-libs.sh OUT_DIR BINARY...
# then on the host: LD_LIBRARY_PATH=OUT_DIR ./BINARY. CUDA, cuBLAS, NCCL, MPI and the C/C++
# runtime are left out on purpose: the host's own (matching its driver) must be used.
set -euo pipefail
out=${1:?usage: tools/bundle-libs.sh OUT_DIR BINARY...}
shift
mkdir -p "$out"
skip='lib(c|m|dl|rt|pthread|gcc_s|stdc\+\+|cuda|cudart|cublas|cublasLt|nccl|mpi|open-|hwloc|event|z|nvidia)[.-]'
for bin in "$@"; do
  ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    name=$(basename "$lib")
    if [[ ! $name =~ ^$skip && ! $name =~ ^ld-linux ]]; then
      cp -Lu "$lib" "$out/$name"
    fi
  done
done
ls "$out"
