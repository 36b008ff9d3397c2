"""`kvsim report DIR... --out report.html`: one self-contained HTML file (docs/report.md).

Figures are drawn with matplotlib (Agg) and embedded as PNG `data:` URIs; next to each image
the plotted numbers are embedded as JSON (`<script type="application/json" id="data-fig-N">`),
so tests and readers can check a figure against the CSVs it came from. Every input is read and
checked before anything is written; the HTML is written to OUT.partial and renamed when
complete.
"""
import argparse
import base64
import datetime
import html
import io
import json
import math
import os
import sys

from . import reader
from .reader import ResultsError

SECTIONS = [
    ("sec-budget", "Metrics against budget"),
    ("sec-kept", "Kept tokens per layer and KV head"),
    ("sec-tables", "Decision tables"),
    ("sec-fidelity", "Fidelity: estimate against exact Δ-NLL"),
    ("sec-diff", "Table diff: regression gate"),
    ("sec-transfer", "Table transfer"),
    ("sec-provenance", "Provenance"),
]

METRIC_LABELS = {
    "out_err": "output error (W_O space)",
    "dnll_est_logit": "estimated Δ-NLL (logit, nats/token)",
    "dnll_est_sum": "estimated Δ-NLL (Σ out_err)",
    "dnll_exact": "exact Δ-NLL (nats/token)",
    "score": "task score (fraction)",
    "kept_per_head": "kept tokens per KV head",
}


def _import_plotting():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
        from scipy import stats
    except ImportError as e:
        raise ResultsError(f"the report needs matplotlib and scipy for {sys.executable} ({e}); install them with "
                           f"scripts/install-deps.sh (Debian: python3-matplotlib python3-scipy)") from None
    return plt, matplotlib.ticker, stats


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _clean(obj):
    """JSON-safe: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    return obj


class Report:
    def __init__(self, title):
        self.plt, self.ticker, self.stats = _import_plotting()
        self.title = title
        self.parts = {sid: [] for sid, _ in SECTIONS}
        self.figures = []

    # --- building blocks -------------------------------------------------------------------
    def html(self, section, text):
        self.parts[section].append(text)

    def figure(self, section, fig, caption, data):
        fid = f"fig-{len(self.figures) + 1}"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
        self.plt.close(fig)
        b64 = base64.b64encode(buf.getvalue()).decode("ascii")
        payload = json.dumps(_clean(dict(data, figure=fid, section=section)), allow_nan=False)
        payload = payload.replace("</", "<\\/")
        self.parts[section].append(
            f'<figure id="{fid}" data-kind="{html.escape(data.get("kind", ""))}">'
            f'<img src="data:image/png;base64,{b64}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption>"
            f'<script type="application/json" id="data-{fid}">{payload}</script></figure>')
        self.figures.append({"id": fid, "section": section, "kind": data.get("kind", "")})

    def table(self, section, header, rows, cls=""):
        h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.parts[section].append(f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>')

    def render(self, inputs):
        nav = " · ".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t in SECTIONS)
        body = []
        for sid, title in SECTIONS:
            content = self.parts[sid] or ['<p class="none">No input of this kind.</p>']
            body.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{"".join(content)}</section>')
        meta = json.dumps({"sections": [s for s, _ in SECTIONS], "figures": self.figures,
                           "inputs": [{"path": i.path, "kind": i.kind} for i in inputs]}).replace("</", "<\\/")
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{html.escape(self.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 1.6em; }}
h3 {{ margin-bottom: 0.3em; }} nav {{ margin: 0.5em 0 1em 0; }}
figure {{ margin: 0.8em 0; }} figure img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }}
.worse {{ color: #b00; font-weight: bold; }} .ok {{ color: #070; font-weight: bold; }} .none {{ color: #777; }}
code {{ font-size: 0.9em; word-break: break-all; }}
</style></head><body>
<h1>{html.escape(self.title)}</h1>
<p>{len(inputs)} input(s), {len(self.figures)} figures; written {created} by kvsim report.</p>
<nav>{nav}</nav>
{"".join(body)}
<script type="application/json" id="report-meta">{meta}</script>
</body></html>
"""

    # --- helpers -----------------------------------------------------------------------------
    def colors(self, names):
        cmap = self.plt.get_cmap("tab20" if len(names) > 10 else "tab10")
        return {n: cmap(i % cmap.N) for i, n in enumerate(names)}

    def ci(self, values):
        """Mean and 95% t-interval over prompts (NaN-free values); n = 1: the mean itself."""
        v = [float(x) for x in values if x == x]
        n = len(v)
        if n == 0:
            return float("nan"), float("nan"), float("nan"), 0
        mean = math.fsum(v) / n
        if n == 1:
            return mean, mean, mean, 1
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
        half = float(self.stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        return mean, mean - half, mean + half, n


def _ordered(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _input_title(res):
    return f"{res.kind} <code>{html.escape(res.path)}</code>"


# --- sections ------------------------------------------------------------------------------------

def budget_curves(rep, res, per_prompt, metrics):
    """One figure per scope (overall, then each task): a panel per metric, a line per policy with
    its 95% band over prompts, log budget axis. per_prompt: one row per (prompt, policy, budget)
    with task, budget_tokens and the metric columns."""
    policies = _ordered(list(per_prompt["policy"]))
    budgets = _ordered(list(per_prompt["budget"]))
    metrics = [m for m in metrics if m in per_prompt.columns and per_prompt[m].notna().any()]
    tasks = sorted(set(per_prompt["task"]))
    scopes = [("all", "all prompts")] + ([(t, f"task {t or '(none)'}") for t in tasks] if len(tasks) > 1 else [])
    colors = rep.colors(policies)
    plt = rep.plt
    for scope, scope_title in scopes:
        df = per_prompt if scope == "all" else per_prompt[per_prompt["task"] == scope]
        ncols = min(3, len(metrics))
        nrows = math.ceil(len(metrics) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), squeeze=False)
        series = []
        for k, metric in enumerate(metrics):
            ax = axes[k // ncols][k % ncols]
            for pol in policies:
                d = df[df["policy"] == pol]
                xs, means, los, his, ns, labels = [], [], [], [], [], []
                for b in budgets:
                    g = d[d["budget"] == b]
                    if g.empty:
                        continue
                    mean, lo, hi, n = rep.ci(g[metric])
                    if n == 0:
                        continue
                    xs.append(float(g["budget_tokens"].mean()))
                    means.append(mean), los.append(lo), his.append(hi), ns.append(n), labels.append(b)
                if not xs:
                    continue
                ax.plot(xs, means, marker="o", ms=3, lw=1.3, color=colors[pol], label=pol)
                ax.fill_between(xs, los, his, color=colors[pol], alpha=0.15, lw=0)
                series.append({"metric": metric, "policy": pol, "budget": labels, "x": xs, "mean": means, "lo": los,
                               "hi": his, "n": ns})
            ax.set_xscale("log")
            ticks = sorted({round(x, 1) for sr in series if sr["metric"] == metric for x in sr["x"]})
            if ticks:
                ax.xaxis.set_major_locator(rep.ticker.FixedLocator(ticks))
                ax.xaxis.set_major_formatter(rep.ticker.FixedFormatter([f"{t:g}" for t in ticks]))
                ax.xaxis.set_minor_locator(rep.ticker.NullLocator())
            ax.set_xlabel("budget (tokens per KV head)")
            ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        for k in range(len(metrics), nrows * ncols):
            axes[k // ncols][k % ncols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.suptitle(f"{res.name}: {scope_title} (bands: 95% CI over prompts)", fontsize=11)
        fig.tight_layout()
        rep.figure("sec-budget", fig, f"{res.path} ({res.kind}): metrics against budget, {scope_title}",
                   {"kind": "budget_curves", "source": res.path, "source_kind": res.kind, "scope": scope,
                    "series": series})


def run_section(rep, res):
    rep.html("sec-budget", f"<h3>{_input_title(res)}</h3>")
    prompts = res.prompts()
    est = "dnll_est_logit" if prompts["dnll_est_logit"].notna().any() else "dnll_est_sum"
    budget_curves(rep, res, prompts, ["out_err", est, "kept_per_head"])
    rep.html("sec-kept", f"<h3>{_input_title(res)}</h3>")
    if res.kept is None:
        rep.html("sec-kept", f'<p class="none">{html.escape(res.path)} has no kept.csv (written by kvsim run since '
                             f'the report; rerun to get it).</p>')
        return
    kept_heatmaps(rep, res)


def kept_heatmaps(rep, res):
    plt = rep.plt
    k = res.kept
    L, H = int(k["layer"].max()) + 1, int(k["kv_head"].max()) + 1
    for pol in _ordered(list(k["policy"])):
        d = k[k["policy"] == pol]
        budgets = _ordered(list(d["budget"]))
        ncols = max(1, min(len(budgets), 24 // max(L, 1)))  # small models: budgets side by side
        nrows = math.ceil(len(budgets) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * max(3.2, 0.28 * L + 1.6), 0.8 + nrows * (0.24 * H + 0.8)),
                                 squeeze=False)
        grids = []
        for i, b in enumerate(budgets):
            g = d[d["budget"] == b]
            grid = [[float("nan")] * L for _ in range(H)]
            for layer, head, v in zip(g["layer"], g["kv_head"], g["kept_mean"]):
                grid[int(head)][int(layer)] = float(v)
            grids.append(grid)
            ax = axes[i // ncols][i % ncols]
            top = max([v for row in grid for v in row if v == v] + [1.0])
            im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
            if L * H <= 48:
                for h in range(H):
                    for layer in range(L):
                        v = grid[h][layer]
                        ax.text(layer, h, f"{v:.0f}" if v == v else "", ha="center", va="center", fontsize=6,
                                color="white" if v < 0.6 * top else "black")
            ax.set_title(f"B = {b}", fontsize=8)
            ax.set_ylabel("KV head", fontsize=7)
            ax.set_yticks(range(H))
            ax.set_xticks(range(0, L, max(1, L // 10)))
            ax.set_xlabel("layer", fontsize=7)
            ax.tick_params(labelsize=6)
            fig.colorbar(im, ax=ax, pad=0.01).ax.tick_params(labelsize=6)
        for i in range(len(budgets), nrows * ncols):
            axes[i // ncols][i % ncols].axis("off")
        fig.suptitle(f"{pol}: mean kept tokens per (layer, KV head) over prompts", fontsize=9)
        fig.tight_layout()
        rep.figure("sec-kept", fig, f"{res.path}: kept tokens of {pol} per layer × KV head, mean over prompts",
                   {"kind": "kept_heatmap", "source": res.path, "policy": pol, "budgets": budgets, "layers": L,
                    "kv_heads": H, "kept": grids})


def validate_section(rep, res):
    rep.html("sec-budget", f"<h3>{_input_title(res)}</h3>")
    pairs = res.pairs
    est = "dnll_est_logit" if pairs["dnll_est_logit"].notna().any() else "dnll_est_sum"
    metrics = ["out_err", est, "dnll_exact"] + (["score"] if "score" in pairs.columns else []) + ["kept_per_head"]
    budget_curves(rep, res, pairs, metrics)
    if res.scores is not None:
        s = res.scores[res.scores["task"] == "all"]
        rep.html("sec-budget", "<p>Task score as % of FullKV (scores.csv, paired bootstrap 95% CI):</p>")
        rep.table("sec-budget", ["policy", "budget", "n", "% of FullKV", "95% CI"],
                  [[p, b, n, f"{100 * v:.1f}" if v == v else "n/a",
                    f"[{100 * lo:.1f}, {100 * hi:.1f}]" if lo == lo else ""]
                   for p, b, n, v, lo, hi in zip(s["policy"], s["budget"], s["n"], s["pct_full"], s["pct_full_lo"],
                                                 s["pct_full_hi"])])
    fidelity(rep, res, est)


def fidelity(rep, res, est):
    plt = rep.plt
    pairs = res.pairs
    rep.html("sec-fidelity", f"<h3>{_input_title(res)}</h3>")
    policies = _ordered(list(pairs["policy"]))
    colors = rep.colors(policies)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    points, rows = [], []
    estimator = {"dnll_est_logit": "logit", "dnll_est_sum": "sum"}[est]
    kv = res.correlations[(res.correlations["estimator"] == estimator) & (res.correlations["target"] == "dnll")]
    kv_by_name = {(s, n): (sp, kd) for s, n, sp, kd in zip(kv["scope"], kv["name"], kv["spearman"], kv["kendall"])}

    def corr(x, y):
        # Undefined (NaN, as kvsim writes it) for fewer than two points or a constant side (full).
        if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
            return float("nan"), float("nan")
        return float(rep.stats.spearmanr(x, y).statistic), float(rep.stats.kendalltau(x, y).statistic)

    for pol in policies:
        d = pairs[(pairs["policy"] == pol)].dropna(subset=[est, "dnll_exact"])
        x, y = list(d[est]), list(d["dnll_exact"])
        ax.scatter(x, y, s=9, alpha=0.6, color=colors[pol], label=pol, edgecolors="none")
        sp, kd = corr(x, y)
        ksp, kkd = kv_by_name.get(("policy", pol), (float("nan"), float("nan")))
        points.append({"policy": pol, "x": x, "y": y, "spearman": sp, "kendall": kd, "n": len(x)})
        rows.append([pol, len(x), f"{sp:.3f}", f"{kd:.3f}", f"{ksp:.3f}" if ksp == ksp else "n/a",
                     f"{kkd:.3f}" if kkd == kkd else "n/a"])
    d = pairs.dropna(subset=[est, "dnll_exact"])
    sp_all, kd_all = corr(list(d[est]), list(d["dnll_exact"]))
    ksp, kkd = kv_by_name.get(("all", "all"), (float("nan"), float("nan")))
    rows.append(["all policies", len(d), f"{sp_all:.3f}", f"{kd_all:.3f}", f"{ksp:.3f}" if ksp == ksp else "n/a",
                 f"{kkd:.3f}" if kkd == kkd else "n/a"])
    if est == "dnll_est_logit" and len(d):
        lo, hi = float(min(d[est].min(), d["dnll_exact"].min())), float(max(d[est].max(), d["dnll_exact"].max()))
        ax.plot([lo, hi], [lo, hi], color="#888", lw=0.8, ls="--", label="y = x")
    ax.set_xlabel(METRIC_LABELS[est])
    ax.set_ylabel(METRIC_LABELS["dnll_exact"])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.set_title(f"{res.name}: one point per (prompt, policy, budget)", fontsize=10)
    fig.tight_layout()
    rep.figure("sec-fidelity", fig, f"{res.path}: estimated against exact Δ-NLL",
               {"kind": "fidelity", "source": res.path, "estimator": est, "points": points,
                "all": {"spearman": sp_all, "kendall": kd_all, "n": len(d)}})
    rep.table("sec-fidelity", ["policy", "n", "Spearman", "Kendall τ-b", "Spearman (kvsim)", "Kendall (kvsim)"], rows)


def table_section(rep, res):
    plt = rep.plt
    rep.html("sec-tables", f"<h3>{_input_title(res)}</h3>")
    prov = res.provenance
    rep.html("sec-tables", f"<p>window {res.window}, gate {html.escape(str(res.gate_mode))}, budgets "
                           f"{', '.join(map(str, res.budgets))}; model L={res.n_layers}, H={res.n_heads}; "
                           f"{len(res.gate_bins_seen) if res.gate_bins_seen is not None else 'unknown'} gate bins seen "
                           f"in calibration.</p>")
    nb = len(res.budgets)
    fig, axes = plt.subplots(nb, 1, figsize=(max(4.5, 0.26 * res.n_layers + 2.2), 0.9 + (0.2 * res.n_heads + 0.6) * nb),
                             squeeze=False)
    span = max(0.05, float(abs(res.head - 1.0).max()))
    for i, b in enumerate(res.budgets):
        ax = axes[i][0]
        im = ax.imshow(res.head[i].T, aspect="auto", cmap="RdBu_r", vmin=1 - span, vmax=1 + span, interpolation="nearest")
        ax.set_ylabel(f"B={b}\nhead", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, pad=0.01).ax.tick_params(labelsize=7)
    axes[-1][0].set_xlabel("layer")
    fig.suptitle(f"{res.name}: head weights W_head (1 = neutral)", fontsize=10)
    fig.tight_layout()
    rep.figure("sec-tables", fig, f"{res.path}: head-weight table (layer × query head) per budget",
               {"kind": "table_heads", "source": res.path, "budgets": res.budgets, "head": res.head})
    nbins = res.gate.shape[2] * res.gate.shape[3]
    flat = res.gate.reshape(nb, res.n_layers, nbins)
    fig, axes = plt.subplots(nb, 1, figsize=(9.0, 0.9 + (0.09 * res.n_layers + 0.7) * nb), squeeze=False)
    seen = set(res.gate_bins_seen) if res.gate_bins_seen is not None else set(range(nbins))
    import numpy as np
    for i, b in enumerate(res.budgets):
        ax = axes[i][0]
        masked = np.ma.masked_array(flat[i], mask=[[k not in seen for k in range(nbins)]] * res.n_layers)
        cmap = plt.get_cmap("magma").copy()
        cmap.set_bad("#dddddd")
        im = ax.imshow(masked, aspect="auto", cmap=cmap, interpolation="nearest")
        ax.set_ylabel(f"B={b}\nlayer", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, pad=0.01).ax.tick_params(labelsize=7)
    axes[-1][0].set_xlabel(f"risk bin = entropy bin × {res.gate.shape[3]} + perplexity bin (grey: no calibration "
                           f"prompt fell there; default)")
    fig.suptitle(f"{res.name}: gate thresholds ({res.gate_mode})", fontsize=10)
    fig.tight_layout()
    rep.figure("sec-tables", fig, f"{res.path}: gate table (layer × risk bin) per budget",
               {"kind": "table_gate", "source": res.path, "budgets": res.budgets, "gate": res.gate,
                "bins_seen": sorted(seen)})


def forest(rep, section, res, df, title, verdict, tolerance=0.0):
    plt = rep.plt
    labels, rows = [], []
    for scope, task, b, n, d, lo, hi, reg, old, new in zip(df["scope"], df["task"], df["budget"], df["n"], df["diff"],
                                                            df["ci_lo"], df["ci_hi"], df["regression"],
                                                            df["reward_old"], df["reward_new"]):
        lab = "all" if scope == "all" else (f"B={b}" if scope == "budget" else f"{task}, B={b}")
        labels.append(lab)
        rows.append({"scope": scope, "task": task, "budget": int(b), "n": int(n), "diff": float(d), "ci_lo": float(lo),
                     "ci_hi": float(hi), "regression": int(reg), "reward_old": float(old), "reward_new": float(new)})
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.28 * len(rows)))
    for i, r in enumerate(rows):
        color = "#b00" if r["regression"] else ("#222" if r["scope"] != "task" else "#666")
        ax.plot([r["ci_lo"], r["ci_hi"]], [i, i], color=color, lw=1.5)
        ax.plot([r["diff"]], [i], "o" if r["scope"] != "task" else "s", color=color, ms=5)
    ax.axvline(0, color="#888", lw=0.8)
    if tolerance:
        ax.axvline(-tolerance, color="#b00", lw=0.8, ls=":")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("reward NEW − OLD (−estimated Δ-NLL, nats/token; > 0: NEW better), 95% bootstrap CI")
    ax.set_title(f"{title}: {verdict}", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    rep.figure(section, fig, f"{res.path}: effect per budget and task (forest plot)",
               {"kind": "forest", "source": res.path, "verdict": verdict, "rows": rows})


def diff_section(rep, res):
    m = res.manifest
    verdict = res.verdict
    tables = m.get("tables", {})
    old = tables.get("old", {}).get("path", "OLD")
    new = tables.get("new", {}).get("path", "NEW")
    cls = "worse" if verdict == "WORSE" else "ok"
    rep.html("sec-diff", f"<h3>{_input_title(res)}</h3><p>OLD <code>{html.escape(old)}</code>, NEW "
                         f"<code>{html.escape(new)}</code>. Verdict: <span class=\"{cls}\" id=\"verdict-"
                         f"{len(rep.figures) + 1}\">{html.escape(verdict)}</span> (exit {3 if verdict == 'WORSE' else 0}"
                         f"; WORSE when the overall or a budget row's CI lies below −tolerance).</p>")
    forest(rep, "sec-diff", res, res.diff, f"{os.path.basename(old)} → {os.path.basename(new)}", verdict,
           float(m.get("tolerance", 0.0) or 0.0))


def transfer_section(rep, res):
    plt = rep.plt
    rep.html("sec-transfer", f"<h3>{_input_title(res)}</h3>")
    c = res.correlations
    fig, ax = plt.subplots(figsize=(8.0, 3.2))
    data = {}
    for k, part in enumerate(["head", "gate"]):
        d = c[(c["part"] == part) & (c["layer"] != "all")]
        xs = [int(v) for v in d["layer"]]
        ys = [float(v) for v in d["rho"]]
        ax.bar([x + (k - 0.5) * 0.4 for x in xs], ys, width=0.4, label=part)
        overall = c[(c["part"] == part) & (c["layer"] == "all")]["rho"]
        data[part] = {"layer": xs, "rho": ys, "overall": float(overall.iloc[0]) if len(overall) else None}
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xlabel("layer (B's depth)")
    ax.set_ylabel("Spearman ρ")
    ax.legend(fontsize=8)
    ax.set_title(f"{res.name}: table A mapped to B against B "
                 f"(overall head {data['head']['overall']}, gate {data['gate']['overall']})", fontsize=10)
    fig.tight_layout()
    rep.figure("sec-transfer", fig, f"{res.path}: rank correlation of the two tables per layer",
               {"kind": "transfer", "source": res.path, **data})
    if res.diff is not None:
        forest(rep, "sec-transfer", res, res.diff, "transfer cost (OLD = B's table, NEW = A's)", res_verdict(res.diff))


def res_verdict(df):
    gated = df[df["scope"].isin(["all", "budget"])]
    return "WORSE" if (gated["regression"] != 0).any() else "not worse"


def provenance_section(rep, inputs):
    for res in inputs:
        m = res.manifest or {}
        rep.html("sec-provenance", f"<h3>{_input_title(res)}</h3>")
        items = []
        if res.kind == "table":
            tool = m.get("tool", {})
            items.append(("format", f"kvsim-table v{res.data.get('format_version')}"))
            items.append(("tool", f"{tool.get('name', '')} {tool.get('version', '')} ({tool.get('git_sha', '')})"))
            items.append(("command", " ".join(map(str, m.get("command", []))) or "(no provenance: hand-made table?)"))
            if "reward_model" in m:
                items.append(("reward model", json.dumps(m["reward_model"])))
            items.append(("rewards", str(m.get("rewards", ""))))
        else:
            items.append(("format", f"{m.get('format', 'kvsim-results (before versioning)')} "
                                    f"v{m.get('format_version', 1)}, kind {res.kind}"))
            items.append(("tool", f"kvsim {m.get('version', '')} ({m.get('git_sha', '')})"))
            items.append(("created", str(m.get("created_utc", ""))))
            items.append(("command", " ".join(map(str, m.get("command", [])))))
            if "model" in m:
                items.append(("model", str(m["model"])))
            if "policies" in m:
                items.append(("policies", ", ".join(m["policies"])))
            if "budgets" in m:
                items.append(("budgets", json.dumps(m["budgets"])))
            for role, t in (m.get("tables") or {}).items():
                items.append((f"table {role}", f"{t.get('path')} xxh3 {t.get('xxh3', '-')}; compiled by: "
                                               f"{' '.join(map(str, (t.get('provenance') or {}).get('command', [])))}"))
            if "verdict" in m:
                items.append(("verdict", m["verdict"]))
        rep.table("sec-provenance", ["field", "value"], items, cls="prov")
        traces = m.get("traces") or []
        if traces:
            rep.table("sec-provenance", ["trace", "xxh3", "prompts", "task", "model"],
                      [[t.get("path", ""), t.get("xxh3", ""), t.get("prompts", ""), t.get("task", ""),
                        t.get("model_source", t.get("model", ""))] for t in traces], cls="prov")


def build(paths, title):
    inputs = [reader.load(p) for p in paths]  # every input checked before any drawing or writing
    rep = Report(title)
    for res in inputs:
        if res.kind == "run":
            run_section(rep, res)
        elif res.kind == "validate":
            validate_section(rep, res)
        elif res.kind == "table":
            table_section(rep, res)
        elif res.kind == "diff":
            diff_section(rep, res)
        elif res.kind == "transfer":
            transfer_section(rep, res)
    provenance_section(rep, inputs)
    return rep.render(inputs)


def write_atomic(path, text):
    tmp = path + ".partial"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise ResultsError(f"{path}: cannot be written ({e.strerror})") from None


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="kvsim report",
        description="One self-contained HTML report (figures embedded, no network) of kvsim outputs: results "
                    "directories of run, validate, diff --out, transfer --out, and decision tables (JSON).")
    ap.add_argument("inputs", nargs="+", help="results directories and/or decision table files")
    ap.add_argument("--out", "-o", required=True, help="the HTML file to write (as OUT.partial, renamed when complete)")
    ap.add_argument("--title", default="kvsim report", help="the report's title")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = ap.parse_args(argv)
    try:
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if os.path.isdir(args.out):
            raise ResultsError(f"{args.out}: is a directory, expected a file name (--out)")
        if not os.path.isdir(out_dir):
            raise ResultsError(f"{args.out}: directory {out_dir} does not exist (--out)")
        if os.path.exists(args.out) and not args.overwrite:
            raise ResultsError(f"{args.out}: already exists (pass --overwrite to replace it)")
        text = build(args.inputs, args.title)
        write_atomic(args.out, text)
    except ResultsError as e:
        print(f"kvsim report: error: {e}", file=sys.stderr)
        return 1
    print(f"report: {args.out} ({len(text) / 1e6:.1f} MB)")
    return 0
