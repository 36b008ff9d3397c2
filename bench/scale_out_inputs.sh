# Sourced (not run) by the MPI scale-out benches (scale_out.sh, scale_out_trace.sh), from the
# repository root: sets K (the kvsim binary), gguf (SmolLM2-135M-Instruct), text (TinyStories),
# dir (KVSIM_BENCH_DIR, default out/$1, kept between runs) and mpirun (the launcher with its
# options), or prints "bench $1: skipped: why" and exits 0 when one of them is missing.
# $1: the bench's name.
K=build/release/kvsim
gguf="${KVSIM_MODELS:-$HOME/.cache/kvsim/models}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
text=../shared/data/tinystories_valid_subset/tinystories_val.txt
skip() { echo "bench $1: skipped: $2"; exit 0; }
[ -f "$gguf" ] || skip "$1" "$gguf absent; scripts/get-model.sh smollm2-135m"
command -v mpirun >/dev/null || skip "$1" "mpirun absent (Debian: openmpi-bin)"
[ -f "$text" ] || skip "$1" "../shared absent"
dir=${KVSIM_BENCH_DIR:-out/bench-$1}
mkdir -p "$dir"
mpirun=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
