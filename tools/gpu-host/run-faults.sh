#!/usr/bin/env bash
# The executor's fault path (issue 18) in one device call, after build-carry.sh; sections by
# the GPUs the host has, most important first, a section is skipped once 540 s have passed:
#   run(carry=["build-gpu/cxz"], command="mkdir -p build-gpu/ck && tar xJf build-gpu/cxz/bundle.tar.xz -C build-gpu/ck && tools/gpu-host/run-faults.sh build-gpu/ck")
# One GPU (NCCL refuses two ranks on one GPU, so no rank can die and be survived here):
#   - a straggler (--straggler, any plan): tiny-1gpu at speed 0.5 from step 1 (TPOT of the slowed steps ~2x; the trace
#     shows each compute op stretched), eager and graph launches, and the fault-free baseline;
#   - refusals before the run (co-located plans are not re-mapped) and a rank killed with no
#     one to take over (the run stops cleanly, naming the rank);
#   - the recovery plans of the 4-GPU scenario, on the CPU (--dry-run prints them).
# Two GPUs: tiny-2gpu has no redundancy (1:1): a kill is refused before the run, saying what
#   would be lost; a straggler on the MoE GPU (the attention GPU waits for it).
# Four GPUs (scenarios/examples/tiny-4gpu-faults.yaml: 2 attention replicas with mirrored KV,
#   2 MoE GPUs with every expert twice): kill the MoE GPU 3 at step 4, the attention GPU 0 at
#   step 4 (its replica's sequences go to the other), both (one after the other), with
#   --no-shrink (re-init with a new id), with --fault-hang (detection by --timeout), and
#   --verify with a kill at step 0 (the survivors' output vs the one-GPU reference).
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
exec > >(tee -a "$OUT/run-faults.log") 2>&1
T0=$(date +%s)
left() { [ $(( $(date +%s) - T0 )) -lt 540 ] || { echo "(skipped: time)"; return 1; }; }
F4="scenarios/examples/tiny-4gpu-faults.yaml"
sec "host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
echo "GPUs: $GPUS"

sec "recovery plans on the CPU (no GPU needed)"
timeout 60 "$M" exec $F4 --dry-run --fault kind=gpu,gpu=3,step=4 --fault kind=gpu,gpu=0,step=6 | head -40
timeout 60 "$M" exec scenarios/examples/tiny-2gpu.yaml --dry-run --fault kind=gpu,gpu=1,step=2; echo "rc=$? (expected 1: not covered)"

if [ "$GPUS" -ge 1 ]; then
  S1="scenarios/examples/tiny-1gpu.yaml --steps 6"
  sec "1 GPU: baseline and straggler at 0.5 from step 1 (eager, graph)"
  timeout 90 "$M" exec $S1 -q --trace "$OUT/straggler-base.json"; echo "rc=$?"
  timeout 90 "$M" exec $S1 -q --straggler gpu=0,speed=0.5,step=1 --trace "$OUT/straggler-0.5.json"; echo "rc=$?"
  timeout 90 "$M" exec $S1 -q --launch graph --straggler gpu=0,speed=0.5,step=1; echo "rc=$?"
  timeout 90 "$M" exec $S1 -q --straggler gpu=0,speed=0.25,step=2,steps=2; echo "rc=$?"
  left && { sec "1 GPU: refusals before the run and a kill with no one to take over"
  timeout 60 "$M" exec $S1 -q --fault kind=gpu,gpu=0,step=2; echo "rc=$? (expected 2: co-located plans are not re-mapped)"
  timeout 60 "$M" exec $S1 -q --recover; echo "rc=$? (expected 2: same)"
  MASEP_EXEC_FAULT_RANK=0 MASEP_EXEC_FAULT_STEP=2 timeout 60 "$M" exec $S1 -q --timeout 20; echo "rc=$? (expected non-zero, 'rank 0 was killed by signal 9')"; }
fi

if [ "$GPUS" -ge 2 ] && left; then
  sec "2 GPUs: kill refused (no redundancy in 1:1); straggler on the MoE GPU"
  timeout 60 "$M" exec scenarios/examples/tiny-2gpu.yaml -q --fault kind=gpu,gpu=1,step=2; echo "rc=$? (expected 2 or 1: refused before the run)"
  timeout 90 "$M" exec scenarios/examples/tiny-2gpu.yaml -q --fault kind=straggler,gpu=1,step=1,speed=0.5; echo "rc=$?"
fi

if [ "$GPUS" -ge 4 ]; then
  sec "4 GPUs: fault-free baseline"
  timeout 90 "$M" exec $F4 -q --trace "$OUT/f4-base.json"; echo "rc=$?"
  for f in "kind=gpu,gpu=3,step=4" "kind=gpu,gpu=0,step=4"; do
    left || break
    sec "4 GPUs: --fault $f (shrink)"
    timeout 120 "$M" exec $F4 --timeout 30 --fault $f; echo "rc=$?"
  done
  left && { sec "4 GPUs: MoE GPU 3 at step 3, then attention GPU 0 at step 6"
  timeout 150 "$M" exec $F4 -q --timeout 30 --fault kind=gpu,gpu=3,step=3 --fault kind=gpu,gpu=0,step=6; echo "rc=$?"; }
  left && { sec "4 GPUs: --no-shrink (re-init with a new id)"
  timeout 120 "$M" exec $F4 -q --timeout 30 --no-shrink --fault kind=gpu,gpu=3,step=4; echo "rc=$?"; }
  left && { sec "4 GPUs: --fault-hang (detection by the watchdog after --timeout 10)"
  timeout 150 "$M" exec $F4 -q --timeout 10 --fault-hang --fault kind=gpu,gpu=2,step=4; echo "rc=$?"; }
  left && { sec "4 GPUs: --verify, MoE GPU 3 killed at step 0 (survivors vs one-GPU reference)"
  timeout 150 "$M" exec $F4 --verify --timeout 30 --fault kind=gpu,gpu=3,step=0; echo "rc=$?"
  timeout 150 "$M" exec $F4 --verify --timeout 30 --fault kind=gpu,gpu=0,step=0; echo "rc=$?"; }
fi
sec "done after $(( $(date +%s) - T0 )) s"
