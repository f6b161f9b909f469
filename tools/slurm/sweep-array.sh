#!/usr/bin/env bash
# A masep sweep as a Slurm job array: each array task runs one shard (masep sweep reads
# SLURM_ARRAY_TASK_ID/COUNT/MIN), records its points under OUT/points, and the task that
# records the last point writes OUT/results.csv; the follow-up job draws the plots.
#   sbatch --array=0-15 tools/slurm/sweep-array.sh SWEEP.yaml OUT
#   sbatch --dependency=afterok:<jobid> --wrap "masep sweep SWEEP.yaml --merge --out OUT"
# OUT must be on a file system every node sees. A task that fails can be resubmitted alone
# (sbatch --array=7 ...): points already recorded are not run again.
#SBATCH --job-name=masep-sweep
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
set -euo pipefail
sweep=${1:?usage: sweep-array.sh SWEEP OUT [masep sweep options]}
out=${2:?usage: sweep-array.sh SWEEP OUT [masep sweep options]}
shift 2
exec masep sweep "$sweep" --out "$out" --jobs "${SLURM_CPUS_PER_TASK:-0}" --no-plots -q "$@"
