#!/usr/bin/env bash
# One device call for docs/accuracy.md (issue 6): the calibration and the validation
# measurements, from one machine.
#   run(kind="nvidia-h100-x4", carry=["build-gpu/carry"], command="tools/gpu-host/accuracy-run.sh")
# after tools/gpu-host/build-carry.sh on the development machine. Arguments: [CARRY_DIR].
# Environment: SKIP_PROFILE=1 (re-measure only), SKIP_TESTS=1.
#
# $OUT/run.log            everything, in order (host, driver, versions)
# $OUT/calibration.yaml   masep profile --gpus N (full grid)
# $OUT/profile.log        its log
# $OUT/validation.tar.gz  validation/NAME.{json,trace.json,err} for every scenarios/validation/
#                         NAME.yaml (masep exec --json --trace, CUDA_MODULE_LOADING=EAGER),
#                         and validation-extra/ (v09 again, and v09 with lazy loading)
# Then, here: tar -xzf validation.tar.gz; tools/accuracy.sh DIR/validation calibration.yaml
set -uo pipefail
cd "$(dirname "$0")/../.."
C=${1:-build-gpu/carry}
. tools/gpu-host/env.sh
mkdir -p "$W/validation" "$W/validation-extra"
exec > >(tee -a "$OUT/run.log") 2>&1
sec host
date -u
nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.max.sm --format=csv
nvidia-smi topo -m | head -6
echo "GPUs: $GPUS"

if [ "${SKIP_PROFILE:-0}" != 1 ]; then
  sec "masep profile --gpus $GPUS"
  ( time timeout 240 "$M" profile --gpus "$GPUS" --out "$OUT/calibration.yaml" ) \
    >"$OUT/profile.log" 2>&1
  echo "rc=$?"
  cat "$OUT/profile.log"
fi

# one validation run: DIR NAME SCENARIO [env...]
vrun() {
  local dir=$1 name=$2 f=$3
  shift 3
  ( time env "$@" timeout 120 "$M" exec "$f" --json --trace "$dir/$name.trace.json" \
      --timeout 60 >"$dir/$name.json" ) 2>"$dir/$name.err"
  local rc=$?
  python3 - "$dir/$name.json" "$name" "$rc" <<'PY'
import json, sys
try:
    m = json.load(open(sys.argv[1]))
    print("%-30s TPOT %.3f ms  steps %s  rc %s" % (sys.argv[2], m["tpot_mean_ms"],
          " ".join("%.2f" % x for x in m["step_ms"]), sys.argv[3]))
except Exception as e:
    print("%-30s no result (rc %s): %s" % (sys.argv[2], sys.argv[3], e))
PY
}
sec "validation (CUDA_MODULE_LOADING=EAGER)"
for f in scenarios/validation/*.yaml; do
  n=$(basename "$f" .yaml)
  vrun "$W/validation" "$n" "$f" CUDA_MODULE_LOADING=EAGER
done
sec "validation extra: v09 again (eager), v09 lazy"
v09=scenarios/validation/v09-co4-b256-c2048-zipf.yaml
vrun "$W/validation-extra" v09-eager-2 "$v09" CUDA_MODULE_LOADING=EAGER
vrun "$W/validation-extra" v09-lazy "$v09" CUDA_MODULE_LOADING=LAZY
tar -C "$W" -czf "$OUT/validation.tar.gz" validation validation-extra

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  sec "exec unit tests"
  $C/test_exec_launch_plan 2>&1 | tail -3
  sec "profile GPU test"
  timeout 120 $C/test_profile_gpu 2>&1 | tail -4
  sec "exec GPU tests"
  timeout 150 $C/test_exec_gpu 2>&1 |
    grep -E '^\[|verify  |MASEP_GPU_SKIP|rror|Failure|Expected|Which' | head -60
fi
sec done
ls -la "$OUT"
