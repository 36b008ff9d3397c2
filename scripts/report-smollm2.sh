#!/usr/bin/env bash
# The SmolLM2-135M report of docs/report.md: 6 RULER-style prompts of 1k tokens, run, validate
# --generate, two compiled tables on a disjoint calibration set, diff of the two, transfer, report.
# Usage: scripts/report-smollm2.sh [OUT_DIR]   (default out/report-smollm2; about 5 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
K=$PWD/${KVSIM_BINARY:-build/release/kvsim}
haystack=$PWD/../shared/data/paul_graham_essays
G=$(scripts/get-model.sh smollm2-135m)
out=${1:-out/report-smollm2}
mkdir -p "$out"
cd "$out"
n="nice -n 19"
t0=$(date +%s)
$n $K tasks --model "$G" --tasks niah_single_1,niah_single_2 --haystack "$haystack" --length 1024 --n 3 --seed 1 --chat --out eval.jsonl
$n $K tasks --model "$G" --tasks niah_single_1,niah_single_2 --haystack "$haystack" --length 1024 --n 2 --seed 2 --chat --out calib.jsonl
$n $K trace --model "$G" --input eval.jsonl --chat --out eval.h5 --overwrite -t 2
$n $K trace --model "$G" --input calib.jsonl --chat --out calib.h5 --overwrite -t 2
echo "traces: $(( $(date +%s) - t0 )) s"
$n $K run eval.h5 --policies 'full,streamingllm,snapkv,snapkv:sink=4,pyramidkv,adakv(snapkv),tova,knorm,laprox,compilerkv,compilerkv:gate=coverage' \
  --budget 64,128,256,512 --out run --overwrite -q -t 2
echo "run: $(( $(date +%s) - t0 )) s"
$n $K compile calib.h5 --budget 64,128,256,512 --gate coverage --max-rounds 2 --out table-coverage.json --overwrite -t 2
$n $K compile calib.h5 --budget 64,128,256,512 --gate absolute --max-rounds 2 --out table-absolute.json --overwrite -t 2
echo "compile: $(( $(date +%s) - t0 )) s"
$n $K validate eval.h5 --model "$G" --policies 'full,streamingllm,snapkv:sink=4,tova,laprox,compilerkv:gate=coverage,compilerkv:gate=coverage,table=table-coverage.json' \
  --budget 64,128,256,512 --generate 16 --out validate --overwrite -q -t 2
echo "validate: $(( $(date +%s) - t0 )) s"
rc=0; $n $K diff table-absolute.json table-coverage.json --traces eval.h5 --budget 64,128,256,512 --out diff --overwrite -t 2 || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 3 ]
rc=0; $n $K diff default table-coverage.json --traces eval.h5 --budget 64,128,256,512 --out diff-default --overwrite -t 2 || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 3 ]
$n $K transfer table-absolute.json table-coverage.json --traces eval.h5 --out transfer --overwrite -t 2
echo "diff+transfer: $(( $(date +%s) - t0 )) s"
$n $K report run validate table-coverage.json table-absolute.json diff diff-default transfer \
  --title "kvsim report: SmolLM2-135M-Instruct, RULER niah at 1k tokens" --out report.html --overwrite
echo "total: $(( $(date +%s) - t0 )) s"
