#!/usr/bin/env bash
# Byte identity of kvsim's outputs on the demo trace (scripts/demo.sh's commands: run, validate,
# compile, and diff of the compiled table against the default one), between two builds:
#
#   scripts/compare-demo-outputs.sh OLD NEW [WORK_DIR]
#
# OLD and NEW are each a kvsim binary or a folder this script filled before (WORK_DIR/old or
# WORK_DIR/new of an earlier call, from the same trace). A binary runs `kvsim run`, `kvsim
# validate --generate 8`, `kvsim compile` and `kvsim diff default TABLE` on
# WORK_DIR/demo-stories260K.h5 (default WORK_DIR out/compare-demo) into WORK_DIR/old or
# WORK_DIR/new; the trace is recorded first (by the first binary given) when it is not there.
# About a minute a binary on 2 idle cores (compile is most of it). Then the result
# directories are compared: every CSV must be byte-identical (scripts/compare-runs.py), the
# other files (generations.jsonl) too (`cmp`), and of manifest.json, which holds times and the
# command line, the traces' provenance (path, XXH3, model, prompts); the table JSON by `cmp`
# after deleting the two fields that differ by design: provenance.tool.git_sha (the build's
# commit) and provenance.command (the command line, whose --out differs). Needs ../shared (the
# demo's model and text). KVSIM_DEMO_PROMPTS (default 64) sets the number of prompts of a new
# trace. Exit status 0 when everything is identical.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared
model=$shared/models/stories260K/stories260K.bin
text=$shared/data/tinystories_valid_subset/tinystories_val.txt
budgets=16,32,64,128
prompts=${KVSIM_DEMO_PROMPTS:-64}

produce() {  # BINARY TRACE OUT_DIR
  local kvsim=$1 trace=$2 out=$3
  mkdir -p "$out"
  "$kvsim" run "$trace" --policies all --budget $budgets --out "$out/run" --overwrite >/dev/null
  "$kvsim" validate "$trace" --model "$model" --policies 'full,streamingllm,snapkv:window=8,laprox:window=8,compilerkv:window=8' \
    --budget $budgets --generate 8 --out "$out/validate" --overwrite --quiet >/dev/null
  "$kvsim" compile "$trace" --budget $budgets --window 8 --out "$out/table.json" --overwrite >/dev/null
  # Exit 3 is the verdict "NEW is worse", not a failure.
  "$kvsim" diff default "$out/table.json" --traces "$trace" --budget $budgets --out "$out/diff" --overwrite >/dev/null ||
    [ $? -eq 3 ]
}

work=${3:-out/compare-demo}
trace=$work/demo-stories260K.h5
mkdir -p "$work"
side() {  # OLD_OR_NEW_ARG NAME -> prints the folder of its outputs
  if [ -d "$1" ]; then echo "$1"; return; fi
  if [ ! -f "$trace" ]; then
    "$1" trace --model "$model" --input "$text" --prompt-len 512 --cont-len 32 --window 64 --limit "$prompts" \
      --out "$trace" --overwrite >/dev/null
  fi
  produce "$1" "$trace" "$work/$2"
  echo "$work/$2"
}
old=$(side "$1" old)
new=$(side "$2" new)

status=0
for d in run validate diff; do
  echo "== $d"
  # compare-runs.py accepts differences within a tolerance: here every CSV must be byte-identical.
  report=$(python3 scripts/compare-runs.py "$old/$d" "$new/$d") || status=1
  echo "$report"
  if echo "$report" | grep '\.csv:' | grep -qv 'byte-identical$'; then status=1; fi
  # compare-runs.py compares the CSV files; the other files (kept dumps, generations) by bytes.
  # manifest.json: its traces (path, XXH3, model, prompts) only; the rest holds times and the command.
  if cmp <(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["traces"], sort_keys=True))' "$old/$d/manifest.json") \
         <(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["traces"], sort_keys=True))' "$new/$d/manifest.json"); then
    echo "manifest.json traces: identical"
  else status=1; fi
  (cd "$old/$d" && find . -type f ! -name '*.csv' ! -name manifest.json | sort) | while read -r f; do
    cmp "$old/$d/$f" "$new/$d/$f" && echo "$f: byte-identical"
  done || status=1
done
echo "== table.json (without provenance.tool.git_sha and provenance.command: the build's commit, the command line with its --out)"
strip() {
  python3 - "$1" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
p = t.get("provenance", {})
p.pop("command", None)
p.get("tool", {}).pop("git_sha", None)
print(json.dumps(t, indent=1, sort_keys=True))
PY
}
if cmp <(strip "$old/table.json") <(strip "$new/table.json"); then echo "table.json: byte-identical (stripped)"; else status=1; fi
exit $status
