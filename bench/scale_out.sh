#!/usr/bin/env bash
# Strong scaling of `kvsim run` across MPI ranks (issue 18, docs/scale-out.md, docs/perf.md
# "Scale-out"): one SmolLM2-135M trace set of 34 prompts whose lengths differ 8x (12 of 256
# tokens, 12 of 1,024, 10 of 2,048: TinyStories validation text, 32-token continuations, window
# 64), replayed against 8 policies x 2 ratios at 1 rank x 1 thread (the baseline), 2 ranks x 1
# thread and 1 rank x 2 threads, each REPEAT times, best kept. Prints each configuration's wall
# time, its speed-up over the baseline and its efficiency (speed-up / processes), the same for
# the replay phase alone (from the progress line: after every rank opened the set), what rank 0
# received (bytes per prompt), and checks that every configuration wrote the baseline's bytes.
# Then the machine's own ceiling for two processes: two independent single-process runs of the
# whole set started together (no MPI, nothing shared), whose throughput over one run is what any
# 2-process split can reach here.
# Usage: bench/scale_out.sh [REPEAT (default 2)] — from the repository root, on an idle machine;
# needs ../shared, mpirun (openmpi-bin) and the SmolLM2 GGUF (scripts/get-model.sh smollm2-135m).
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-2}
. bench/scale_out_inputs.sh scale-out
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
replay() {  # NAME THREADS [LAUNCHER...]: one run; its last progress line in $line
  local name=$1 threads=$2
  shift 2
  line=$("$@" "$K" run "${traces[@]}" --policies "$policies" --ratio 0.5,0.8 --threads "$threads" \
         --overwrite --out "$dir/$name" 2>&1 >/dev/null | grep 'done:')
}
seconds() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { print e - s }'; }
smaller() { awk -v a="$1" -v b="$2" 'BEGIN { print (b < a) ? b : a }'; }
run() {  # NAME RANKS THREADS -> best wall seconds in $best, best replay phase in $phase
  local name=$1 ranks=$2 threads=$3 start
  local -a pre=()
  [ "$ranks" -gt 1 ] && pre=("${mpirun[@]}" -np "$ranks")
  best=1e9 phase=1e9
  for _ in $(seq "$repeat"); do
    start=$(date +%s.%N)
    replay "$name" "$threads" "${pre[@]}"
    best=$(smaller "$best" "$(seconds "$start")")
    phase=$(smaller "$phase" "$(echo "$line" | sed -E 's/.* in ([0-9.]+)s$/\1/')")
  done
}
report() {  # LABEL SECONDS PHASE PROCESSES
  awk -v n="$1" -v t="$2" -v p="$3" -v c="$4" -v b="$t1" -v bp="$p1" 'BEGIN {
    printf "bench scale-out %-20s wall %6.2f s, speed-up %.2fx, efficiency %.2f | replay phase %6.2f s, speed-up %.2fx, efficiency %.2f\n",
           n, t, b / t, b / t / c, p, bp / p, bp / p / c }'
}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) $(nproc) cores;" \
     "$(lscpu | sed -n 's/^Model name: *//p'); $(mpirun --version | head -1)"
run base 1 1
t1=$best p1=$phase
report "1 rank x 1 thread" "$t1" "$p1" 1
for cfg in "2:1" "1:2"; do
  ranks=${cfg%%:*} threads=${cfg##*:}
  name="r${ranks}t${threads}"
  run "$name" "$ranks" "$threads"
  report "$ranks rank(s) x $threads thread(s)" "$best" "$phase" $((ranks * threads))
  [ "$ranks" -gt 1 ] && echo "bench scale-out   rank 0 received: ${line#*MPI ranks }"
  for f in layers.csv summary.csv kept.csv; do
    cmp -s "$dir/base/$f" "$dir/$name/$f" || { echo "bench scale-out: $name/$f differs from the baseline's"; exit 1; }
  done
done
# The ceiling: two whole single-process runs at once, 1 thread each (twice the work).
best=1e9
for _ in $(seq "$repeat"); do
  start=$(date +%s.%N)
  replay twin-a 1 &
  replay twin-b 1
  wait
  best=$(smaller "$best" "$(seconds "$start")")
done
awk -v t="$best" -v b="$t1" 'BEGIN { printf "bench scale-out ceiling: two independent 1-thread runs at once: %.2f s for twice the work = %.2fx the throughput of one (efficiency %.2f)\n", t, 2 * b / t, b / t }'
echo "bench scale-out: every configuration wrote the baseline's layers.csv, summary.csv and kept.csv"
