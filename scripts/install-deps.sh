#!/usr/bin/env bash
# Installs kvsim's build and test dependencies from Debian packages; with the argument `fuzz`
# also clang with its libFuzzer and sanitizer runtimes and llvm-symbolizer (make fuzz,
# docs/fuzzing.md). The report generator's Python packages and Chromium (its test opens the
# report headless) are part of the base set. Idempotent: when every package is already present it returns at once, without apt.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libhdf5-dev libeigen3-dev libtbb-dev libboost-program-options-dev
  catch2 nlohmann-json3-dev libpcre2-dev libxxhash-dev
  # MPI scale-out (docs/scale-out.md): the library, and mpirun for its tests
  libopenmpi-dev openmpi-bin
  python3-h5py python3-numpy
  # kvsim report (python/kvsim_report, docs/report.md) and its browser test
  python3-matplotlib python3-pandas python3-scipy chromium
)
# Debian 12's clang is clang 14; libFuzzer (libclang_rt.fuzzer) is in libclang-rt-14-dev, which
# clang only recommends.
[ "${1:-}" = fuzz ] && packages+=(clang libclang-rt-14-dev llvm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
