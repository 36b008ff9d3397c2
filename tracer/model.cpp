#include "tracer/model.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace kvsim {

const char* rope_style_name(RopeStyle s) {
  return s == RopeStyle::kInterleaved ? "interleaved" : "rotate_half";
}

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int v, const char* name) {
    if (v <= 0) fail<ModelError>(where, ": ", name, " must be positive, got ", v);
  };
  positive(n_layers, "n_layers");
  positive(n_heads, "n_heads");
  positive(n_kv_heads, "n_kv_heads");
  positive(head_dim, "head_dim");
  positive(hidden, "hidden");
  positive(ffn_hidden, "ffn_hidden");
  positive(vocab, "vocab");
  if (n_heads % n_kv_heads != 0)
    fail<ModelError>(where, ": n_heads ", n_heads, " is not a multiple of n_kv_heads ", n_kv_heads);
  if (head_dim % 2 != 0) fail<ModelError>(where, ": head_dim ", head_dim, " must be even for RoPE");
  // q_dim() (and kv_dim(), not larger) is an int product; a shape whose product overflows is corrupt.
  if (static_cast<std::int64_t>(n_heads) * head_dim > std::numeric_limits<int>::max())
    fail<ModelError>(where, ": n_heads ", n_heads, " * head_dim ", head_dim, " is out of range");
  if (!(norm_eps > 0) || !(rope_theta > 0))
    fail<ModelError>(where, ": norm_eps and rope_theta must be positive");
}

Model load_model(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail<ModelError>(path.string(), ": no such file or directory");
  if (std::filesystem::is_directory(path)) return load_hf(path);
  if (path.extension() == ".json" && path.filename() == "config.json") return load_hf(path.parent_path());
  if (path.extension() == ".gguf") return load_gguf(path);
  return load_llama2c(path);
}

namespace {
void fill_normal(MatrixRM& m, Rng& rng, double scale) {
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal() * scale);
}
void fill_normal(VectorF& v, Rng& rng, double scale) {
  for (Eigen::Index i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rng.normal() * scale);
}
}  // namespace

Model random_model(const ModelConfig& config, std::uint64_t seed) {
  config.validate("random model");
  Model m;
  m.config = config;
  m.source = "random(seed=" + std::to_string(seed) + ")";
  Rng rng(seed);
  const int D = config.hidden, F = config.ffn_hidden, V = config.vocab;
  const int qd = config.q_dim(), kvd = config.kv_dim();
  m.embed.resize(V, D);
  fill_normal(m.embed, rng, 1.0);
  for (int l = 0; l < config.n_layers; ++l) {
    LayerWeights w;
    w.attn_norm = VectorF::Ones(D);
    w.ffn_norm = VectorF::Ones(D);
    w.wq.resize(qd, D);
    w.wk.resize(kvd, D);
    w.wv.resize(kvd, D);
    w.wo.resize(D, qd);
    w.w_gate.resize(F, D);
    w.w_up.resize(F, D);
    w.w_down.resize(D, F);
    for (MatrixRM* mat : {&w.wq, &w.wk, &w.wv, &w.w_gate, &w.w_up}) fill_normal(*mat, rng, 1.0 / std::sqrt(D));
    fill_normal(w.wo, rng, 1.0 / std::sqrt(qd));
    fill_normal(w.w_down, rng, 1.0 / std::sqrt(F));
    if (config.qkv_bias) {
      w.bq.resize(qd);
      w.bk.resize(kvd);
      w.bv.resize(kvd);
      fill_normal(w.bq, rng, 0.1);
      fill_normal(w.bk, rng, 0.1);
      fill_normal(w.bv, rng, 0.1);
    }
    m.layers.push_back(std::move(w));
  }
  m.final_norm = VectorF::Ones(D);
  if (!config.tied_classifier) {
    m.classifier.resize(V, D);
    fill_normal(m.classifier, rng, 1.0 / std::sqrt(D));
  }
  return m;
}

}  // namespace kvsim
