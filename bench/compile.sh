#!/usr/bin/env bash
# Table compilation cost (issue 4, docs/perf.md "Table compilation"): `kvsim compile` of the
# calibration the tables experiment uses — stories260K, 32 TinyStories prompts of 512 + 32
# tokens, budgets 16,32,64,128, window 32, learner cql — at 1 thread (the baseline) and at
# THREADS. Prints wall time, rewards evaluated per second and the distinct kept sets behind
# them, then the speed-up. With `--reward exact` available it also compiles one round with exact
# rewards (teacher-forced re-decode) for the exact/estimate cost ratio.
# Usage: bench/compile.sh [THREADS (default 2)]   — run from the repository root; needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
. bench/stories_inputs.sh compile
"$K" trace -m "$M" --window 64 --prompt-len 512 --cont-len 32 --limit 32 --task tinystories -o "$dir/calib.h5" "$text" \
  2>/dev/null >/dev/null
# "838400 rewards (105111 distinct kept sets measured) in 9.2 s: 90959 rewards/s; loading 0.5 s"
run() {
  local name=$1; shift
  local start end line
  rate=0
  start=$(date +%s.%N)
  line=$("$K" compile "$dir/calib.h5" --budget 16,32,64,128 --window 32 --overwrite --out "$dir/$name.json" "$@" 2>/dev/null |
         grep 'rewards/s')
  end=$(date +%s.%N)
  awk -v n="$name" -v s="$start" -v e="$end" -v l="$line" 'BEGIN { printf "bench compile %-24s wall %6.2f s | %s\n", n, e - s, l }'
  rate=$(echo "$line" | sed -E 's/.* ([0-9]+) rewards\/s.*/\1/')
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
run "cql-1-thread" -t 1; r1=$rate
run "cql-$threads-threads" -t "$threads"; rn=$rate
echo "bench compile speed-up $threads threads vs 1: $(ratio "$rn" "$r1")x (rewards/s)"
cmp -s "$dir/cql-1-thread.json" <(sed "s/cql-$threads-threads/cql-1-thread/" "$dir/cql-$threads-threads.json") &&
  echo "bench compile tables identical at 1 and $threads threads" || echo "bench compile TABLES DIFFER across thread counts"
if "$K" compile --help 2>&1 | grep -q -- '--reward'; then
  run "cql-exact-1-round" -t "$threads" --max-rounds 1 --reward exact --model "$M"; re=$rate
  run "cql-estimate-1-round" -t "$threads" --max-rounds 1; e1=$rate
  echo "bench compile exact rewards cost $(ratio "$e1" "$re")x the estimated ones (rewards/s ratio, 1 round)"
fi
