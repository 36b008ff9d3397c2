#!/usr/bin/env python3
"""Compares two kvsim result directories (kvsim run / validate --out): the CSV files both hold.

For each CSV: byte-identical, or else row by row (same rows in the same order, same text in
every non-numeric column) with the largest relative deviation of every numeric column, and a
verdict against --tolerance (relative, with --margin as an absolute floor for values near 0).
manifest.json differs by design (time, command) and is not compared.

  scripts/compare-runs.py BEFORE_DIR AFTER_DIR [--tolerance 1e-5] [--margin 1e-12]

Exit status 0 when every file is identical or within the tolerance, 1 otherwise, 2 on bad input.
Standard library only.
"""
import argparse
import csv
import math
import pathlib
import sys


def as_number(text):
    try:
        return float(text)
    except ValueError:
        return None


def compare_csv(a, b, tolerance, margin):
    """(ok, lines of report) for two CSV files."""
    if a.read_bytes() == b.read_bytes():
        return True, [f"{a.name}: byte-identical"]
    with a.open(newline="") as fa, b.open(newline="") as fb:
        ra, rb = list(csv.reader(fa)), list(csv.reader(fb))
    if len(ra) != len(rb):
        return False, [f"{a.name}: {len(ra)} vs {len(rb)} rows"]
    if not ra or ra[0] != rb[0]:
        return False, [f"{a.name}: headers differ"]
    header = ra[0]
    worst = {}  # column -> (relative deviation, row)
    for n, (x, y) in enumerate(zip(ra[1:], rb[1:]), start=2):
        if len(x) != len(y):
            return False, [f"{a.name}:{n}: {len(x)} vs {len(y)} fields"]
        for col, u, v in zip(header, x, y):
            if u == v:
                continue
            p, q = as_number(u), as_number(v)
            if p is None or q is None:
                return False, [f"{a.name}:{n}: column {col}: {u!r} vs {v!r}"]
            if math.isnan(p) and math.isnan(q):
                continue
            dev = abs(p - q) / max(abs(p), margin) if abs(p - q) > margin else 0.0
            if dev > worst.get(col, (-1.0, 0))[0]:
                worst[col] = (dev, n)
    ok = all(d <= tolerance for d, _ in worst.values())
    lines = [f"{a.name}: {len(ra) - 1} rows, same text; numeric columns that differ:"]
    for col, (d, n) in sorted(worst.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"  {col}: largest relative deviation {d:.3g} (line {n})" + ("" if d <= tolerance else "  > tolerance"))
    return ok, lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=pathlib.Path)
    ap.add_argument("after", type=pathlib.Path)
    ap.add_argument("--tolerance", type=float, default=1e-5, help="largest relative deviation allowed (default 1e-5)")
    ap.add_argument("--margin", type=float, default=1e-12, help="absolute differences below this count as equal")
    args = ap.parse_args()
    for d in (args.before, args.after):
        if not d.is_dir():
            print(f"compare-runs: {d}: not a directory", file=sys.stderr)
            return 2
    names = sorted(p.name for p in args.before.glob("*.csv"))
    if not names:
        print(f"compare-runs: {args.before}: no CSV files", file=sys.stderr)
        return 2
    all_ok = True
    for name in names:
        other = args.after / name
        if not other.exists():
            print(f"{name}: missing in {args.after}")
            all_ok = False
            continue
        ok, lines = compare_csv(args.before / name, other, args.tolerance, args.margin)
        all_ok &= ok
        print("\n".join(lines))
    print("verdict:", "same within tolerance" if all_ok else "DIFFERENT", f"(tolerance {args.tolerance:g} relative)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
