// llama2.c checkpoints (Karpathy's run.c, legacy "v0" export): a header of 7 int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 means
// an untied classifier follows), then fp32 tensors in this order:
//   token_embedding [V, D], rms_att [L, D], wq [L, D, D], wk [L, Hkv*d, D], wv [L, Hkv*d, D],
//   wo [L, D, D], rms_ffn [L, D], w1 [L, F, D], w2 [L, D, F], w3 [L, F, D], rms_final [D],
//   freq_cis_real [seq_len, d/2], freq_cis_imag [seq_len, d/2] (unused), wcls [V, D] if untied.
// RoPE rotates interleaved pairs (2i, 2i+1), rms_norm_eps is 1e-5, theta 10000.
#include <cstdint>
#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <vector>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "tracer/model.hpp"

namespace kvsim {

namespace {
constexpr std::uint32_t kLlama2cMagic = 0x616b3432;  // "ak42": newer exports (v1, v2)

class FloatCursor {
 public:
  FloatCursor(const std::vector<float>& data, std::string path) : data_(data), path_(std::move(path)) {}
  void read(float* dst, std::size_t n, const char* what) {
    if (pos_ + n > data_.size())
      fail<ModelError>(path_, ": truncated checkpoint while reading ", what);
    const float* src = data_.data() + pos_;
    for (std::size_t k = 0; k < n; ++k) dst[k] = src[k];
    pos_ += n;
  }
  void skip(std::size_t n) { pos_ += n; }
  std::size_t pos() const { return pos_; }

 private:
  const std::vector<float>& data_;
  std::string path_;
  std::size_t pos_ = 0;
};
}  // namespace

Model load_llama2c(const std::filesystem::path& bin) {
  const std::string path = bin.string();
  std::ifstream in(bin, std::ios::binary);
  if (!in) fail<ModelError>(path, ": cannot open checkpoint");
  std::int32_t header[7];
  in.read(reinterpret_cast<char*>(header), sizeof header);
  if (in.gcount() != sizeof header) fail<ModelError>(path, ": truncated checkpoint header (", in.gcount(), " bytes)");
  if (static_cast<std::uint32_t>(header[0]) == kLlama2cMagic)
    fail<ModelError>(path, ": llama2.c export version ", header[1],
                     " is not supported (kvsim reads the legacy v0 export; re-export with --version 0)");

  ModelConfig c;
  c.arch = "llama";
  c.hidden = header[0];
  c.ffn_hidden = header[1];
  c.n_layers = header[2];
  c.n_heads = header[3];
  c.n_kv_heads = header[4];
  c.tied_classifier = header[5] > 0;
  if (header[5] == INT32_MIN) fail<ModelError>(path, ": bad vocab_size ", header[5]);  // -INT32_MIN overflows
  c.vocab = header[5] > 0 ? header[5] : -header[5];
  c.max_seq_len = header[6];
  c.rope_style = RopeStyle::kInterleaved;
  c.rope_theta = 10000.0;
  c.norm_eps = 1e-5;
  c.bos_id = 1;
  c.eos_id = 2;
  if (c.n_heads <= 0 || c.hidden % c.n_heads != 0)
    fail<ModelError>(path, ": header is not a llama2.c checkpoint (dim ", c.hidden, ", n_heads ", c.n_heads, ")");
  c.head_dim = c.hidden / c.n_heads;
  c.validate(path);
  if (c.max_seq_len <= 0 || c.max_seq_len > (1 << 24)) fail<ModelError>(path, ": implausible seq_len ", c.max_seq_len);

  const std::size_t D = c.hidden, F = c.ffn_hidden, L = c.n_layers, V = c.vocab;
  const std::size_t kvd = c.kv_dim(), half_d = c.head_dim / 2;
  // Sums of products of header ints (up to 2^93): checked, so that a forged header cannot wrap
  // the size round to the file's length (docs/fuzzing.md).
  std::size_t expected = 0;
  bool overflow = false;
  auto term = [&](std::initializer_list<std::size_t> factors) {
    std::size_t p = 1;
    for (std::size_t f : factors) overflow |= __builtin_mul_overflow(p, f, &p);
    overflow |= __builtin_add_overflow(expected, p, &expected);
  };
  term({V, D}), term({L, D}), term({L, D, D}), term({2, L, kvd, D}), term({L, D, D}), term({L, D});
  term({3, L, F, D}), term({D}), term({2, static_cast<std::size_t>(c.max_seq_len), half_d});
  if (!c.tied_classifier) term({V, D});
  if (overflow || expected > (SIZE_MAX - sizeof header) / sizeof(float))
    fail<ModelError>(path, ": implausible header (dim ", D, ", hidden_dim ", F, ", n_layers ", L, ", vocab ", V,
                     "): its weights would exceed 2^64 bytes");
  in.seekg(0, std::ios::end);
  const std::size_t file_bytes = static_cast<std::size_t>(in.tellg());
  const std::size_t expected_bytes = sizeof header + expected * sizeof(float);
  if (file_bytes < expected_bytes)
    fail<ModelError>(path, ": truncated checkpoint: ", file_bytes, " bytes, the header implies ", expected_bytes);
  if (file_bytes > expected_bytes)
    fail<ModelError>(path, ": ", file_bytes - expected_bytes, " unexpected trailing bytes (not a legacy v0 export?)");
  std::vector<float> data(expected);
  in.seekg(sizeof header);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(expected * sizeof(float)));
  if (static_cast<std::size_t>(in.gcount()) != expected * sizeof(float)) fail<ModelError>(path, ": read error");

  Model m;
  m.config = c;
  m.source = path + "#xxh3:" + hex64(hash_bytes(std::as_bytes(std::span(data))));
  FloatCursor cur(data, path);
  m.embed.resize(V, D);
  cur.read(m.embed.data(), V * D, "token_embedding");
  m.layers.resize(L);
  for (auto& w : m.layers) w.attn_norm.resize(D), cur.read(w.attn_norm.data(), D, "rms_att");
  for (auto& w : m.layers) w.wq.resize(D, D), cur.read(w.wq.data(), D * D, "wq");
  for (auto& w : m.layers) w.wk.resize(kvd, D), cur.read(w.wk.data(), kvd * D, "wk");
  for (auto& w : m.layers) w.wv.resize(kvd, D), cur.read(w.wv.data(), kvd * D, "wv");
  for (auto& w : m.layers) w.wo.resize(D, D), cur.read(w.wo.data(), D * D, "wo");
  for (auto& w : m.layers) w.ffn_norm.resize(D), cur.read(w.ffn_norm.data(), D, "rms_ffn");
  for (auto& w : m.layers) w.w_gate.resize(F, D), cur.read(w.w_gate.data(), F * D, "w1");
  for (auto& w : m.layers) w.w_down.resize(D, F), cur.read(w.w_down.data(), D * F, "w2");
  for (auto& w : m.layers) w.w_up.resize(F, D), cur.read(w.w_up.data(), F * D, "w3");
  m.final_norm.resize(D);
  cur.read(m.final_norm.data(), D, "rms_final");
  cur.skip(2 * c.max_seq_len * half_d);  // precomputed freq_cis: recomputed by the forward pass
  if (!c.tied_classifier) {
    m.classifier.resize(V, D);
    cur.read(m.classifier.data(), V * D, "wcls");
  }
  return m;
}

}  // namespace kvsim
