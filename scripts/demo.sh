#!/usr/bin/env bash
# The README's demo: trace stories260K over shared TinyStories text, then show the trace.
# (Replaying policies over it arrives with the simulator.)
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
$kvsim trace --model "$model" --input "$text" --prompt-len 512 --cont-len 32 --window 64 --limit 16 \
  --out out/demo-stories260K.h5 --overwrite
$kvsim inspect out/demo-stories260K.h5
