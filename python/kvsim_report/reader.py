"""Reading kvsim's outputs by name: results directories and decision tables as pandas
DataFrames, traces through h5py (docs/report.md, "Reading results in a notebook").

Every function raises ResultsError with one message naming the file (and the field or
column) that is wrong: an unknown results format version, a missing file, a missing column.
"""
import json
import os

import numpy as np
import pandas as pd

# The results-directory formats this reader understands (manifest.json "format_version";
# cli/common.hpp kResultsFormatVersion). A manifest without the field was written by a kvsim
# from before it existed: the same files and columns as version 1.
RESULTS_FORMAT_VERSIONS = (1,)
TABLE_FORMAT_VERSIONS = (1, 2)


class ResultsError(Exception):
    """A kvsim output that cannot be read: the message names the file and what is wrong."""


# The files each kind of results directory holds and the columns the report uses.
RUN_FILES = {
    "summary.csv": ["scope", "name", "policy", "budget", "n_prompts", "budget_tokens", "kept_per_head", "out_err",
                    "recall", "dnll_est_sum", "dnll_est_logit"],
    "layers.csv": ["trace", "prompt", "task", "policy", "budget", "budget_tokens", "layer", "kept_tokens", "out_err"],
}
KEPT_COLUMNS = ["policy", "budget", "layer", "kv_head", "n_prompts", "kept_mean"]
VALIDATE_FILES = {
    "pairs.csv": ["trace", "prompt", "task", "policy", "budget", "budget_tokens", "kept_per_head", "out_err",
                  "dnll_est_sum", "dnll_est_logit", "dnll_exact"],
    "correlations.csv": ["scope", "name", "estimator", "target", "n", "spearman", "pearson", "kendall"],
}
DIFF_COLUMNS = ["scope", "task", "budget", "n", "reward_old", "reward_new", "diff", "ci_lo", "ci_hi", "regression"]
TRANSFER_COLUMNS = ["part", "layer", "n", "rho"]


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ResultsError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def read_csv(path, columns, dtype=None):
    """A kvsim CSV as a DataFrame; ResultsError naming the file when it is missing, unreadable or
    lacks one of `columns`. `policy`, `budget`, `task`, `name`, `prompt` and `trace` are read as text
    (a budget label is `64` or `r0.5`; a task may be empty)."""
    if not os.path.isfile(path):
        raise ResultsError(f"{path}: missing")
    text_cols = {c: str for c in ("policy", "budget", "task", "name", "prompt", "trace", "scope", "estimator",
                                  "target", "part", "predictor")}
    if dtype:
        text_cols.update(dtype)
    try:
        df = pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ResultsError(f"{path}: not a readable CSV ({str(e).strip()})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for c in ("task", "name"):
        if c in df.columns:
            df[c] = df[c].fillna("")
    return df


def _check_manifest(path, manifest):
    if not isinstance(manifest, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    fmt = manifest.get("format")
    if fmt is not None and fmt != "kvsim-results":
        raise ResultsError(f"{path}: field 'format' is {fmt!r}, expected 'kvsim-results'")
    version = manifest.get("format_version")
    if version is None and fmt is not None:
        raise ResultsError(f"{path}: field 'format_version' is missing")
    if version is not None and (isinstance(version, bool) or version not in RESULTS_FORMAT_VERSIONS):
        raise ResultsError(f"{path}: field 'format_version' is {version!r}; this reader knows "
                           f"{', '.join(map(str, RESULTS_FORMAT_VERSIONS))} (a newer kvsim wrote it?)")
    if manifest.get("tool", "kvsim") != "kvsim":
        raise ResultsError(f"{path}: field 'tool' is {manifest.get('tool')!r}, expected 'kvsim'")


class _Results:
    kind = ""

    def __init__(self, path, manifest):
        self.path = os.path.normpath(path)
        self.manifest = manifest

    @property
    def name(self):
        return os.path.basename(self.path)

    def __repr__(self):
        return f"<{type(self).__name__} {self.path}>"


class RunResults(_Results):
    """`kvsim run --out DIR`: summary (per prompt/task/all), layers (per layer, read on first use),
    kept (mean kept tokens per (policy, budget, layer, KV head); None for runs before kept.csv)."""
    kind = "run"

    def __init__(self, path, manifest):
        super().__init__(path, manifest)
        self.summary = read_csv(os.path.join(path, "summary.csv"), RUN_FILES["summary.csv"])
        layers = os.path.join(path, "layers.csv")
        if not os.path.isfile(layers):
            raise ResultsError(f"{layers}: missing")
        self._layers = None
        kept = os.path.join(path, "kept.csv")
        self.kept = read_csv(kept, KEPT_COLUMNS) if os.path.exists(kept) else None

    @property
    def layers(self):
        if self._layers is None:
            self._layers = read_csv(os.path.join(self.path, "layers.csv"), RUN_FILES["layers.csv"])
        return self._layers

    def prompt_tasks(self):
        """DataFrame trace, prompt, task, name (`trace:prompt` as summary.csv's prompt rows)."""
        t = pd.read_csv(os.path.join(self.path, "layers.csv"), usecols=["trace", "prompt", "task"], dtype=str,
                        keep_default_na=False).drop_duplicates()
        t["name"] = t["trace"] + ":" + t["prompt"]
        return t.reset_index(drop=True)

    def prompts(self):
        """summary.csv's per-prompt rows with their task."""
        p = self.summary[self.summary["scope"] == "prompt"].merge(self.prompt_tasks()[["name", "task"]], on="name",
                                                                  how="left")
        p["task"] = p["task"].fillna("")
        return p


class ValidateResults(_Results):
    """`kvsim validate --out DIR`: pairs (per prompt × policy × budget: estimates and exact values),
    correlations, rankings; with --generate also scores and decisions."""
    kind = "validate"

    def __init__(self, path, manifest):
        super().__init__(path, manifest)
        self.pairs = read_csv(os.path.join(path, "pairs.csv"), VALIDATE_FILES["pairs.csv"])
        self.correlations = read_csv(os.path.join(path, "correlations.csv"), VALIDATE_FILES["correlations.csv"])
        rankings = os.path.join(path, "rankings.csv")
        self.rankings = read_csv(rankings, []) if os.path.exists(rankings) else None
        scores = os.path.join(path, "scores.csv")
        self.scores = (read_csv(scores, ["task", "policy", "budget", "n", "score", "score_lo", "score_hi",
                                         "pct_full", "pct_full_lo", "pct_full_hi"])
                       if os.path.exists(scores) else None)
        decisions = os.path.join(path, "decisions.csv")
        self.decisions = read_csv(decisions, []) if os.path.exists(decisions) else None


class DiffResults(_Results):
    """`kvsim diff OLD NEW --out DIR`: diff (all / per budget / per task rows, bootstrap CIs) and the
    verdict ("WORSE" when the all row or a budget row regressed)."""
    kind = "diff"

    def __init__(self, path, manifest):
        super().__init__(path, manifest)
        self.diff = read_csv(os.path.join(path, "diff.csv"), DIFF_COLUMNS)

    @property
    def verdict(self):
        gated = self.diff[self.diff["scope"].isin(["all", "budget"])]
        return "WORSE" if (gated["regression"] != 0).any() else "not worse"


class TransferResults(_Results):
    """`kvsim transfer A B --out DIR`: correlations (Spearman per part and layer), diff (the transfer
    cost, with --traces; else None)."""
    kind = "transfer"

    def __init__(self, path, manifest):
        super().__init__(path, manifest)
        self.correlations = read_csv(os.path.join(path, "correlations.csv"), TRANSFER_COLUMNS, dtype={"layer": str})
        diff = os.path.join(path, "diff.csv")
        self.diff = read_csv(diff, DIFF_COLUMNS) if os.path.exists(diff) else None


class Table(_Results):
    """A CompilerKV decision table (`kvsim compile --out table.json`, docs/tables.md): `head`
    [budgets, L, H] and `gate` [budgets, L, 20, 4] as numpy arrays, `budgets`, `provenance`."""
    kind = "table"

    def __init__(self, path, data):
        super().__init__(path, data.get("provenance") or {})
        self.data = data
        where = path

        def field(name, kind):
            if name not in data:
                raise ResultsError(f"{where}: field '{name}' is missing")
            v = data[name]
            if not isinstance(v, kind):
                raise ResultsError(f"{where}: field '{name}' has the wrong type")
            return v

        version = data.get("format_version")
        if isinstance(version, bool) or version not in TABLE_FORMAT_VERSIONS:
            raise ResultsError(f"{where}: field 'format_version' is {version!r}; this reader knows "
                               f"{', '.join(map(str, TABLE_FORMAT_VERSIONS))}")
        self.budgets = [int(b) for b in field("budgets", list)]
        model = field("model", dict)
        self.n_layers, self.n_heads = int(model.get("n_layers", 0)), int(model.get("n_heads", 0))
        try:
            self.head = np.asarray(field("head", list), dtype=float)
            self.gate = np.asarray(field("gate", list), dtype=float)
        except ValueError:
            raise ResultsError(f"{where}: fields 'head'/'gate' are not rectangular number arrays") from None
        nb = len(self.budgets)
        if self.head.shape != (nb, self.n_layers, self.n_heads):
            raise ResultsError(f"{where}: field 'head' has shape {self.head.shape}, expected "
                               f"{(nb, self.n_layers, self.n_heads)}")
        if self.gate.ndim != 4 or self.gate.shape[:2] != (nb, self.n_layers):
            raise ResultsError(f"{where}: field 'gate' has shape {self.gate.shape}, expected "
                               f"({nb}, {self.n_layers}, bins, bins)")
        self.window = data.get("window")
        self.gate_mode = data.get("gate_mode", "absolute")
        self.provenance = data.get("provenance") or {}
        seen = self.provenance.get("gate_bins_seen")
        self.gate_bins_seen = None if seen is None else sorted(int(b) for b in seen)

    def head_frame(self):
        """Tidy head weights: budget, layer, head, weight."""
        b, l, h = np.meshgrid(self.budgets, range(self.n_layers), range(self.n_heads), indexing="ij")
        return pd.DataFrame({"budget": b.ravel(), "layer": l.ravel(), "head": h.ravel(), "weight": self.head.ravel()})


def load(path):
    """A kvsim output by name: a results directory of `kvsim run`, `validate`, `diff --out` or
    `transfer --out` (its manifest.json says which), or a decision table (JSON file)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if os.path.basename(path) == "manifest.json":
            return load(os.path.dirname(path) or ".")
        data = _read_json(path)
        if isinstance(data, dict) and data.get("format") == "kvsim-table":
            return Table(path, data)
        raise ResultsError(f"{path}: field 'format' is not 'kvsim-table' (neither a decision table nor a results "
                           f"directory)")
    if not os.path.isdir(path):
        raise ResultsError(f"{path}: missing")
    mpath = os.path.join(path, "manifest.json")
    manifest = _read_json(mpath)
    _check_manifest(mpath, manifest)
    kind = manifest.get("kind")
    if kind is None:  # written before the field: the files tell
        if os.path.exists(os.path.join(path, "pairs.csv")):
            kind = "validate"
        elif os.path.exists(os.path.join(path, "summary.csv")) or os.path.exists(os.path.join(path, "layers.csv")):
            kind = "run"
        else:
            raise ResultsError(f"{mpath}: field 'kind' is missing and {path} holds neither summary.csv (run) nor "
                               f"pairs.csv (validate)")
    classes = {"run": RunResults, "validate": ValidateResults, "diff": DiffResults, "transfer": TransferResults}
    if kind not in classes:
        raise ResultsError(f"{mpath}: field 'kind' is {kind!r}, expected one of {', '.join(classes)}")
    return classes[kind](path, manifest)


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


class Trace:
    """A kvsim trace (docs/trace-format.md) opened read-only with h5py.

    `model` (attributes), `prompts` (DataFrame: id, task, n_prompt, n_cont, window, source),
    `tokens(id)`, `layer(id, l)` (dict of numpy arrays: keys, values, q_window, q_cont, attn_colsum),
    `outputs(id)` (cont_logprob, cont_topk_ids, ...). Use as a context manager or call close()."""

    def __init__(self, path):
        import h5py

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ResultsError(f"{self.path}: missing")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise ResultsError(f"{self.path}: not an HDF5 file ({e})") from None
        f = self.file
        if _text(f.attrs.get("format")) != "kvsim-trace":
            self.close()
            raise ResultsError(f"{self.path}: attribute 'format' is not 'kvsim-trace'")
        self.format_version = int(f.attrs["format_version"])
        self.storage = _text(f.attrs.get("storage", "fp16"))
        self.model = {k: _text(v) for k, v in f["model"].attrs.items()}
        rows = []
        for pid, g in sorted(f["prompts"].items()):
            if int(g.attrs.get("complete", 0)) != 1:
                continue
            a = g.attrs
            rows.append({"id": pid, "task": _text(a.get("task", "")), "n_prompt": int(a["n_prompt"]),
                         "n_cont": int(a["n_cont"]), "window": int(a["window"]), "source": _text(a.get("source", "")),
                         "answers": json.loads(_text(a["answers"])) if "answers" in a else None})
        self.prompts = pd.DataFrame(rows, columns=["id", "task", "n_prompt", "n_cont", "window", "source", "answers"])

    def tokens(self, prompt):
        return self.file["prompts"][prompt]["tokens"][()]

    def layer(self, prompt, layer):
        g = self.file["prompts"][prompt]["layers"][str(layer)]
        return {k: g[k][()] for k in g.keys()}

    def outputs(self, prompt):
        g = self.file["prompts"][prompt]
        return {k: g[k][()] for k in g.keys() if k not in ("layers", "tokens")}

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Trace {self.path}: {len(self.prompts)} prompts, {self.model.get('n_layers')} layers>"


def load_trace(path):
    """A trace by name (h5py, read-only): see Trace."""
    return Trace(path)
