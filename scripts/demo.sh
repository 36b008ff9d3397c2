#!/usr/bin/env bash
# The README's demo: trace stories260K over shared TinyStories text (64 prompts of 512 tokens,
# 32-token continuations), replay every policy at budgets 16..128 tokens per KV head and print
# the comparison; then validate five policies against exact re-decoding (with 8 generated
# tokens), compile a CompilerKV table, diff it against the default table, and write the HTML
# report of all of it (docs/report.md). Outputs land in out/ (KVSIM_DEMO_OUT), the report in
# out/demo-report.html. KVSIM_DEMO_PROMPTS (64) sets the number of prompts (the test of the
# report runs a smaller demo).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared
model=$shared/models/stories260K/stories260K.bin
text=$shared/data/tinystories_valid_subset/tinystories_val.txt
if [ ! -f "$model" ] || [ ! -f "$text" ]; then
  echo "demo: needs ../shared beside the repository ($model, $text)" >&2
  exit 1
fi
kvsim=${KVSIM_BINARY:-build/release/kvsim}
out=${KVSIM_DEMO_OUT:-out}
prompts=${KVSIM_DEMO_PROMPTS:-64}
budgets=16,32,64,128
mkdir -p "$out"
$kvsim trace --model "$model" --input "$text" --prompt-len 512 --cont-len 32 --window 64 --limit "$prompts" \
  --out "$out/demo-stories260K.h5" --overwrite
$kvsim inspect "$out/demo-stories260K.h5" | head -12
$kvsim run "$out/demo-stories260K.h5" --policies all --budget $budgets --out "$out/demo-run" --overwrite
$kvsim validate "$out/demo-stories260K.h5" --model "$model" --policies 'full,streamingllm,snapkv:window=8,laprox:window=8,compilerkv:window=8' \
  --budget $budgets --generate 8 --out "$out/demo-validate" --overwrite --quiet | tail -4
$kvsim compile "$out/demo-stories260K.h5" --budget $budgets --window 8 --out "$out/demo-table.json" --overwrite | sed -n 1p
# Exit 3 is the verdict "NEW is worse", not a failure of the demo.
rc=0
$kvsim diff default "$out/demo-table.json" --traces "$out/demo-stories260K.h5" --budget $budgets \
  --out "$out/demo-diff" --overwrite | tail -1 || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]
$kvsim report "$out/demo-run" "$out/demo-validate" "$out/demo-table.json" "$out/demo-diff" \
  --title "kvsim demo: stories260K on TinyStories ($prompts prompts of 512 tokens)" \
  --out "$out/demo-report.html" --overwrite
echo "demo report: $(cd "$out" && pwd)/demo-report.html"
