"""Opens a kvsim report in headless Chromium and checks it as a reader would see it.

    /usr/bin/python3 python/tests/browser_check.py REPORT.html --screenshot first-screen.png

Talks to Chromium over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ended by NUL on file descriptors 3 and 4; no network port, no extra package), loads
the report from file://, and fails (exit 1, one line per problem) on: any console error or
uncaught exception, any log entry of level error (a blocked or failed resource), an image
that did not load (naturalWidth 0), a section id or figure of the report's index
(`report-meta`) missing from the DOM, or a blank first screen. Exit 77 when Chromium is not
installed (the test is reported as skipped). Writes the screenshot of the first screen
(1280 × 900) to --screenshot.
"""
import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77


class Cdp:
    def __init__(self, chromium, profile):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        # The shell puts the pipe ends on the descriptors Chromium expects (3: commands in, 4: answers
        # out) and closes the originals.
        # The parent's pipe ends may themselves be 3 or 4: move them out of the way first.
        redirect = (f'exec 8<&{to_child_r} 9>&{from_child_w}; exec "$0" "$@" 3<&8 4>&9 8<&- 9>&-')
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", redirect, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--window-size=1280,900", "about:blank"],
            pass_fds=(to_child_r, from_child_w), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self.read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def read(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            r, _, _ = select.select([self.from_child], [], [], left)
            if r:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"chromium closed the pipe: {err}")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            m = self.read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check(report, screenshot, chromium):
    problems = []
    with tempfile.TemporaryDirectory(prefix="kvsim-chromium-") as profile:
        cdp = Cdp(chromium, profile)
        try:
            targets = cdp.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            session = cdp.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                cdp.send(f"{domain}.enable", session=session)
            cdp.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
            cdp.events.clear()
            cdp.send("Page.navigate", {"url": "file://" + os.path.abspath(report)}, session=session)
            cdp.wait_event("Page.loadEventFired", timeout=120)

            def js(expr):
                r = cdp.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
                if "exceptionDetails" in r:
                    raise RuntimeError(f"evaluating {expr!r}: {r['exceptionDetails']}")
                return r["result"].get("value")

            # Images decode asynchronously: wait until every one is complete.
            for _ in range(100):
                if js("Array.from(document.images).every(i => i.complete)"):
                    break
                time.sleep(0.1)
            meta = json.loads(js("document.getElementById('report-meta').textContent"))
            present = js("JSON.stringify(%s.map(id => !!document.getElementById(id)))" % json.dumps(
                meta["sections"] + [f["id"] for f in meta["figures"]]))
            for name, ok in zip(meta["sections"] + [f["id"] for f in meta["figures"]], json.loads(present)):
                if not ok:
                    problems.append(f"{report}: #{name} is missing from the DOM")
            images = json.loads(js("JSON.stringify(Array.from(document.images).map(i => "
                                   "[i.closest('figure') ? i.closest('figure').id : '', i.complete, i.naturalWidth]))"))
            if len(images) != len(meta["figures"]):
                problems.append(f"{report}: {len(images)} images in the DOM, the index lists {len(meta['figures'])}")
            for fid, complete, width in images:
                if not complete or width == 0:
                    problems.append(f"{report}: image of #{fid} did not load")
            external = js("JSON.stringify(Array.from(document.querySelectorAll('[src],[href]')).map(e => "
                          "e.getAttribute('src') || e.getAttribute('href')).filter(u => !u.startsWith('data:') && "
                          "!u.startsWith('#')))")
            for u in json.loads(external):
                problems.append(f"{report}: reference to an external resource: {u[:80]}")
            shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=session)
            png = base64.b64decode(shot["data"])
            with open(screenshot, "wb") as f:
                f.write(png)
            time.sleep(0.2)
            # Drain what arrived meanwhile (late console messages).
            try:
                while True:
                    cdp.events.append(cdp.read(time.monotonic() + 0.3))
            except TimeoutError:
                pass
            for e in cdp.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                    problems.append(f"{report}: console error: {text[:200]}")
                elif m == "Runtime.exceptionThrown":
                    problems.append(f"{report}: uncaught exception: {p.get('exceptionDetails', {}).get('text', '')}")
                elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    problems.append(f"{report}: log error ({p['entry'].get('source')}): {p['entry'].get('text', '')[:200]}")
        finally:
            cdp.close()
    problems += blank_check(screenshot)
    return problems, meta


def blank_check(path):
    """The first screen is not blank: many distinct colours, and a fair share of non-white pixels."""
    import matplotlib.image
    import numpy as np

    img = matplotlib.image.imread(path)[:, :, :3]
    if img.shape[0] < 100 or img.shape[1] < 100:
        return [f"{path}: screenshot is only {img.shape[1]} × {img.shape[0]} pixels"]
    colors = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    nonwhite = float((img.min(axis=2) < 0.95).mean())
    out = []
    if colors < 50:
        out.append(f"{path}: screenshot looks blank ({colors} distinct colours)")
    if nonwhite < 0.02:
        out.append(f"{path}: screenshot looks blank ({100 * nonwhite:.1f}% non-white pixels)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report")
    ap.add_argument("--screenshot", required=True, help="PNG of the first screen")
    ap.add_argument("--chromium", default=os.environ.get("KVSIM_CHROMIUM") or shutil.which("chromium")
                    or shutil.which("chromium-browser"))
    args = ap.parse_args(argv)
    if not args.chromium:
        print("SKIPPED: chromium is not installed (Debian package chromium; scripts/install-deps.sh)")
        return SKIP
    problems, meta = check(args.report, args.screenshot, args.chromium)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"browser: {args.report}: {len(meta['sections'])} sections, {len(meta['figures'])} figures loaded, no console "
          f"errors; first screen in {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
