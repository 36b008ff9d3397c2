#!/usr/bin/env bash
# Runs every benchmark of bench/ with the arguments docs/perf.md quotes. `make bench` calls it.
# Run from the repository root on an otherwise idle machine; figures drift ±20% run to run,
# so compare the ratios printed within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/release
threads=${KVSIM_BENCH_THREADS:-2}
# OpenBLAS (the peak lines' baseline, bench/peak.hpp) 0.3.21 does not know Zen 5 and would take
# its AVX2 (Haswell) kernels: on an AVX-512 CPU ask for its AVX-512 ones.
if grep -q -w avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}; fi
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) $(nproc) cores"
"$bin/bench_gemm" "$threads"
# SmolLM2-135M's real weights when scripts/get-model.sh has fetched them.
gguf="${KVSIM_MODELS:-$HOME/.cache/kvsim/models}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
"$bin/bench_prefill" "$threads" 2048 3 "$gguf"
"$bin/bench_prefill" "$threads" 512 3 "$gguf"
# llama.cpp's prefill on the same GGUF (F32 and Q4_1), interleaved with the tracer's: ratios.
bash bench/llama_cpp.sh "$threads"
for b in "$bin"/bench_*; do
  case "$(basename "$b")" in bench_gemm|bench_prefill|bench_cuda_prefill) continue ;; esac
  "$b" --threads "$threads"
done
# Prints one "skipped" line without a CUDA device (or in a build without CUDA).
"$bin/bench_cuda_prefill" bf16 2 4096 16384
bash bench/compile.sh "$threads"
bash bench/trace_storage.sh 1
bash bench/scale_out.sh
bash bench/scale_out_trace.sh
