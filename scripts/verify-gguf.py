#!/usr/bin/env python3
"""Independent check of kvsim's GGUF path with the `gguf` Python package and numpy.

The `gguf` package (llama.cpp's own reader) dequantizes the same file; a reference fp32
forward pass written here in numpy — with the q/k rows as GGUF stores them and llama.cpp's
interleaved ("normal") RoPE, the route kvsim does *not* take — gives logits to compare with
`kvsim generate --dump-logits`.

  scripts/verify-gguf.py check     # max |Δlogit| over a 256-token prompt (exit 1 if >= 1e-3)
  scripts/verify-gguf.py fixture   # writes tests/data/smollm2_gguf_reference.json
  scripts/verify-gguf.py blocks    # writes tests/data/gguf_blocks.{gguf,json}

gguf and numpy are installed into a virtual environment on first use
(${KVSIM_VENV:-~/.cache/kvsim-venv}); the script re-runs itself there. See docs/models.md.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import script_venv  # scripts/, beside this file

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("KVSIM_VENV", Path.home() / ".cache" / "kvsim-venv"))
PACKAGES = ["gguf==0.19.0", "numpy"]
DEFAULT_GGUF = Path(os.environ.get("KVSIM_MODELS", Path.home() / ".cache" / "kvsim" / "models")) / \
    "smollm2-135m" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TEXT = REPO.parent / "shared" / "data" / "paul_graham_essays" / "worked.txt"


def ensure_venv():
    """Re-executes this script inside a venv that has gguf and numpy."""
    script_venv.ensure_venv(VENV, PACKAGES, ["gguf", "numpy"], "verify-gguf")


# ---------------------------------------------------------------- the reference model

class Reference:
    """Weights dequantized by the gguf package, and a plain numpy forward pass."""

    def __init__(self, path, dtype):
        import numpy as np
        from gguf import GGUFReader
        from gguf.quants import dequantize
        self.np = np
        self.dtype = dtype
        self.reader = GGUFReader(str(path))
        self.tensors = {t.name: t for t in self.reader.tensors}
        self._dequantize = dequantize
        arch = self.field("general.architecture")
        if arch != "llama":
            sys.exit(f"verify-gguf: architecture {arch!r}, only llama is handled")
        self.n_layers = self.field("llama.block_count")
        self.n_heads = self.field("llama.attention.head_count")
        self.n_kv = self.field("llama.attention.head_count_kv")
        self.hidden = self.field("llama.embedding_length")
        self.head_dim = self.hidden // self.n_heads
        self.eps = self.field("llama.attention.layer_norm_rms_epsilon")
        self.theta = self.field("llama.rope.freq_base")

    def field(self, key):
        return self.reader.fields[key].contents()

    def weight(self, name):
        """Dequantized tensor, row-major [ne1, ne0] (or [ne0] for vectors), float32."""
        t = self.tensors[name]
        w = self._dequantize(t.data, t.tensor_type)
        return self.np.asarray(w, dtype=self.np.float32).reshape([int(d) for d in reversed(t.shape)])

    def rope_interleaved(self, x, n_heads):
        """llama.cpp's "normal" RoPE: dimension pairs (2i, 2i+1) of each head, in place."""
        np = self.np
        T = x.shape[0]
        d = self.head_dim
        freq = self.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # [d/2]
        ang = np.arange(T, dtype=np.float64)[:, None] * freq[None, :]      # [T, d/2]
        cos, sin = np.cos(ang).astype(self.dtype), np.sin(ang).astype(self.dtype)
        x = x.reshape(T, n_heads, d // 2, 2)
        x0, x1 = x[..., 0].copy(), x[..., 1].copy()
        x[..., 0] = x0 * cos[:, None, :] - x1 * sin[:, None, :]
        x[..., 1] = x0 * sin[:, None, :] + x1 * cos[:, None, :]
        return x.reshape(T, n_heads * d)

    def rmsnorm(self, x, w):
        np = self.np
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.dtype(self.eps)) * w

    def logits(self, tokens):
        """Logits [T, vocab] of every position."""
        np = self.np
        f = lambda name: self.weight(name).astype(self.dtype)
        embed = f("token_embd.weight")
        x = embed[np.asarray(tokens)]
        T, d, G = len(tokens), self.head_dim, self.n_heads // self.n_kv
        mask = np.triu(np.full((T, T), -np.inf, dtype=self.dtype), k=1)
        for l in range(self.n_layers):
            p = f"blk.{l}."
            h = self.rmsnorm(x, f(p + "attn_norm.weight"))
            q = self.rope_interleaved(h @ f(p + "attn_q.weight").T, self.n_heads)
            k = self.rope_interleaved(h @ f(p + "attn_k.weight").T, self.n_kv)
            v = h @ f(p + "attn_v.weight").T
            out = np.empty((T, self.n_heads * d), dtype=self.dtype)
            for hh in range(self.n_heads):
                g = hh // G
                qh, kh, vh = q[:, hh * d:(hh + 1) * d], k[:, g * d:(g + 1) * d], v[:, g * d:(g + 1) * d]
                s = qh @ kh.T / self.dtype(np.sqrt(d)) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                out[:, hh * d:(hh + 1) * d] = (s / s.sum(axis=-1, keepdims=True)) @ vh
            x = x + out @ f(p + "attn_output.weight").T
            h = self.rmsnorm(x, f(p + "ffn_norm.weight"))
            gate, up = h @ f(p + "ffn_gate.weight").T, h @ f(p + "ffn_up.weight").T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ f(p + "ffn_down.weight").T
        x = self.rmsnorm(x, f("output_norm.weight"))
        out_w = f("output.weight") if "output.weight" in self.tensors else embed
        return x @ out_w.T


def kvsim_logits(kvsim, gguf_path, text, n_tokens, threads):
    """Runs `kvsim generate --dump-logits`; returns (tokens, logits)."""
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        logits, tokens = Path(tmp) / "logits.npy", Path(tmp) / "tokens.npy"
        cmd = [str(kvsim), "generate", "--model", str(gguf_path), "--prompt-file", str(text),
               "--prompt-len", str(n_tokens), "--steps", str(n_tokens), "--threads", str(threads),
               "--dump-logits", str(logits), "--dump-tokens", str(tokens)]
        print("verify-gguf: " + " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return np.load(tokens), np.load(logits)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- subcommands

def cmd_check(args):
    import numpy as np
    dtype = np.float32 if args.dtype == "float32" else np.float64
    tokens, ours = kvsim_logits(args.kvsim, args.gguf, args.text, args.tokens, args.threads)
    if len(tokens) != args.tokens:
        sys.exit(f"verify-gguf: {args.text} gave {len(tokens)} tokens, wanted {args.tokens}")
    ref = Reference(args.gguf, dtype).logits(tokens.tolist())
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    agree = np.mean(ours.argmax(axis=-1) == ref.argmax(axis=-1))
    print(f"gguf       {args.gguf} (sha256 {sha256(args.gguf)[:16]}...)")
    print(f"prompt     {len(tokens)} tokens of {args.text}")
    from importlib.metadata import version
    print(f"reference  gguf {version('gguf')} dequantization, numpy {np.__version__} forward in {args.dtype}, interleaved RoPE on GGUF rows")
    print(f"logits     [{ours.shape[0]}, {ours.shape[1]}], |logit| up to {np.abs(ref).max():.2f}")
    print(f"max |Δlogit| = {diff.max():.3g} (position {worst[0]}, token id {worst[1]}); "
          f"mean {diff.mean():.3g}; argmax agreement {agree:.4f}")
    ok = diff.max() < args.tolerance
    print("PASS" if ok else "FAIL", f"(tolerance {args.tolerance})")
    return 0 if ok else 1


def cmd_fixture(args):
    """Reference values for tests/055: dequantized probes of a few tensors and logits."""
    import numpy as np
    ref = Reference(args.gguf, np.float32)
    tensors = {}
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.ffn_down.weight",
                 "blk.15.attn_norm.weight", "output_norm.weight"]:
        w = ref.weight(name)
        flat = w.reshape(-1)
        idx = np.linspace(0, flat.size - 1, 16).astype(np.int64)
        tensors[name] = {
            "type": ref.tensors[name].tensor_type.name,
            "shape": list(w.shape),
            "indices": idx.tolist(),
            "values": [float(flat[i]) for i in idx],
            "sum": float(flat.astype(np.float64).sum()),
        }
    tokens, _ = kvsim_logits(args.kvsim, args.gguf, args.text, 32, args.threads)
    logits = ref.logits(tokens.tolist())
    probe_ids = [0, 1, 2, 198, 216, 1000, 30000, 49151]
    positions = []
    for pos in [0, 15, len(tokens) - 1]:
        top = np.argsort(-logits[pos])[:5]
        positions.append({"position": pos, "top_ids": top.tolist(), "top_logits": [float(logits[pos, i]) for i in top],
                          "probe_logits": [float(logits[pos, i]) for i in probe_ids]})
    out = {
        "generated_by": "scripts/verify-gguf.py fixture (gguf package dequantization, numpy fp32 forward)",
        "gguf": args.gguf.name,
        "gguf_sha256": sha256(args.gguf),
        "tensors": tensors,
        "prompt_tokens": tokens.tolist(),
        "probe_ids": probe_ids,
        "logits": positions,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def cmd_blocks(args):
    """A small GGUF of random blocks of every type kvsim reads, and the gguf package's values."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q, GGUFWriter
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import dequantize
    rng = np.random.default_rng(20261123)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path, meta = args.out_dir / "gguf_blocks.gguf", args.out_dir / "gguf_blocks.json"
    writer = GGUFWriter(str(path), "blocks")
    expected = {}
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q6_K]:
        block, size = GGML_QUANT_SIZES[qtype]
        rows, cols = (1, block) if block == 256 else (2, 64)
        n_bytes = rows * cols // block * size
        if qtype == Q.F32:
            raw = rng.standard_normal(rows * cols).astype(np.float32).view(np.uint8)
        elif qtype in (Q.F16, Q.BF16):
            vals = rng.standard_normal(rows * cols).astype(np.float32)
            raw = (vals.astype(np.float16).view(np.uint8) if qtype == Q.F16
                   else (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8))
        else:
            # Random bytes, with every fp16 scale replaced by a modest finite value.
            raw = rng.integers(0, 256, n_bytes, dtype=np.uint8).reshape(-1, size)
            scale_at = {Q.Q8_0: [0], Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q4_K: [0, 2], Q.Q6_K: [208]}[qtype]
            for at in scale_at:
                scales = (rng.standard_normal(raw.shape[0]) * 0.05).astype(np.float16).view(np.uint8).reshape(-1, 2)
                raw[:, at:at + 2] = scales
            raw = raw.reshape(-1)
        raw = raw.reshape(rows, -1)
        name = f"blocks.{qtype.name}"
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        values = dequantize(raw, qtype).astype(np.float32).reshape(-1)
        # 9 significant digits print any float32 exactly.
        expected[name] = {"type": qtype.name, "shape": [rows, cols], "values": [float(f"{v:.9g}") for v in values]}
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    meta.write_text(json.dumps({"generated_by": "scripts/verify-gguf.py blocks (gguf package dequantize)",
                                "tensors": expected}) + "\n")
    print(f"wrote {path} and {meta}")
    return 0


def main():
    ensure_venv()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    common.add_argument("--kvsim", type=Path, default=REPO / "build" / "release" / "kvsim")
    common.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="prompt text (its first tokens are used)")
    common.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("check", parents=[common], help="compare kvsim's logits with the reference")
    c.add_argument("--tokens", type=int, default=256)
    c.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    c.add_argument("--tolerance", type=float, default=1e-3)
    f = sub.add_parser("fixture", parents=[common], help="write reference values for the C++ tests")
    f.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "smollm2_gguf_reference.json")
    b = sub.add_parser("blocks", help="write a GGUF of random blocks of each type and their values")
    b.add_argument("--out-dir", type=Path, default=REPO / "tests" / "data")
    args = ap.parse_args()
    if args.command != "blocks" and not args.gguf.exists():
        sys.exit(f"verify-gguf: {args.gguf} is absent (scripts/get-model.sh smollm2-135m fetches it)")
    return {"check": cmd_check, "fixture": cmd_fixture, "blocks": cmd_blocks}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
