#!/usr/bin/env bash
# llama.cpp's CPU prefill as the tracer's baseline, same run (issue 14, item 3).
# Builds `llama-bench` and `llama-quantize` (CPU only, Release, GGML_NATIVE) from the llama.cpp
# source that PyPI ships inside the llama-cpp-python 0.3.36 sdist, in a cache outside the
# repository; converts the SmolLM2-135M GGUF (scripts/get-model.sh smollm2-135m) to F32; then,
# ROUNDS times, runs llama-bench on F32 and on Q4_1 interleaved with bench_prefill on the same
# GGUF (record on), at 512 and 2,048 tokens, and prints kvsim's tok/s as ratios to llama.cpp's
# (best of 3 repetitions within a round and best over the rounds, on both sides). llama.cpp runs
# with its defaults (OpenMP threads that spin while waiting, which a busy machine slows more than
# kvsim's oneTBB workers: state the load with the figures).
# Prints one "skipped" line and exits 0 when something it needs is missing or fails to build.
# Usage: bench/llama_cpp.sh [THREADS (default 2)] [ROUNDS (default 3)] — from the repository
# root, after the release build. Environment: KVSIM_LLAMA_CPP (cache folder, default
# ~/.cache/kvsim/llama.cpp), KVSIM_MODELS (as scripts/get-model.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-3}
version=0.3.36
cache=${KVSIM_LLAMA_CPP:-$HOME/.cache/kvsim/llama.cpp}
gguf="${KVSIM_MODELS:-$HOME/.cache/kvsim/models}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
f32="$cache/SmolLM2-135M-Instruct.F32.gguf"
src="$cache/llama_cpp_python-$version/vendor/llama.cpp"
build="$cache/build-$version"
prefill=build/release/bench_prefill
skip() { echo "bench llama.cpp: skipped ($*)"; exit 0; }

[ -x "$prefill" ] || skip "$prefill not built"
[ -f "$gguf" ] || skip "$gguf absent; scripts/get-model.sh smollm2-135m"
if [ ! -x "$build/bin/llama-bench" ] || [ ! -x "$build/bin/llama-quantize" ]; then
  command -v cmake >/dev/null || skip "no cmake"
  mkdir -p "$cache" || skip "cannot create $cache"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    # --no-build-isolation needs scikit-build-core (the sdist's build backend) to read its metadata.
    (python3 -m pip install -q scikit-build-core &&
     python3 -m pip download -q --no-deps --no-build-isolation --no-binary :all: -d "$cache" \
       "llama-cpp-python==$version" &&
     tar -xzf "$cache/llama_cpp_python-$version.tar.gz" -C "$cache") >"$cache/fetch.log" 2>&1 ||
      skip "could not fetch the llama-cpp-python $version sdist (see $cache/fetch.log)"
  fi
  echo "bench llama.cpp: building llama-bench and llama-quantize in $build (log: $build.log)"
  (cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
     -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
     -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF &&
   nice -n 5 cmake --build "$build" -j "$threads" --target llama-bench llama-quantize) >"$build.log" 2>&1 ||
    skip "llama.cpp build failed (see $build.log)"
fi
if [ ! -f "$f32" ]; then
  "$build/bin/llama-quantize" --allow-requantize "$gguf" "$f32" F32 >"$cache/quantize.log" 2>&1 ||
    skip "llama-quantize to F32 failed (see $cache/quantize.log)"
fi

echo "bench llama.cpp: $("$build/bin/llama-bench" --version 2>&1 | head -1); llama-cpp-python $version sdist; threads $threads; $rounds interleaved rounds"
# The best of llama-bench's 3 repetitions ("samples_ts": [...] of its JSON line), as
# bench_prefill reports the best of 3: on a shared machine the best run is the least disturbed.
llama() {  # llama() MODEL TOKENS -> tok/s
  "$build/bin/llama-bench" -m "$1" -p "$2" -n 0 -t "$threads" -r 3 -o jsonl 2>/dev/null |
    sed -n 's/.*"samples_ts": *\[\([^]]*\)\].*/\1/p' | tr ',' '\n' |
    awk '$1 + 0 > m { m = $1 + 0 } END { print m + 0 }'
}
# bench_prefill's line "SmolLM2-135M GGUF (fp32) T= 2048  forward ... record (...)  406.1 tok/s".
kvsim() {  # kvsim() TOKENS -> record-on tok/s
  "$prefill" "$threads" "$1" 3 "$gguf" gguf-only 2>/dev/null |
    awk '/GGUF/ { for (i = 1; i <= NF; ++i) if ($i == "tok/s") v = $(i-1); print v }'
}
best() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { print (a > b ? a : b) }'; }
declare -A top
for r in $(seq "$rounds"); do
  for n in 512 2048; do
    k=$(kvsim "$n"); f=$(llama "$f32" "$n"); q=$(llama "$gguf" "$n")
    printf "bench llama.cpp round %d T=%5d  kvsim record %8s tok/s  llama.cpp F32 %8s  Q4_1 %8s\n" "$r" "$n" "$k" "$f" "$q"
    top[k$n]=$(best "${top[k$n]:-0}" "$k"); top[f$n]=$(best "${top[f$n]:-0}" "$f"); top[q$n]=$(best "${top[q$n]:-0}" "$q")
  done
done
for n in 512 2048; do
  awk -v n="$n" -v k="${top[k$n]}" -v f="${top[f$n]}" -v q="${top[q$n]}" 'BEGIN {
    if (f <= 0 || q <= 0) { printf "bench llama.cpp T=%5d: no llama-bench figure\n", n; exit }
    printf "bench llama.cpp T=%5d  best: kvsim record %7.1f tok/s = %.2fx llama.cpp F32 (%.1f), %.2fx Q4_1 (%.1f)\n", n, k, k / f, f, k / q, q }'
done
