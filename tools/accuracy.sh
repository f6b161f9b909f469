#!/usr/bin/env bash
# Accuracy table for docs/accuracy.md: for every validation scenario, the simulated TPOT
# (calibrated only from `masep profile`) against the TPOT measured by `masep exec`, and the
# per-op median error from `masep compare`.
#   tools/accuracy.sh [MEASURED_DIR] [CALIBRATION]   (run from the repository root)
# MEASURED_DIR holds NAME.json (masep exec --json) and NAME.trace.json (masep exec --trace)
# for each scenarios/validation/NAME.yaml. Prints a Markdown table; exits non-zero on a
# missing measurement or a failed command.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MASEP:-build/tools/masep}
V=${1:-results/exec/h200x4-2026-11-27-final/validation}
CAL=${2:-sim/calibration/h200.yaml}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| scenario | measured TPOT ms | simulated TPOT ms | TPOT error | per-op median error | per-op p90 abs error |"
echo "|---|---:|---:|---:|---:|---:|"
for f in scenarios/validation/*.yaml; do
  n=$(basename "$f" .yaml)
  [ -f "$V/$n.trace.json" ] || { echo "missing measurement $V/$n.trace.json" >&2; exit 1; }
  # --allow-mismatch: the validation scenarios name host-4xh100 while the default measurements
  # and calibration are from 4 x H200 (docs/accuracy.md); the warning goes to $tmp/$n.err.
  "$M" sim "$f" --calibration "$CAL" --allow-mismatch --trace "$tmp/$n.sim.json" --quiet >/dev/null 2>"$tmp/$n.err"
  "$M" compare "$tmp/$n.sim.json" "$V/$n.trace.json" --json >"$tmp/$n.cmp.json"
  python3 - "$tmp/$n.cmp.json" "$n" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
a = c["all"]
print("| %s | %.3f | %.3f | %+.1f%% | %+.1f%% | %.1f%% |" % (
    sys.argv[2], c["measured_tpot_ms"], c["sim_tpot_ms"], 100 * c["tpot_error"],
    100 * a["median_error"], 100 * a["p90_abs_error"]))
PY
done
