#!/usr/bin/env bash
# Trace size and tracing time per storage precision (issue 16, docs/perf.md "Trace storage
# precision"): `kvsim trace --storage fp16|fp32|bf16` of stories260K on 32 TinyStories prompts of
# 512 + 32 tokens, window 64, deflate 4 + shuffle (the defaults), best wall time of 3 runs each.
# Prints the file size, the bytes HDF5 stores for keys/values/q_window/q_cont (when python3-h5py
# is there), the wall time and the ratios to fp16.
# Usage: bench/trace_storage.sh [THREADS (default 1)]   — from the repository root; needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
. bench/stories_inputs.sh trace_storage
kvq_bytes() {  # bytes stored for the four K/V/Q datasets of every (prompt, layer)
  /usr/bin/python3 -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r')
print(sum(l[k].id.get_storage_size() for p in f['prompts'].values() for l in p['layers'].values()
          for k in ('keys', 'values', 'q_window', 'q_cont')))" "$1" 2>/dev/null || echo "?"
}
for storage in fp16 fp32 bf16; do
  best=
  for rep in 1 2 3; do
    start=$(date +%s.%N)
    "$K" trace -m "$M" --window 64 --prompt-len 512 --cont-len 32 --limit 32 --threads "$threads" \
      --storage "$storage" --overwrite -o "$dir/$storage.h5" "$text" 2>/dev/null >/dev/null
    end=$(date +%s.%N)
    best=$(awk -v b="$best" -v t="$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')" \
      'BEGIN { print (b == "" || t < b) ? t : b }')
  done
  size=$(stat -c %s "$dir/$storage.h5")
  [ "$storage" = fp16 ] && { size16=$size; time16=$best; }
  awk -v s="$storage" -v n="$size" -v k="$(kvq_bytes "$dir/$storage.h5")" -v t="$best" -v n0="$size16" -v t0="$time16" \
    'BEGIN { printf "bench trace_storage %-4s file %9d B (%.2fx fp16) | K/V/Q stored %9s B | wall %.2f s (%.2fx fp16)\n",
             s, n, n / n0, k, t, t / t0 }'
done
