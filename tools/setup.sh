#!/usr/bin/env bash
# masep's set-up script: the README's two commands.
#   tools/setup.sh run    install missing Debian packages, build, run the simulator on the
#                         built-in paper scenario (`masep sim`)
#   tools/setup.sh test   install missing packages, build, run every test (ctest); GPU tests
#                         skip when no GPU is present
# Environment: BUILD_DIR (default build), MASEP_CUDA (AUTO/ON/OFF, default AUTO),
#              MASEP_SANITIZE (ON/OFF), JOBS (default: nproc), CTEST_LABELS (regex, optional).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
case "$mode" in
  run|test|build) ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "usage: tools/setup.sh run|test|build" >&2; exit 2 ;;
esac

# Debian packages masep builds with. The CUDA toolkit is optional and never installed here.
packages=(build-essential cmake ninja-build pkg-config libyaml-cpp-dev libfmt-dev
  libboost-graph-dev libboost-program-options-dev nlohmann-json3-dev libtbb-dev
  libgtest-dev libgmock-dev libbenchmark-dev gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMASEP_CUDA="${MASEP_CUDA:-AUTO}" -DMASEP_SANITIZE="${MASEP_SANITIZE:-OFF}" >/dev/null
cmake --build "$build_dir" -j "$jobs"

case "$mode" in
  run) exec "$build_dir/tools/masep" sim ;;
  test)
    args=(--test-dir "$build_dir" --output-on-failure -j "$jobs")
    [ -n "${CTEST_LABELS:-}" ] && args+=(-L "$CTEST_LABELS")
    ctest "${args[@]}" ;;
  build) ;;
esac
