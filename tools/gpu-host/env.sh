# Sourced by the tools/gpu-host/ scripts after `cd` to the repository root, with C set to the
# carry directory: the $OUT folder, a scratch folder $W, the bundled libraries on the loader
# path, MASEP_BIN / $M (the carried masep), NCCL without NVLink multicast (KINDS.md), $GPUS
# and sec() (a section header in the log).
OUT=${OUT:-/tmp/masep-out}
mkdir -p "$OUT"
W=$(mktemp -d)
export LD_LIBRARY_PATH=$PWD/$C/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export MASEP_BIN=$PWD/$C/masep NCCL_NVLS_ENABLE=0
M=$MASEP_BIN
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
sec() { echo; echo "===== $* ($(date -u +%T)) ====="; }
