#!/usr/bin/env bash
# A masep search as a Slurm job array: each array task computes one shard of the candidates
# (masep search reads SLURM_ARRAY_TASK_ID/COUNT/MIN when --out is given) and records their
# floors and simulations under OUT/records; the follow-up job joins them and prints the
# result a single process would have printed (byte for byte).
#   sbatch --array=0-15 tools/slurm/search-array.sh OUT SCENARIO [masep search options]
#   sbatch --dependency=afterok:<jobid> --wrap \
#       "masep search SCENARIO [the same options] --merge --out OUT --csv OUT/search.csv"
# OUT must be on a file system every node sees, and every task must run the same masep build
# (records carry its hash). A task that fails can be resubmitted alone (sbatch --array=7 ...):
# what it already recorded is read back, not computed again. A map works the same way
# (options --map G... --batch B... --map-context C...; the merge job adds --map-out DIR for
# map.csv and the heat maps): every task takes its share of every search. docs/search.md.
#SBATCH --job-name=masep-search
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
set -euo pipefail
out=${1:?usage: search-array.sh OUT SCENARIO [masep search options]}
scenario=${2:?usage: search-array.sh OUT SCENARIO [masep search options]}
shift 2
exec masep search "$scenario" --out "$out" --jobs "${SLURM_CPUS_PER_TASK:-0}" "$@"
