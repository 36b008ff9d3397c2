"""kvsim report and the notebook reader on synthetic traces (no model needed).

    KVSIM_BINARY=build/release/kvsim /usr/bin/python3 python/tests/test_report.py

Builds two small synthetic traces, a run, two compiled tables, a diff and a transfer with the
kvsim executable, renders the report, and checks every figure against the CSVs it came from
(report_checks), the reader, and the error paths (one line naming the file and field, exit 1,
no report and no OUT.partial). Run by the Catch2 test "report: ..." (tests/600_report_test.cpp).
Exit 77 (skipped) when matplotlib, pandas or scipy is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

KVSIM = os.environ.get("KVSIM_BINARY", os.path.join(HERE, "..", "..", "build", "release", "kvsim"))
WORK = None


def kvsim(*args, ok=(0,)):
    p = subprocess.run([KVSIM, *args], cwd=WORK, capture_output=True, text=True)
    if p.returncode not in ok:
        raise AssertionError(f"kvsim {' '.join(args)}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def setUpModule():
    global WORK
    WORK = tempfile.mkdtemp(prefix="kvsim-report-test-")
    for seed, name in ((1, "a.h5"), (2, "b.h5")):
        kvsim("synth", "--shape", "tiny", "-n", "4", "-T", "256", "-M", "16", "-w", "32", "--seed", str(seed), "-o",
              name, "-t", "1")
    kvsim("run", "a.h5", "b.h5", "--policies", "full,streamingllm,snapkv:window=16,h2o,compilerkv:window=16",
          "--budget", "16,32,64", "--out", "run", "-q", "-t", "1")
    for trace, table in (("a.h5", "t1.json"), ("b.h5", "t2.json")):
        kvsim("compile", trace, "--budget", "16,32,64", "--window", "16", "--max-rounds", "1", "--out", table, "-t", "1")
    kvsim("diff", "t1.json", "t2.json", "--traces", "b.h5", "--budget", "16,32,64", "--out", "diff", "-t", "1",
          ok=(0, 3))
    kvsim("transfer", "t1.json", "t2.json", "--traces", "b.h5", "--out", "transfer", "-t", "1")
    kvsim("report", "run", "t1.json", "diff", "transfer", "--out", "report.html")


def tearDownModule():
    if WORK and not os.environ.get("KVSIM_KEEP_TEST_OUTPUT"):
        shutil.rmtree(WORK, ignore_errors=True)


def path(*p):
    return os.path.join(WORK, *p)


def read_text(p):
    with open(p, encoding="utf-8") as f:
        return f.read()


def write_text(p, text):
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)


def read_json(p):
    return json.loads(read_text(p))


def write_json(p, obj):
    write_text(p, json.dumps(obj))


class FiguresAgreeWithCsvs(unittest.TestCase):
    def test_every_figure_matches_its_source(self):
        import report_checks
        cwd = os.getcwd()
        os.chdir(WORK)  # the report names its sources as given on the command line
        try:
            counts = report_checks.check_report("report.html", {})
        finally:
            os.chdir(cwd)
        for kind in ("budget_curves", "kept_heatmap", "table_heads", "table_gate", "forest", "transfer"):
            self.assertGreater(counts.get(kind, 0), 0, f"no {kind} figure was checked: {counts}")

    def test_kept_csv_holds_the_policies_budgets_and_whole_prompts_for_full(self):
        import report_checks
        kept = report_checks.rows(path("run", "kept.csv"))
        self.assertEqual(len(kept), 5 * 3 * 2 * 2)  # policies × budgets × layers × KV heads (tiny: 2, 2)
        for r in kept:
            self.assertEqual(r["n_prompts"], "8")
            if r["policy"] == "full":
                self.assertEqual(float(r["kept_mean"]), 256.0)  # T of every synthetic prompt
            elif r["policy"].startswith("streamingllm"):
                self.assertEqual(float(r["kept_mean"]), float(r["budget"]))  # a uniform policy: B on every head

    def test_images_are_pngs_and_sections_present(self):
        import base64
        import re
        text = read_text(path("report.html"))
        imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
        meta = json.loads(re.search(r'id="report-meta">(.*?)</script>', text, re.S).group(1))
        self.assertEqual(len(imgs), len(meta["figures"]))
        self.assertGreaterEqual(len(imgs), 10)
        for b in imgs:
            self.assertEqual(base64.b64decode(b)[:8], b"\x89PNG\r\n\x1a\n")
        self.assertNotIn('src="http', text)
        # Provenance: every trace's hash and the commands are in the report.
        for m in ("run", "diff", "transfer"):
            manifest = read_json(path(m, "manifest.json"))
            for t in manifest["traces"]:
                self.assertIn(t["xxh3"], text)
        self.assertIn("fidelity", text.lower())


class Reader(unittest.TestCase):
    def test_load_results_and_trace_by_name(self):
        import kvsim_report
        run = kvsim_report.load(path("run"))
        self.assertIsInstance(run, kvsim_report.RunResults)
        self.assertEqual(run.manifest["format_version"], 1)
        allrows = run.summary[run.summary["scope"] == "all"]
        self.assertEqual(len(allrows), 15)
        self.assertEqual(set(run.prompts()["task"]), {"synthetic"})
        self.assertEqual(len(run.layers), 8 * 15 * 2)  # prompts × (policy, budget) × layers
        self.assertEqual(len(run.kept), 60)
        d = kvsim_report.load(path("diff"))
        self.assertEqual(d.verdict, d.manifest["verdict"])
        t = kvsim_report.load(path("t1.json"))
        self.assertEqual(t.head.shape, (3, 2, 4))
        self.assertEqual(len(t.head_frame()), 24)
        tr = kvsim_report.load(path("transfer"))
        self.assertIsNotNone(tr.diff)
        with kvsim_report.load_trace(path("a.h5")) as trace:
            self.assertEqual(len(trace.prompts), 4)
            self.assertEqual(int(trace.model["n_layers"]), 2)
            pid = trace.prompts["id"][0]
            lay = trace.layer(pid, 1)
            self.assertEqual(lay["keys"].shape, (2, 256 + 16, 16))
            self.assertEqual(len(trace.tokens(pid)), 272)


class BadInput(unittest.TestCase):
    def refused(self, inputs, *needles, launcher=False):
        """One line on stderr naming what is wrong, exit 1, neither OUT nor OUT.partial written.
        In-process (python -m kvsim_report's main) unless launcher: then through `kvsim report`."""
        out = path("bad.html")
        if launcher:
            p = subprocess.run([KVSIM, "report", *inputs, "--out", out], capture_output=True, text=True)
            rc, err = p.returncode, p.stderr
        else:
            import contextlib
            import io
            from kvsim_report import report
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf):
                rc = report.main([*inputs, "--out", out])
            err = buf.getvalue()
        self.assertEqual(rc, 1, err)
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("kvsim report: error: "), lines[0])
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".partial"))
        return lines[0]

    def refused_existing(self, out):
        import contextlib
        import io
        from kvsim_report import report
        buf = io.StringIO()
        with contextlib.redirect_stderr(buf):
            self.assertEqual(report.main([path("run"), "--out", out]), 1)
        return buf.getvalue()

    def copy_run(self, name):
        dst = path(name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(path("run"), dst)
        return dst

    def test_unknown_version(self):
        d = self.copy_run("run-v99")
        m = read_json(os.path.join(d, "manifest.json"))
        m["format_version"] = 99
        write_json(os.path.join(d, "manifest.json"), m)
        self.refused([path("run"), d], os.path.join(d, "manifest.json"), "format_version", "99", launcher=True)

    def test_missing_file(self):
        d = self.copy_run("run-nosummary")
        os.remove(os.path.join(d, "summary.csv"))
        self.refused([d], os.path.join(d, "summary.csv"), "missing")

    def test_missing_manifest_and_path(self):
        d = self.copy_run("run-nomanifest")
        os.remove(os.path.join(d, "manifest.json"))
        self.refused([d], os.path.join(d, "manifest.json"), "missing")
        self.refused([path("no-such-dir")], path("no-such-dir"), "missing")

    def test_missing_column(self):
        d = self.copy_run("run-nocol")
        lines = read_text(os.path.join(d, "summary.csv")).splitlines()
        lines[0] = lines[0].replace("out_err,", "out_error,", 1)
        write_text(os.path.join(d, "summary.csv"), "\n".join(lines) + "\n")
        self.refused([d], os.path.join(d, "summary.csv"), "out_err")

    def test_bad_table(self):
        t = read_json(path("t1.json"))
        t["format_version"] = 7
        write_json(path("t7.json"), t)
        self.refused([path("t7.json")], path("t7.json"), "format_version")

    def test_existing_output_kept(self):
        out = path("exists.html")
        write_text(out, "keep me")
        self.assertIn("already exists", self.refused_existing(out))
        self.assertEqual(read_text(out), "keep me")


if __name__ == "__main__":
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as e:
        print(f"SKIPPED: {e} (scripts/install-deps.sh installs python3-matplotlib python3-pandas python3-scipy)")
        sys.exit(77)
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
