// Llama-architecture GGUF checkpoints (llama.cpp's format): `llama.*` metadata to the same
// ModelConfig as a HF config.json, tensors dequantized to fp32.
#include <limits>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "tracer/gguf.hpp"
#include "tracer/model.hpp"
#include "tracer/weight_plan.hpp"

namespace kvsim {

namespace {

// llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute) stores attn_q/attn_k
// rows of each head reordered from HF's layout, where RoPE rotates dimension pairs
// (i, i + d/2) ("rotate_half"), to the layout of Meta's original code, where it rotates
// (2i, 2i+1) — the "normal" RoPE llama.cpp applies to the llama architecture. Within a head,
// GGUF row 2i + j is HF row j·d/2 + i (j = 0, 1). We undo that permutation so the weights,
// the RoPE style (rotate_half) and therefore the recorded keys and queries have the same
// dimension order as the HF checkpoint of the same model. Scores q·k are unchanged either
// way, since q and k are permuted alike; scripts/verify-gguf.py checks the other route
// (GGUF rows as stored, interleaved RoPE) against ours.
void unpermute_rope_rows(MatrixRM& w, int heads, int head_dim) {
  const Eigen::Index half = head_dim / 2;
  MatrixRM head(head_dim, w.cols());
  for (int h = 0; h < heads; ++h) {
    const Eigen::Index r0 = static_cast<Eigen::Index>(h) * head_dim;
    for (Eigen::Index i = 0; i < half; ++i)
      for (Eigen::Index j = 0; j < 2; ++j) head.row(j * half + i) = w.row(r0 + 2 * i + j);
    w.middleRows(r0, head_dim) = head;
  }
}

ModelConfig gguf_config(const GgufFile& f) {
  const std::string where = f.path().string();
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama")
    fail<ModelError>(where, ": general.architecture '", arch, "' is not supported (supported: llama)");
  const std::string k = arch + ".";
  // Sizes fit an int; a larger value is a corrupt file, not a model.
  auto checked = [&](const std::string& key, std::int64_t v) {
    if (v < 0 || v > std::numeric_limits<int>::max()) fail<ModelError>(where, ": ", key, " = ", v, " is out of range");
    return static_cast<int>(v);
  };
  auto get_int = [&](const std::string& key) { return checked(k + key, f.get_int(k + key)); };
  auto get_int_or = [&](const std::string& key, std::int64_t fallback) {
    return checked(k + key, f.get_int(k + key, fallback));
  };
  ModelConfig c;
  c.arch = "llama";
  c.n_layers = get_int("block_count");
  c.hidden = get_int("embedding_length");
  c.ffn_hidden = get_int("feed_forward_length");
  c.n_heads = get_int("attention.head_count");
  c.n_kv_heads = get_int_or("attention.head_count_kv", c.n_heads);
  c.head_dim = get_int_or("attention.key_length", c.n_heads > 0 ? c.hidden / c.n_heads : 0);
  if (const auto v = f.get_int(k + "attention.value_length", c.head_dim); v != c.head_dim)
    fail<ModelError>(where, ": ", k, "attention.value_length ", v, " differs from key_length ", c.head_dim,
                     " (not supported)");
  if (const auto r = f.get_int(k + "rope.dimension_count", c.head_dim); r != c.head_dim)
    fail<ModelError>(where, ": ", k, "rope.dimension_count ", r, " differs from the head dimension ", c.head_dim,
                     " (partial rotary embeddings are not supported)");
  const std::string scaling = f.get_string(k + "rope.scaling.type", "none");
  if (scaling != "none") fail<ModelError>(where, ": ", k, "rope.scaling.type '", scaling, "' is not supported yet");
  c.max_seq_len = get_int_or("context_length", 0);
  c.rope_theta = f.get_float(k + "rope.freq_base", 10000.0);
  c.norm_eps = f.get_float(k + "attention.layer_norm_rms_epsilon");
  c.rope_style = RopeStyle::kRotateHalf;  // after unpermute_rope_rows
  c.vocab = get_int_or("vocab_size", f.tensor("token_embd.weight").shape().front());
  c.tied_classifier = !f.has_tensor("output.weight");
  c.qkv_bias = false;
  c.bos_id = static_cast<int>(f.get_int("tokenizer.ggml.bos_token_id", -1));
  c.eos_id = static_cast<int>(f.get_int("tokenizer.ggml.eos_token_id", -1));
  c.validate(where);
  return c;
}

}  // namespace

Model load_gguf(const std::filesystem::path& path) {
  const GgufFile f(path);
  Model m;
  m.config = gguf_config(f);
  const ModelConfig& c = m.config;
  const std::int64_t D = c.hidden, V = c.vocab;

  // Each layer holds kLayerTensors tensors: block_count is bounded by the tensor index before
  // the layers are allocated, every other size by WeightPlan (tracer/weight_plan.hpp).
  constexpr std::size_t kLayerTensors = 9;
  if (static_cast<std::size_t>(c.n_layers) > f.tensors().size() / kLayerTensors)
    fail<ModelError>(path.string(), ": llama.block_count ", c.n_layers, " needs ", kLayerTensors, " tensors per layer, the file holds ",
                     f.tensors().size(), " tensors");
  WeightPlan plan;
  plan.matrix(m.embed, "token_embd.weight", V, D);
  m.layers.resize(c.n_layers);
  static constexpr LayerTensorNames kNames = {"attn_norm.weight", "attn_q.weight",   "attn_k.weight",
                                              "attn_v.weight",    "attn_output.weight", "ffn_norm.weight",
                                              "ffn_gate.weight",  "ffn_up.weight",    "ffn_down.weight"};
  for (int l = 0; l < c.n_layers; ++l) plan.layer(m.layers[l], "blk." + std::to_string(l) + ".", kNames, c);
  plan.vector(m.final_norm, "output_norm.weight", D);
  if (!c.tied_classifier) plan.matrix(m.classifier, "output.weight", V, D);
  plan.load([&](const std::string& name, const std::vector<std::int64_t>& shape) { f.check_shape(name, shape); },
            [&](const std::string& name, const std::vector<std::int64_t>& shape, float* dst) { f.read_f32(name, shape, dst); });
  for (LayerWeights& w : m.layers) {
    unpermute_rope_rows(w.wq, c.n_heads, c.head_dim);
    unpermute_rope_rows(w.wk, c.n_kv_heads, c.head_dim);
  }
  m.source = path.string() + "#xxh3:" + hex64(hash_file(path));
  return m;
}

}  // namespace kvsim
