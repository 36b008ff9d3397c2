#!/usr/bin/env bash
# Issue 4 experiment (docs/tables.md, "Results on stories260K"): CompilerKV tables compiled on
# TinyStories traces of stories260K, evaluated on held-out traces of other text, against the
# other policies; tables compiled on two disjoint calibration halves and their correlation.
# Usage: scripts/tables_experiment.sh [OUT_DIR (default build/exp)] — needs ../shared.
#   KVSIM_EXP_MODEL=path   another model (default stories260K; e.g. the SmolLM2-135M GGUF of
#                          scripts/get-model.sh, with OUT_DIR build/exp-smollm2)
#   KVSIM_EXP_WINDOWS="32 8"  compilerkv/laprox/snapkv windows to compile and compare
#   KVSIM_EXP_UCB=1        also compile a ucb table (window 8)
#   KVSIM_EXP_EXACT=1      exact Δ-NLL of every job (kvsim validate): cheap on stories260K only
#   (docs/tables.md quotes the stories260K run with the defaults and the SmolLM2 run with
#   KVSIM_EXP_WINDOWS=32 KVSIM_EXP_UCB=0 KVSIM_EXP_EXACT=0.)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${KVSIM:-$PWD/build/release/kvsim}
OUT=${1:-build/exp}
SHARED=$PWD/../shared
M=${KVSIM_EXP_MODEL:-$SHARED/models/stories260K/stories260K.bin}
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
WINDOWS=${KVSIM_EXP_WINDOWS:-32 8}
for w in $WINDOWS; do
  compile "w${w}_a.json" --window "$w" calib_a.h5
  compile "w${w}_b.json" --window "$w" calib_b.h5
done
[ "${KVSIM_EXP_UCB:-1}" = 1 ] && compile w8_a_ucb.json --window 8 --learner ucb calib_a.h5

P="full"
for w in 64 $WINDOWS; do
  [ "$w" = 32 ] && continue  # snapkv's default is 64; 32 is laprox's and compilerkv's
  s="snapkv:window=$w"
  P="$P $s adakv($s) pyramidkv:window=$w criticalkv($s)"
done
for w in $WINDOWS; do
  P="$P laprox:window=$w compilerkv:window=$w compilerkv:window=$w,table=w${w}_a.json"
done
[ "${KVSIM_EXP_UCB:-1}" = 1 ] && P="$P compilerkv:window=8,table=w8_a_ucb.json"
for set in pg ruler calib_b; do
  [ -d "run_$set" ] || "$K" run "$set.h5" --policies "$P" --budget $B --quiet --out "run_$set" > /dev/null
done

# The exact Δ-NLL (teacher-forced re-decode) of the same jobs on the held-out sets.
for set in pg ruler; do
  [ "${KVSIM_EXP_EXACT:-1}" = 1 ] || break
  [ -d "val_$set" ] || "$K" validate "$set.h5" -m "$M" --policies "$P" --budget $B --quiet --out "val_$set" > /dev/null
done

echo "== Spearman, tables compiled on the disjoint halves =="
for w in $WINDOWS; do "$K" transfer "w${w}_a.json" "w${w}_b.json" | sed -n '/Spearman/,$p'; done
echo "== the compiled table (half A) against the default, per evaluation set =="
for w in $WINDOWS; do
  for set in calib_a calib_b pg ruler; do
    echo "-- window $w on $set"
    "$K" diff default "w${w}_a.json" --traces "$set.h5" --budget $B | sed -n '/^scope/,/^budget .* 128 /p' || true
  done
done
