#!/usr/bin/env bash
# One device call on a GPU host runs everything issue 5 asks for (the commands and their
# output land in $OUT; at most 8 files):
#   run(kind="nvidia-h100-x4", carry=["build-gpu/carry"], command="tools/gpu-host/run-all.sh")
# after tools/gpu-host/build-carry.sh on the development machine. Arguments: [CARRY_DIR]
# (default build-gpu/carry). With fewer than 4 GPUs the 4-GPU parts are skipped (and said so).
# Environment: QUICK=1 skips the kernel GPU tests and the 8192-context runs; SKIP_2GPU=1 skips
# the 2-GPU timing runs on a 4-GPU host; PROFILE=1 (or PROFILE=quick) runs `masep profile`
# first and writes $OUT/calibration.yaml.
#
# $OUT/run-all.log      everything, in order
# $OUT/summary.tsv      one line per `masep exec` run: plan, batch, context, TPOT, tokens/s,
#                       utilisation, roofline fraction, copy GB/s, rc
# $OUT/verify.txt       the --verify lines
# $OUT/json.tar.gz      the --json output of every run
# $OUT/traces.tar.gz    the measured traces (batch 128, context 2048)
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
mkdir -p "$W/json" "$W/traces"
LOG=$OUT/run-all.log
exec > >(tee -a "$LOG") 2>&1
sec "host"; date -u; nvidia-smi; nvidia-smi topo -m | head -8
echo "GPUs: $GPUS"

sec "unit tests (exec)"
$C/test_exec_launch_plan 2>&1 | tail -3
$C/test_exec_clock_env 2>&1 | tail -3
if [ "${QUICK:-0}" != 1 ]; then
  sec "kernel GPU tests"; timeout 300 $C/test_kernels_gpu 2>&1 | tail -25
fi
if [ -n "${PROFILE:-}" ]; then
  sec "masep profile"
  pq=(); [ "$PROFILE" = quick ] && pq=(--quick)
  timeout 300 "$M" profile "${pq[@]}" --gpus "$GPUS" --out "$OUT/calibration.yaml" 2>&1 | tail -40
  echo "rc=$?"
  [ -x $C/test_profile_gpu ] && timeout 200 $C/test_profile_gpu 2>&1 | tail -5
fi
sec "exec GPU tests"
timeout 400 $C/test_exec_gpu 2>&1 | grep -E '^\[|masep exec:|verify  |TPOT|MASEP_GPU_SKIP|rror|Failure|Expected|Which' | head -80

printf 'run\tplan\tgpus\tbatch\tcontext\ttpot_ms\ttokens_per_s\tutil\troofline_fraction\tcopy_GBps\tverify\trc\n' >"$OUT/summary.tsv"
# exec NAME PLAN GPUS BATCH CONTEXT ARGS... : one `masep exec --json` run, a summary line.
exec_run() {
  local name=$1 plan=$2 gpus=$3 b=$4 c=$5; shift 5
  sec "$name: $plan on $gpus GPUs, batch $b, context $c"
  local js=$W/json/$name.json
  echo "\$ masep exec $* --set workload.batch=$b --set workload.context=$c --json"
  timeout 240 "$M" exec "$@" --set workload.batch="$b" --set workload.context="$c" --json >"$js"
  local rc=$?
  cat "$js" | head -c 600; echo
  echo "rc=$rc"
  python3 - "$js" "$name" "$plan" "$gpus" "$b" "$c" "$rc" >>"$OUT/summary.tsv" <<'PY' || true
import json, sys
js, name, plan, gpus, b, c, rc = sys.argv[1:]
try:
    m = json.load(open(js))
except Exception:
    print("\t".join([name, plan, gpus, b, c, "-", "-", "-", "-", "-", "-", rc])); sys.exit()
v = m.get("verify", {})
print("\t".join([name, plan, gpus, b, c, "%.3f" % m["tpot_mean_ms"], "%.0f" % m["tokens_per_s"],
                 "%.3f" % m["mean_utilisation"], "%.3f" % m.get("roofline_fraction", 0),
                 "/".join("%.0f" % x for x in m.get("copy_GBps", [])),
                 ("PASS %.2e" % v["rel_err"] if v.get("pass") else ("FAIL %.2e" % v["rel_err"] if v else "-")),
                 rc]))
PY
}

STEPS="--steps 8 --timeout 90"
T="--set topology=host-4xh100"
MA31="$T --set plan.attention.gpus=3 --set plan.attention.head_parallel=1 --set plan.attention.sequence_parallel=3 --set plan.attention.replicas=1 --set plan.moe.gpus=1"
CO4="$T --set plan.colocated.gpus=4 --set plan.colocated.tensor_parallel=4"
MA11="$T --set plan.attention.gpus=1 --set plan.attention.head_parallel=1 --set plan.attention.replicas=1 --set plan.moe.gpus=1"
CO2="$T --set plan.colocated.gpus=2 --set plan.colocated.tensor_parallel=2"
CTXS="2048 8192"; [ "${QUICK:-0}" = 1 ] && CTXS=2048

if [ "$GPUS" -ge 4 ]; then
  for b in 32 128; do for c in $CTXS; do
    tr=(); [ $b = 128 ] && [ $c = 2048 ] && tr=(--trace "$W/traces/paper-ma31-b$b-c$c.json")
    exec_run ma31-b$b-c$c "MA 3:1 (sp 3)" 4 $b $c paper $MA31 $STEPS "${tr[@]}"
    tr=(); [ $b = 128 ] && [ $c = 2048 ] && tr=(--trace "$W/traces/paper-co4-b$b-c$c.json")
    exec_run co4-b$b-c$c "co-located tp4" 4 $b $c paper-colocated $CO4 $STEPS "${tr[@]}"
  done; done
else
  sec "4-GPU runs skipped: this host has $GPUS GPU(s)"
fi
if [ "$GPUS" -ge 2 ] && [ "${SKIP_2GPU:-0}" != 1 ]; then
  for b in 32 128; do for c in $CTXS; do
    tr=(); [ $b = 128 ] && [ $c = 2048 ] && tr=(--trace "$W/traces/paper-ma11-b$b-c$c.json")
    exec_run ma11-b$b-c$c "MA 1:1" 2 $b $c paper $MA11 $STEPS "${tr[@]}"
    exec_run co2-b$b-c$c "co-located tp2" 2 $b $c paper-colocated $CO2 $STEPS
  done; done
fi

# Issue 19: the same plans replayed from one CUDA graph per step (--launch graph), context 2048.
if [ "$GPUS" -ge 4 ]; then
  for b in 32 128; do
    exec_run ma31-b$b-c2048-graph "MA 3:1 (sp 3), graph" 4 $b 2048 paper $MA31 $STEPS --launch graph
    exec_run co4-b$b-c2048-graph "co-located tp4, graph" 4 $b 2048 paper-colocated $CO4 $STEPS --launch graph
  done
fi
if [ "$GPUS" -ge 2 ] && [ "${SKIP_2GPU:-0}" != 1 ]; then
  for b in 32 128; do
    exec_run ma11-b$b-c2048-graph "MA 1:1, graph" 2 $b 2048 paper $MA11 $STEPS --launch graph
    exec_run co2-b$b-c2048-graph "co-located tp2, graph" 2 $b 2048 paper-colocated $CO2 $STEPS --launch graph
  done
fi

sec "--verify"
if [ "$GPUS" -ge 1 ]; then
  exec_run verify-tiny-co1 "verify tiny co-located" 1 16 512 scenarios/examples/tiny-1gpu.yaml --verify --timeout 90
fi
if [ "$GPUS" -ge 2 ]; then
  exec_run verify-tiny-ma11 "verify tiny MA 1:1" 2 16 512 scenarios/examples/tiny-2gpu.yaml --verify --timeout 90
  exec_run verify-paper-ma11 "verify paper MA 1:1" 2 32 512 paper $MA11 --verify --timeout 120
  exec_run verify-tiny-ma11-graph "verify tiny MA 1:1, graph" 2 16 512 scenarios/examples/tiny-2gpu.yaml --verify --launch graph --timeout 90
fi
if [ "$GPUS" -ge 4 ]; then
  # 3 attention replicas (head and sequence parallelism are not verifiable): batch % 6 == 0
  exec_run verify-paper-ma31 "verify paper MA 3:1 (3 replicas)" 4 36 512 paper \
    $T --set plan.attention.gpus=3 --set plan.attention.head_parallel=1 \
    --set plan.attention.replicas=3 --set plan.moe.gpus=1 --verify --timeout 120
fi
grep -h -o '"verify":{[^}]*}' "$W"/json/verify-*.json >/dev/null 2>&1
for f in "$W"/json/verify-*.json; do
  [ -e "$f" ] && echo "$(basename "$f" .json): $(grep -o '"verify":{[^}]*}' "$f")"
done >"$OUT/verify.txt"
cat "$OUT/verify.txt"

if command -v mpirun >/dev/null; then
  NP=$(( GPUS >= 4 ? 4 : 2 ))
  sec "mpirun -np $NP"
  if [ $NP = 4 ]; then A=(paper $MA31 --set workload.batch=128 --set workload.context=2048 $STEPS -q)
  else A=(scenarios/examples/tiny-2gpu.yaml -q); fi
  timeout 240 mpirun --allow-run-as-root -np $NP -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE "$M" exec "${A[@]}"
  echo "rc=$?"
fi

sec "summary"; column -t -s $'\t' "$OUT/summary.tsv" || cat "$OUT/summary.tsv"
tar -C "$W" -czf "$OUT/json.tar.gz" json
tar -C "$W" -czf "$OUT/traces.tar.gz" traces
ls -la "$OUT"
