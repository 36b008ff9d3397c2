#!/usr/bin/env bash
# The README's demo: trace stories260K over shared TinyStories text (64 prompts of 512 tokens,
# 32-token continuations), then replay every policy at budgets 16..128 tokens per KV head and
# print the comparison. Results land in out/demo-run/.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared
model=$shared/models/stories260K/stories260K.bin
text=$shared/data/tinystories_valid_subset/tinystories_val.txt
if [ ! -f "$model" ] || [ ! -f "$text" ]; then
  echo "demo: needs ../shared beside the repository ($model, $text)" >&2
  exit 1
fi
kvsim=build/release/kvsim
mkdir -p out
$kvsim trace --model "$model" --input "$text" --prompt-len 512 --cont-len 32 --window 64 --limit 64 \
  --out out/demo-stories260K.h5 --overwrite
$kvsim inspect out/demo-stories260K.h5 | head -12
$kvsim run out/demo-stories260K.h5 --policies all --budget 16,32,64,128 --out out/demo-run --overwrite
