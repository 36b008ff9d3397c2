"""Checks of a kvsim report against the files it was made from (python/tests).

The report embeds each figure's plotted numbers as JSON next to the image; these functions read
them back and compare them with the CSVs and tables, read here with the csv and json modules
(not through the report's pandas reader), and with facts kvsim does not compute the same way
(summary.csv's per-task/all rows against the report's means over the per-prompt rows; kept.csv
per head against layers.csv per layer; scipy's Spearman/Kendall against kvsim's).
"""
import csv
import json
import math
import os
import re

SECTIONS = ["sec-budget", "sec-kept", "sec-tables", "sec-fidelity", "sec-diff", "sec-transfer", "sec-provenance"]


def figures(html_text):
    out = []
    for fid, payload in re.findall(r'<script type="application/json" id="data-(fig-\d+)">(.*?)</script>', html_text,
                                   re.S):
        d = json.loads(payload)
        assert d["figure"] == fid
        out.append(d)
    return out


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(s):
    return float("nan") if s == "" else float(s)


def close(a, b, rel=1e-6, abs_=1e-9):
    if a is None:
        a = float("nan")
    if b is None:
        b = float("nan")
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def check_budget_curves_run(fig, run_dir):
    """Means plotted = summary.csv's `all` (or task) rows; n = n_prompts; x = budget_tokens; the
    band contains the mean. Returns the number of points compared."""
    scope = fig["scope"]
    want = {(r["policy"], r["budget"]): r for r in rows(os.path.join(run_dir, "summary.csv"))
            if (r["scope"], r["name"]) == (("all", "all") if scope == "all" else ("task", scope))}
    checked = 0
    for s in fig["series"]:
        for b, x, mean, lo, hi, n in zip(s["budget"], s["x"], s["mean"], s["lo"], s["hi"], s["n"]):
            r = want[(s["policy"], b)]
            assert close(mean, num(r[s["metric"]])), (s["metric"], s["policy"], b, mean, r[s["metric"]])
            assert n == int(r["n_prompts"]), (s["policy"], b, n, r["n_prompts"])
            assert close(x, num(r["budget_tokens"])), (s["policy"], b, x, r["budget_tokens"])
            assert lo <= mean + 1e-12 and mean <= hi + 1e-12, (s["metric"], s["policy"], b, lo, mean, hi)
            checked += 1
    return checked


def check_budget_curves_validate(fig, val_dir):
    """Means plotted = the means of pairs.csv's rows (computed here); where scores.csv exists its
    per-(policy, budget) means of score, dnll_exact and out_err too."""
    scope = fig["scope"]
    sums = {}
    for r in rows(os.path.join(val_dir, "pairs.csv")):
        if scope != "all" and r["task"] != scope:
            continue
        key = (r["policy"], r["budget"])
        sums.setdefault(key, []).append(r)
    scores_path = os.path.join(val_dir, "scores.csv")
    scores = {}
    if os.path.exists(scores_path):
        scores = {(r["policy"], r["budget"]): r for r in rows(scores_path) if r["task"] == scope}
    checked = 0
    for s in fig["series"]:
        for b, mean, n in zip(s["budget"], s["mean"], s["n"]):
            vals = [num(r[s["metric"]]) for r in sums[(s["policy"], b)]]
            vals = [v for v in vals if v == v]
            assert n == len(vals)
            assert close(mean, math.fsum(vals) / len(vals)), (s["metric"], s["policy"], b)
            if (s["policy"], b) in scores and s["metric"] in ("score", "dnll_exact", "out_err"):
                assert close(mean, num(scores[(s["policy"], b)][s["metric"]]), rel=1e-5), (s["metric"], s["policy"], b)
                checked += 1
            checked += 1
    return checked


def check_kept(fig, run_dir):
    """Heatmap cells = kept.csv; and, independently, Σ over KV heads of a layer's cells = the mean
    over prompts of layers.csv's kept_tokens of that (policy, budget, layer)."""
    kept = {(r["policy"], r["budget"], int(r["layer"]), int(r["kv_head"])): num(r["kept_mean"])
            for r in rows(os.path.join(run_dir, "kept.csv"))}
    per_layer = {}
    for r in rows(os.path.join(run_dir, "layers.csv")):
        if r["policy"] == fig["policy"]:
            per_layer.setdefault((r["budget"], int(r["layer"])), []).append(int(r["kept_tokens"]))
    checked = 0
    for b, grid in zip(fig["budgets"], fig["kept"]):
        for layer in range(fig["layers"]):
            col = [grid[h][layer] for h in range(fig["kv_heads"])]
            for h, v in enumerate(col):
                assert close(v, kept[(fig["policy"], b, layer, h)]), (fig["policy"], b, layer, h)
                checked += 1
            lay = per_layer[(b, layer)]
            assert close(math.fsum(col), math.fsum(lay) / len(lay)), (fig["policy"], b, layer, col, lay)
    return checked


def check_table(fig, table_path):
    with open(table_path, encoding="utf-8") as f:
        t = json.load(f)
    assert fig["budgets"] == t["budgets"]
    key = "head" if fig["kind"] == "table_heads" else "gate"
    assert fig[key] == t[key], f"{fig['figure']}: plotted {key} differs from {table_path}"
    if key == "gate" and (t.get("provenance") or {}).get("gate_bins_seen") is not None:
        assert fig["bins_seen"] == sorted(t["provenance"]["gate_bins_seen"])
    return 1


def check_forest(fig, diff_csv):
    want = rows(diff_csv)
    assert len(fig["rows"]) == len(want)
    for got, r in zip(fig["rows"], want):
        assert (got["scope"], got["task"], got["budget"]) == (r["scope"], r["task"], int(r["budget"]))
        for k in ("diff", "ci_lo", "ci_hi", "reward_old", "reward_new"):
            assert close(got[k], num(r[k])), (k, got, r)
        assert got["regression"] == int(r["regression"])
    gated = [r for r in want if r["scope"] in ("all", "budget")]
    assert fig["verdict"] == ("WORSE" if any(r["regression"] == "1" for r in gated) else "not worse")
    return len(want)


def check_transfer(fig, corr_csv):
    want = rows(corr_csv)
    for part in ("head", "gate"):
        per = [r for r in want if r["part"] == part and r["layer"] != "all"]
        assert fig[part]["layer"] == [int(r["layer"]) for r in per]
        assert all(close(a, num(r["rho"])) for a, r in zip(fig[part]["rho"], per))
        overall = [r for r in want if r["part"] == part and r["layer"] == "all"]
        assert close(fig[part]["overall"], num(overall[0]["rho"]))
    return len(want)


def check_fidelity(fig, val_dir):
    """The plotted points are pairs.csv's; the report's Spearman and Kendall τ-b per policy
    (scipy) equal kvsim's correlations.csv (its own C++ implementation)."""
    est = {"dnll_est_logit": "logit", "dnll_est_sum": "sum"}[fig["estimator"]]
    corr = {(r["scope"], r["name"]): r for r in rows(os.path.join(val_dir, "correlations.csv"))
            if r["estimator"] == est and r["target"] == "dnll"}
    pairs = rows(os.path.join(val_dir, "pairs.csv"))
    checked = 0
    for p in fig["points"]:
        mine = [(num(r[fig["estimator"]]), num(r["dnll_exact"])) for r in pairs if r["policy"] == p["policy"]]
        assert [list(t) for t in mine] == [list(t) for t in zip(p["x"], p["y"])] or all(
            close(a, c) and close(b, d) for (a, b), c, d in zip(mine, p["x"], p["y"]))
        k = corr.get(("policy", p["policy"]))
        if k is not None and p["n"] >= 2:
            assert close(p["spearman"], num(k["spearman"]), rel=1e-5, abs_=1e-6), (p["policy"], p["spearman"], k)
            assert close(p["kendall"], num(k["kendall"]), rel=1e-5, abs_=1e-6), (p["policy"], p["kendall"], k)
            checked += 1
    k = corr[("all", "all")]
    assert close(fig["all"]["spearman"], num(k["spearman"]), rel=1e-5, abs_=1e-6)
    assert close(fig["all"]["kendall"], num(k["kendall"]), rel=1e-5, abs_=1e-6)
    return checked + 1


def check_report(html_path, sources):
    """Every figure of the report against its source (sources: path as given to the report → its
    kind). Returns {figure kind: number of values compared}."""
    with open(html_path, encoding="utf-8") as f:
        text = f.read()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text, f"{html_path}: section {sid} missing"
    assert "http://" not in text and "https://" not in text, f"{html_path}: names an external URL"
    counts = {}
    for fig in figures(text):
        src, kind = fig["source"], fig["kind"]
        if kind == "budget_curves":
            n = (check_budget_curves_run(fig, src) if fig["source_kind"] == "run" else
                 check_budget_curves_validate(fig, src))
        elif kind == "kept_heatmap":
            n = check_kept(fig, src)
        elif kind in ("table_heads", "table_gate"):
            n = check_table(fig, src)
        elif kind == "forest":
            n = check_forest(fig, os.path.join(src, "diff.csv"))
        elif kind == "transfer":
            n = check_transfer(fig, os.path.join(src, "correlations.csv"))
        elif kind == "fidelity":
            n = check_fidelity(fig, src)
        else:
            raise AssertionError(f"unknown figure kind {kind}")
        counts[kind] = counts.get(kind, 0) + n
    return counts
