#!/usr/bin/env bash
# masep collective against DeepEP's published V1 figures (docs/accuracy.md, "Expert exchange
# against DeepEP's published figures"): normal kernels (plan.expert_exchange.mode
# hierarchical) at EP 8-64, 4096 tokens per rank; low-latency kernels at EP 8-256, 128 tokens
# per rank; hidden 7168, top-8 of 256 experts, fp8 dispatch, bf16 combine, on cluster-18xh800
# (EP 256 on the same topology with 32 nodes). Prints one table row per run (the last two
# columns are DeepEP's logical RDMA and NVL bandwidths). Used to check, never to fit.
#   tools/deepep_check.sh   (run from the repository root; MASEP= the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MASEP:-build/tools/masep}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/^nodes: 18/nodes: 32/; s/^name: cluster-18xh800/name: cluster-32xh800/' \
  topology/zoo/cluster-18xh800.yaml > "$tmp/h800-32n.yaml"
C=(--op all_to_all --routing uniform --top-k 8 --experts 256 --hidden 7168)
echo "== normal kernels (--mode hierarchical), 4096 tokens per rank"
for n in 8 16 32 64; do
  "$M" collective -t cluster-18xh800 --gpus $n "${C[@]}" --dtype fp8 --mode hierarchical \
    -b 30277632 -e 30277632 | tail -1 | sed "s/^/EP$n dispatch /"
  "$M" collective -t cluster-18xh800 --gpus $n "${C[@]}" --direction combine \
    --mode hierarchical -b 58720256 -e 58720256 | tail -1 | sed "s/^/EP$n combine  /"
done
echo "== low-latency kernels (--mode low_latency), 128 tokens per rank"
for n in 8 16 32 64 128 256; do
  T=cluster-18xh800
  [ "$n" = 256 ] && T="$tmp/h800-32n.yaml"
  "$M" collective -t "$T" --gpus $n "${C[@]}" --dtype fp8 --mode low_latency \
    -b 946176 -e 946176 | tail -1 | sed "s/^/EP$n dispatch /"
  "$M" collective -t "$T" --gpus $n "${C[@]}" --direction combine --mode low_latency \
    -b 1835008 -e 1835008 | tail -1 | sed "s/^/EP$n combine  /"
done
