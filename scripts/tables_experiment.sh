#!/usr/bin/env bash
# Issue 4 experiment (docs/tables.md, "Results on stories260K"): CompilerKV tables compiled on
# TinyStories traces of stories260K, evaluated on held-out traces of other text, against the
# other policies; tables compiled on two disjoint calibration halves and their correlation.
# Usage: scripts/tables_experiment.sh [OUT_DIR (default build/exp)] — needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${KVSIM:-$PWD/build/release/kvsim}
OUT=${1:-build/exp}
SHARED=$PWD/../shared
M=$SHARED/models/stories260K/stories260K.bin
mkdir -p "$OUT"
cd "$OUT"

# Calibration: the two halves (by line) of the TinyStories subset, 32 prompts of 512 + 32 tokens each.
head -n 4300 "$SHARED/data/tinystories_valid_subset/tinystories_val.txt" > ts_a.txt
tail -n +4301 "$SHARED/data/tinystories_valid_subset/tinystories_val.txt" > ts_b.txt
trace() { [ -f "$1" ] || "$K" trace -m "$M" --window 64 -o "$@" 2>&1 | tail -1; }
trace calib_a.h5 --prompt-len 512 --cont-len 32 --limit 32 --task tinystories_a ts_a.txt
trace calib_b.h5 --prompt-len 512 --cont-len 32 --limit 32 --task tinystories_b ts_b.txt
# Held out: the first 512 + 32 tokens of each Paul Graham essay (those long enough: two are a
# few hundred bytes); RULER NIAH truncated to 512.
trace pg.h5 --prompt-len 512 --cont-len 32 --limit 1 --task paul_graham \
  $(find "$SHARED"/data/paul_graham_essays -name '*.txt' ! -name 'LICENSE*' -size +4k | sort)
trace ruler.h5 --max-len 512 --limit 48 "$SHARED/data/ruler_niah_multikey_3_4096/niah_multikey_3.jsonl"

B=16,32,64,128
compile() { [ -f "$1" ] || /usr/bin/time -f "%e s wall, %M KiB max RSS" "$K" compile --budget $B --out "$@" 2>&1 | grep -v '^\[compile\] round .* h=' ; }
compile w32_a.json --window 32 calib_a.h5
compile w8_a.json --window 8 calib_a.h5
compile w8_b.json --window 8 calib_b.h5
compile w32_b.json --window 32 calib_b.h5
compile w8_a_ucb.json --window 8 --learner ucb calib_a.h5

P="full"
for w in 64 8; do
  s="snapkv:window=$w"
  P="$P $s adakv($s) pyramidkv:window=$w criticalkv($s)"
done
P="$P laprox laprox:window=8 compilerkv compilerkv:table=w32_a.json compilerkv:window=8"
P="$P compilerkv:window=8,table=w8_a.json compilerkv:window=8,table=w8_a_ucb.json"
for set in pg ruler calib_b; do
  [ -d "run_$set" ] || "$K" run "$set.h5" --policies "$P" --budget $B --quiet --out "run_$set" > /dev/null
done

# The exact Δ-NLL (teacher-forced re-decode) of the same jobs on the held-out sets.
for set in pg ruler; do
  [ -d "val_$set" ] || "$K" validate "$set.h5" -m "$M" --policies "$P" --budget $B --quiet --out "val_$set" > /dev/null
done

echo "== Spearman, tables compiled on the disjoint halves =="
"$K" transfer w8_a.json w8_b.json | sed -n '/Spearman/,$p'
"$K" transfer w32_a.json w32_b.json | sed -n '/Spearman/,$p'
echo "== diff: table compiled on half A vs default, on PG essays =="
"$K" transfer w8_a.json w8_b.json --traces pg.h5 | sed -n '/transfer cost/,$p' || true
