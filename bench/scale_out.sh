#!/usr/bin/env bash
# Strong scaling of `kvsim run` across MPI ranks (issue 18, docs/scale-out.md, docs/perf.md
# "Scale-out"): one SmolLM2-135M trace set of 34 prompts whose lengths differ 8x (12 of 256
# tokens, 12 of 1,024, 10 of 2,048: TinyStories validation text, 32-token continuations, window 64),
# replayed against 8 policies x 2 ratios at 1 rank x 1 thread (the baseline), 2 ranks x 1 thread
# and 1 rank x 2 threads, each REPEAT times, best wall time kept. Prints each configuration's wall time, its speed-up over
# the baseline and its efficiency (speed-up / processes), the communication the job's rank 0
# received (results per prompt), and checks that every configuration wrote the baseline's bytes.
# Usage: bench/scale_out.sh [REPEAT (default 2)] — from the repository root, on an idle machine;
# needs ../shared, mpirun (openmpi-bin) and the SmolLM2 GGUF (scripts/get-model.sh smollm2-135m).
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-2}
K=build/release/kvsim
gguf="${KVSIM_MODELS:-$HOME/.cache/kvsim/models}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
skip() { echo "bench scale-out: skipped: $*"; exit 0; }
[ -f "$gguf" ] || skip "$gguf absent; scripts/get-model.sh smollm2-135m"
command -v mpirun >/dev/null || skip "mpirun absent (Debian: openmpi-bin)"
text=../shared/data/tinystories_valid_subset/tinystories_val.txt
[ -f "$text" ] || skip "../shared absent"
dir=${KVSIM_BENCH_DIR:-out/bench-scale-out}
mkdir -p "$dir"
mpirun=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
# The trace set, once (kept between runs of this script).
if [ ! -f "$dir/set.ok" ]; then
  for spec in 256:12 1024:12 2048:10; do
    len=${spec%%:*} n=${spec##*:}
    "$K" trace -m "$gguf" --prompt-len "$len" --cont-len 32 --window 64 --limit "$n" --task "stories$len" \
      --overwrite -q -o "$dir/smol$len.h5" "$text"
  done
  touch "$dir/set.ok"
fi
traces=("$dir/smol256.h5" "$dir/smol1024.h5" "$dir/smol2048.h5")
policies='snapkv,pyramidkv,streamingllm,h2o,tova,knorm,laprox,compilerkv'
run() {  # NAME RANKS THREADS -> best wall seconds in $best; its done line in $line
  local name=$1 ranks=$2 threads=$3 start end t
  local -a pre=()
  [ "$ranks" -gt 1 ] && pre=("${mpirun[@]}" -np "$ranks")
  best=1e9
  for _ in $(seq "$repeat"); do
    start=$(date +%s.%N)
    line=$("${pre[@]}" "$K" run "${traces[@]}" --policies "$policies" --ratio 0.5,0.8 --threads "$threads" \
           --overwrite --out "$dir/$name" 2>&1 >/dev/null | grep 'done:')
    end=$(date +%s.%N)
    t=$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
  done
}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) $(nproc) cores;" \
     "$(lscpu | sed -n 's/^Model name: *//p')"
run base 1 1; t1=$best
printf "bench scale-out %-22s wall %7.2f s  speed-up 1.00x  efficiency 1.00\n" "1 rank x 1 thread" "$t1"
for cfg in "2:1" "1:2"; do
  ranks=${cfg%%:*} threads=${cfg##*:}
  name="r${ranks}t${threads}"
  run "$name" "$ranks" "$threads"
  awk -v n="$ranks rank(s) x $threads thread(s)" -v t="$best" -v b="$t1" -v p=$((ranks * threads)) \
    'BEGIN { printf "bench scale-out %-22s wall %7.2f s  speed-up %.2fx  efficiency %.2f\n", n, t, b / t, b / t / p }'
  [ "$ranks" -gt 1 ] && echo "bench scale-out   rank 0 received: ${line#*MPI ranks }"
  for f in layers.csv summary.csv kept.csv; do
    cmp -s "$dir/base/$f" "$dir/$name/$f" || { echo "bench scale-out: $name/$f differs from the baseline's"; exit 1; }
  done
done
echo "bench scale-out: every configuration wrote the baseline's layers.csv, summary.csv and kept.csv"
