#!/usr/bin/env bash
# Strong scaling of `kvsim trace` across MPI ranks (issue 18, docs/scale-out.md, docs/perf.md
# "Scale-out"): SmolLM2-135M-Instruct over 16 TinyStories prompts whose lengths differ 4x (8 of
# 512 tokens, 8 of 2,048; 32-token continuations, window 64) at 1 rank x 1 thread (the baseline),
# 2 ranks x 1 thread (parts + index) and 1 rank x 2 threads, each REPEAT times, best kept. Prints
# wall time, speed-up and efficiency, and checks that `kvsim run` on every trace writes the
# baseline's bytes (the traces carry the same file name in their own directories).
# Usage: bench/scale_out_trace.sh [REPEAT (default 1)] — from the repository root, idle machine;
# needs ../shared, mpirun and the SmolLM2 GGUF (scripts/get-model.sh smollm2-135m).
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-1}
. bench/scale_out_inputs.sh scale-out-trace
# The inputs: two slices of the text, one per prompt length (the tracer chunks a text file).
head -c 120000 "$text" >"$dir/short.txt"
tail -c 400000 "$text" >"$dir/long.txt"
trace() {  # NAME RANKS THREADS -> best wall seconds in $best
  local name=$1 ranks=$2 threads=$3 start t
  local -a pre=()
  [ "$ranks" -gt 1 ] && pre=("${mpirun[@]}" -np "$ranks")
  best=1e9
  mkdir -p "$dir/$name"
  for _ in $(seq "$repeat"); do
    start=$(date +%s.%N)
    "${pre[@]}" "$K" trace -m "$gguf" --prompt-len 512 --cont-len 32 --window 64 --limit 8 --threads "$threads" \
      --overwrite -q -o "$dir/$name/short.h5" "$dir/short.txt"
    "${pre[@]}" "$K" trace -m "$gguf" --prompt-len 2048 --cont-len 32 --window 64 --limit 8 --threads "$threads" \
      --overwrite -q -o "$dir/$name/long.h5" "$dir/long.txt"
    t=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
  done
  "$K" run "$dir/$name/short.h5" "$dir/$name/long.h5" --policies snapkv,streamingllm,laprox --ratio 0.5 \
    --overwrite -q --out "$dir/$name/run" >/dev/null
}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) $(nproc) cores;" \
     "$(lscpu | sed -n 's/^Model name: *//p'); $(mpirun --version | head -1)"
trace base 1 1
t1=$best
printf "bench scale-out trace %-20s wall %6.2f s, speed-up 1.00x, efficiency 1.00\n" "1 rank x 1 thread" "$t1"
for cfg in "2:1" "1:2"; do
  ranks=${cfg%%:*} threads=${cfg##*:}
  name="r${ranks}t${threads}"
  trace "$name" "$ranks" "$threads"
  awk -v n="$ranks rank(s) x $threads thread(s)" -v t="$best" -v b="$t1" -v c=$((ranks * threads)) \
    'BEGIN { printf "bench scale-out trace %-20s wall %6.2f s, speed-up %.2fx, efficiency %.2f\n", n, t, b / t, b / t / c }'
  for f in layers.csv summary.csv kept.csv; do
    cmp -s "$dir/base/run/$f" "$dir/$name/run/$f" || { echo "bench scale-out trace: $name: run/$f differs from the baseline's"; exit 1; }
  done
done
echo "bench scale-out trace: kvsim run on every configuration's traces wrote the baseline's layers.csv, summary.csv and kept.csv"
