#!/usr/bin/env python3
"""Markdown tables of docs/results.md from the outputs of scripts/task_scores_experiment.sh.

Usage: scripts/task_scores_report.py OUT_DIR   (reads OUT_DIR/v_all and OUT_DIR/v_tables)

Only the standard library: reads scores.csv, decisions.csv and generations.jsonl of each
`kvsim validate --generate` directory and prints the tables (task score as % of FullKV with
its bootstrap CI, kept tokens per head, exact and estimated delta-NLL per (policy, budget);
FullKV accuracy per task; decision-level fidelity).
"""
import csv
import json
import sys
from pathlib import Path


def read_scores(d):
    rows = list(csv.DictReader(open(d / "scores.csv")))
    return [r for r in rows if r["task"] == "all"], rows


def short(spec):
    # Canonical specs are long; keep the name and the parameters that differ between rows.
    for noise in [":window=64,kernel=5,pool=avg,reduce=mean", ":window=32,kernel=7,reduce=mean,pool_at=product,normalize=1",
                  ":window=32,table=default,gate=table", ",table=default", ":window=32", "window=32,"]:
        spec = spec.replace(noise, "")
    return spec.replace("(snapkv)", "(snapkv)").replace(":alpha=0.2", "").replace(":epsilon=0.0001", "")


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kvsim-results")
    dirs = [out / "v_all", out / "v_tables"]
    cells, budgets, order = {}, [], []
    per_task = {}
    for d in dirs:
        if not (d / "scores.csv").exists():
            continue
        overall, rows = read_scores(d)
        for r in overall:
            key = short(r["policy"])
            if key not in order:
                order.append(key)
            if r["budget"] not in budgets:
                budgets.append(r["budget"])
            cells[(key, r["budget"])] = r
        for r in rows:
            if r["task"] != "all":
                per_task.setdefault(r["task"], {})[(short(r["policy"]), r["budget"])] = r
    budgets.sort(key=int)

    def table(title, fmt):
        print(f"\n{title}\n")
        print("| policy | " + " | ".join(f"B = {b}" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for p in order:
            print(f"| `{p}` | " + " | ".join(fmt(cells[(p, b)]) if (p, b) in cells else "" for b in budgets) + " |")

    def pct(r):
        if r["pct_full"] in ("nan", ""):
            return "n/a"
        return f"{100 * float(r['pct_full']):.0f} [{100 * float(r['pct_full_lo']):.0f}, {100 * float(r['pct_full_hi']):.0f}]"

    table("Task score, % of FullKV [bootstrap 95% CI over prompts]:", pct)
    table("Kept tokens per KV head (mean):", lambda r: f"{float(r['kept_per_head']):.0f}")
    table("Exact Δ-NLL of the gold answer (nats per token):", lambda r: f"{float(r['dnll_exact']):.3f}")
    table("Estimated Δ-NLL (`dnll_est_logit`):", lambda r: f"{float(r['dnll_est_logit']):.3f}")
    table("Output error (W_O space, mean over layers):", lambda r: f"{float(r['out_err']):.3f}")

    print("\nFullKV accuracy per task (greedy, 16 tokens, RULER string match):\n")
    print("| task | prompts | FullKV score |")
    print("|---|---|---|")
    gens = [json.loads(l) for l in open(dirs[0] / "generations.jsonl")]
    full = [g for g in gens if g["policy"] == "FullKV"]
    tasks = sorted({g["task"] for g in full})
    for t in tasks:
        s = [g["score"] for g in full if g["task"] == t]
        print(f"| `{t}` | {len(s)} | {100 * sum(s) / len(s):.0f}% |")
    s = [g["score"] for g in full]
    print(f"| all | {len(s)} | {100 * sum(s) / len(s):.0f}% |")

    for task, tc in sorted(per_task.items()):
        print(f"\n% of FullKV on `{task}`:\n")
        print("| policy | " + " | ".join(f"B = {b}" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for p in order:
            print(f"| `{p}` | " + " | ".join(pct(tc[(p, b)]) if (p, b) in tc else "" for b in budgets) + " |")

    print("\nDecision-level fidelity (policies ranked within a budget; cells: every (policy, budget)),")
    print("Kendall τ-b / Spearman between each predictor and the task score (higher = agree):\n")
    dec = list(csv.DictReader(open(dirs[0] / "decisions.csv")))
    preds = []
    for r in dec:
        if r["predictor"] not in preds:
            preds.append(r["predictor"])
    scopes = []
    for r in dec:
        k = (r["scope"], r["budget"])
        if k not in scopes:
            scopes.append(k)
    print("| scope | " + " | ".join(preds) + " |")
    print("|---|" + "---|" * len(preds))
    for sc in scopes:
        vals = {r["predictor"]: r for r in dec if (r["scope"], r["budget"]) == sc}
        label = f"B = {sc[1]}" if sc[0] == "budget" else "all cells"
        print(f"| {label} | " + " | ".join(
            f"{float(vals[p]['kendall']):.2f} / {float(vals[p]['spearman']):.2f}" if p in vals else "" for p in preds) + " |")


if __name__ == "__main__":
    main()
