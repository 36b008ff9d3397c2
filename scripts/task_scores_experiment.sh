#!/usr/bin/env bash
# The seeds' comparison in the small (docs/results.md): SmolLM2-135M-Instruct on RULER-style
# tasks at LENGTH tokens, every policy × budgets 64..1024, task score (greedy generation from
# the compressed cache, % of FullKV), exact Δ-NLL and the cheap estimates; CompilerKV with the
# default tables and with tables compiled on a disjoint calibration set of the same task family
# (coverage and published absolute gates) and on another family (Paul Graham text, 2k).
#
# Usage: scripts/task_scores_experiment.sh [OUT_DIR] [LENGTH]    (default /tmp/kvsim-results 4096;
# KVSIM=path/to/kvsim to use another binary than build/release/kvsim)
# Steps whose output exists are skipped, so an interrupted run resumes. Wall times go to
# OUT_DIR/times.txt; the tables of docs/results.md come from scripts/task_scores_report.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/kvsim-results}
LEN=${2:-4096}
K=${KVSIM:-$PWD/build/release/kvsim}
SHARED=$PWD/../shared
G=$(scripts/get-model.sh smollm2-135m)
mkdir -p "$OUT"
cd "$OUT"
step() {  # step NAME OUTPUT COMMAND...: runs COMMAND unless OUTPUT exists, timing it
  local name=$1 out=$2
  shift 2
  if [ -e "$out" ]; then echo "[$name] $out exists, skipped"; return; fi
  local t0=$SECONDS
  "$@"
  echo "$name $((SECONDS - t0)) s" >>times.txt
}
TASKS='niah_single_1,niah_single_2,niah_multikey_1:num_k=2,niah_multikey_1:haystack=noise'
BUDGETS=64,128,256,512,1024
# Evaluation (seed 1, 8 per task) and a disjoint calibration set of the same family (seed 2).
step tasks-eval eval_tasks.jsonl "$K" tasks --model "$G" --tasks "$TASKS" --length "$LEN" --n 8 --seed 1 \
  --haystack "$SHARED/data/paul_graham_essays" --chat --out eval_tasks.jsonl
step tasks-calib calib_tasks.jsonl "$K" tasks --model "$G" --tasks "$TASKS" --length "$LEN" --n 2 --seed 2 \
  --haystack "$SHARED/data/paul_graham_essays" --chat --out calib_tasks.jsonl
step trace-eval eval.h5 "$K" trace -m "$G" -i eval_tasks.jsonl --chat -o eval.h5
step trace-calib calib.h5 "$K" trace -m "$G" -i calib_tasks.jsonl --chat -o calib.h5
# Another family: 12 chunks of 2,048 tokens of the first 25 Paul Graham essays, as plain text.
if [ ! -e pg_a.txt ]; then
  ls "$SHARED"/data/paul_graham_essays/*.txt | grep -v LICENSE | head -25 | xargs cat >pg_a.txt
fi
step trace-pg pg.h5 "$K" trace -m "$G" -i pg_a.txt --prompt-len 2048 --cont-len 32 --limit 12 --task pg -o pg.h5
step compile-same-coverage t_same_coverage.json "$K" compile calib.h5 --budget 128,512,1024 --gate coverage \
  --max-rounds 1 --out t_same_coverage.json
step compile-same-absolute t_same_absolute.json "$K" compile calib.h5 --budget 128,512,1024 --gate absolute \
  --max-rounds 1 --out t_same_absolute.json
step compile-pg-coverage t_pg_coverage.json "$K" compile pg.h5 --budget 128,512,1024 --gate coverage \
  --max-rounds 1 --out t_pg_coverage.json
# Every policy, with and without sinks (sink=4 where the policy has a window).
POLICIES='full,streamingllm,snapkv,snapkv:sink=4,pyramidkv,pyramidkv:sink=4,adakv(snapkv),adakv(snapkv:sink=4),'
POLICIES+='criticalkv(snapkv),criticalkv(snapkv:sink=4),tova,tova:sink=4,knorm,laprox,laprox:sink=4,'
POLICIES+='compilerkv,compilerkv:gate=coverage,compilerkv:gate=coverage,sink=4'
step validate-baselines v_all "$K" validate eval.h5 -m "$G" --policies "$POLICIES" --budget "$BUDGETS" \
  --generate 16 -o v_all -q
TABLES='compilerkv:table=t_same_coverage.json,compilerkv:table=t_same_absolute.json,compilerkv:table=t_pg_coverage.json'
step validate-tables v_tables "$K" validate eval.h5 -m "$G" --policies "$TABLES" --budget "$BUDGETS" \
  --generate 16 -o v_tables -q
cat times.txt
