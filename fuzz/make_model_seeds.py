#!/usr/bin/env python3
"""Writes the seeds of the whole-model fuzz targets: fuzz/corpus/gguf_model/, tiny one-layer
llama GGUF checkpoints (tracer/gguf.hpp's layout) that load_gguf accepts, together holding every
tensor type kvsim dequantizes; fuzz/corpus/hf_model/, tiny Hugging Face checkpoints (config.json
and model.safetensors joined by HF_SPLIT, as fuzz/hf_model.cpp splits them) that load_hf accepts.
Random values from a fixed seed, so the files are reproducible.
Usage: fuzz/make_model_seeds.py [corpus dir]"""
import json
import os
import random
import struct
import sys

# fuzz/hf_model.cpp's separator between config.json and model.safetensors.
HF_SPLIT = b"\n--kvsim-fuzz-split--\n"

# GGUF metadata value types and ggml tensor types (tracer/gguf.hpp).
U32, F32V, STRING = 4, 6, 8
F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, BF16 = 0, 1, 2, 3, 8, 12, 14, 30
# (elements, bytes) per block.
BLOCK = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q8_0: (32, 34), Q4_0: (32, 18), Q4_1: (32, 20),
         Q4_K: (256, 144), Q6_K: (256, 210)}


def half(x):
    return struct.pack("<e", x)


def tensor_bytes(rng, ggml_type, n):
    """n elements of ggml_type: small random values, finite scales, random quants."""
    if ggml_type == F32:
        return b"".join(struct.pack("<f", rng.gauss(0, 0.5)) for _ in range(n))
    if ggml_type == F16:
        return b"".join(half(rng.gauss(0, 0.5)) for _ in range(n))
    if ggml_type == BF16:
        return b"".join(struct.pack("<f", rng.gauss(0, 0.5))[2:] for _ in range(n))
    elems, size = BLOCK[ggml_type]
    out = b""
    for _ in range(n // elems):
        if ggml_type in (Q8_0, Q4_0):
            out += half(rng.uniform(0.001, 0.05)) + rng.randbytes(size - 2)
        elif ggml_type == Q4_1:
            out += half(rng.uniform(0.001, 0.05)) + half(rng.uniform(-0.2, 0.0)) + rng.randbytes(size - 4)
        elif ggml_type == Q4_K:
            out += half(rng.uniform(0.001, 0.01)) + half(rng.uniform(0.0, 0.01)) + rng.randbytes(size - 4)
        else:  # Q6_K: ql, qh, scales, then d
            out += rng.randbytes(size - 2) + half(rng.uniform(0.0001, 0.001))
    return out


def gguf(metadata, tensors, version=3, alignment=32):
    """metadata: [(key, type, value)]; tensors: [(name, ne (GGUF order), ggml type, bytes)]."""
    def s(text):
        b = text.encode()
        return struct.pack("<Q", len(b)) + b

    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, vtype, value in metadata:
        out += s(key) + struct.pack("<I", vtype)
        out += {U32: lambda v: struct.pack("<I", v), F32V: lambda v: struct.pack("<f", v), STRING: s}[vtype](value)
    offset = 0
    for name, ne, ttype, data in tensors:
        out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", ttype, offset)
        offset += (len(data) + alignment - 1) // alignment * alignment
    pad = lambda b: b + b"\0" * (-len(b) % alignment)
    out = pad(out)
    for _, _, _, data in tensors:
        out += pad(data)
    return out


def llama(rng, D, H, Hkv, d, F, V, types, tied, version=3, alignment=32):
    """A one-layer llama checkpoint; types maps a tensor role to its ggml type."""
    meta = [("general.architecture", STRING, "llama"), ("llama.block_count", U32, 1),
            ("llama.embedding_length", U32, D), ("llama.feed_forward_length", U32, F),
            ("llama.attention.head_count", U32, H), ("llama.attention.head_count_kv", U32, Hkv),
            ("llama.attention.key_length", U32, d), ("llama.context_length", U32, 64),
            ("llama.rope.freq_base", F32V, 10000.0), ("llama.attention.layer_norm_rms_epsilon", F32V, 1e-5)]
    if alignment != 32:
        meta.append(("general.alignment", U32, alignment))
    shapes = [("token_embd.weight", [D, V], "embed"), ("blk.0.attn_norm.weight", [D], "norm"),
              ("blk.0.attn_q.weight", [D, H * d], "q"), ("blk.0.attn_k.weight", [D, Hkv * d], "k"),
              ("blk.0.attn_v.weight", [D, Hkv * d], "v"), ("blk.0.attn_output.weight", [H * d, D], "o"),
              ("blk.0.ffn_norm.weight", [D], "norm"), ("blk.0.ffn_gate.weight", [D, F], "gate"),
              ("blk.0.ffn_up.weight", [D, F], "up"), ("blk.0.ffn_down.weight", [F, D], "down"),
              ("output_norm.weight", [D], "norm")]
    if not tied:
        shapes.append(("output.weight", [D, V], "output"))
    tensors = []
    for name, ne, role in shapes:
        n = 1
        for x in ne:
            n *= x
        tensors.append((name, ne, types[role], tensor_bytes(rng, types[role], n)))
    return gguf(meta, tensors, version, alignment)


def safetensors(tensors):
    """tensors: [(name, dtype, shape, bytes)] -> the file's bytes."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def hf(rng, arch, D, H, Hkv, d, F, V, dtype, tied):
    """A one-layer HF checkpoint of `arch` (Qwen2 has q/k/v biases), every tensor in dtype."""
    config = {"architectures": [arch], "hidden_size": D, "intermediate_size": F, "num_hidden_layers": 1,
              "num_attention_heads": H, "num_key_value_heads": Hkv, "head_dim": d, "vocab_size": V,
              "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "tie_word_embeddings": tied, "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype],
              "hidden_act": "silu"}
    p = "model.layers.0."
    shapes = [("model.embed_tokens.weight", [V, D]), (p + "input_layernorm.weight", [D]),
              (p + "self_attn.q_proj.weight", [H * d, D]), (p + "self_attn.k_proj.weight", [Hkv * d, D]),
              (p + "self_attn.v_proj.weight", [Hkv * d, D]), (p + "self_attn.o_proj.weight", [D, H * d]),
              (p + "post_attention_layernorm.weight", [D]), (p + "mlp.gate_proj.weight", [F, D]),
              (p + "mlp.up_proj.weight", [F, D]), (p + "mlp.down_proj.weight", [D, F]), ("model.norm.weight", [D])]
    if arch == "Qwen2ForCausalLM":
        shapes += [(p + "self_attn.q_proj.bias", [H * d]), (p + "self_attn.k_proj.bias", [Hkv * d]),
                   (p + "self_attn.v_proj.bias", [Hkv * d])]
    if not tied:
        shapes.append(("lm_head.weight", [V, D]))
    ggml = {"F32": F32, "F16": F16, "BF16": BF16}[dtype]
    tensors = []
    for name, shape in shapes:
        n = 1
        for x in shape:
            n *= x
        tensors.append((name, dtype, shape, tensor_bytes(rng, ggml, n)))
    return json.dumps(config, indent=1).encode() + HF_SPLIT + safetensors(tensors)


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    rng = random.Random(15)
    seeds = {
        # Block types of 32: every role a different type, untied classifier.
        "gguf_model/blocks32.gguf": llama(rng, D=32, H=2, Hkv=1, d=16, F=32, V=4, tied=False, types=dict(
            embed=Q8_0, norm=F32, q=Q4_0, k=Q4_1, v=F16, o=BF16, gate=Q8_0, up=Q4_0, down=Q4_1, output=F16)),
        # K-quants (256-element blocks) on rows of D = 256; narrow matrices in 16-bit floats.
        "gguf_model/kquants.gguf": llama(rng, D=256, H=1, Hkv=1, d=2, F=2, V=2, tied=True, types=dict(
            embed=Q6_K, norm=Q8_0, q=Q4_K, k=Q6_K, v=Q4_K, o=F16, gate=Q6_K, up=Q4_K, down=BF16)),
        # Smallest: fp32 only, GGUF version 2, alignment 64, grouped-query attention.
        "gguf_model/tiny_v2.gguf": llama(rng, D=4, H=2, Hkv=1, d=2, F=4, V=3, tied=True, version=2, alignment=64,
                                         types=dict(embed=F32, norm=F32, q=F32, k=F32, v=F32, o=F32, gate=F32, up=F32,
                                                    down=F32)),
        "hf_model/llama_f32": hf(rng, "LlamaForCausalLM", D=4, H=2, Hkv=1, d=2, F=4, V=3, dtype="F32", tied=True),
        "hf_model/qwen2_bf16": hf(rng, "Qwen2ForCausalLM", D=4, H=2, Hkv=1, d=2, F=4, V=3, dtype="BF16", tied=False),
        "hf_model/mistral_f16": hf(rng, "MistralForCausalLM", D=8, H=2, Hkv=2, d=4, F=6, V=5, dtype="F16", tied=False),
    }
    for name, data in seeds.items():
        path = os.path.join(corpus, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
