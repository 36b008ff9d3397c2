# Sourced (not run) by the bench scripts that trace stories260K on TinyStories (compile.sh,
# trace_storage.sh), from the repository root: sets K (the kvsim binary), M (the model), text
# (the input) and dir (a temporary directory removed at exit), or prints "bench NAME: skipped"
# and exits 0 when ../shared lacks them. $1: the bench's name.
K=$PWD/build/release/kvsim
M=$PWD/../shared/models/stories260K/stories260K.bin
text=$PWD/../shared/data/tinystories_valid_subset/tinystories_val.txt
if [ ! -f "$M" ] || [ ! -f "$text" ]; then
  echo "bench $1: skipped ($M or $text absent)"
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
