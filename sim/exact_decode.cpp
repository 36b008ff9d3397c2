#include "sim/exact_decode.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace kvsim {

PromptCache prompt_cache(const ModelConfig& c, const KvCache& kv, int T) {
  KVSIM_CHECK(T >= 1 && T <= kv.length(), "prompt_cache: T ", T, " outside the cache's ", kv.length(), " positions");
  PromptCache p;
  p.T = T;
  p.stride = kv.capacity();
  const std::size_t n = static_cast<std::size_t>(c.n_kv_heads) * kv.capacity() * c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    p.keys.emplace_back(kv.keys(l), kv.keys(l) + n);
    p.values.emplace_back(kv.values(l), kv.values(l) + n);
  }
  return p;
}

void check_prompt_cache(const ModelConfig& c, const PromptCache& cache, const char* who) {
  if (cache.T < 1 || cache.stride < cache.T) fail<InputError>(who, ": bad prompt cache (T ", cache.T, ", stride ", cache.stride, ")");
  const std::size_t per_layer = static_cast<std::size_t>(c.n_kv_heads) * cache.stride * c.head_dim;
  if (cache.keys.size() != static_cast<std::size_t>(c.n_layers) || cache.values.size() != cache.keys.size())
    fail<InputError>(who, ": prompt cache has ", cache.keys.size(), " layers, the model ", c.n_layers);
  for (int l = 0; l < c.n_layers; ++l)
    if (cache.keys[l].size() != per_layer || cache.values[l].size() != per_layer)
      fail<InputError>(who, ": layer ", l, " keys/values hold ", cache.keys[l].size(), "/", cache.values[l].size(),
                       " floats, expected [", c.n_kv_heads, ", ", cache.stride, ", ", c.head_dim, "]");
}

ExactDecoder::ExactDecoder(const CpuForward& fwd, PromptCache cache, std::vector<int> cont)
    : fwd_(fwd), cache_(std::move(cache)), cont_(std::move(cont)) {
  const ModelConfig& c = fwd_.model().config;
  if (cont_.size() < 2)
    fail<InputError>("exact decode: needs at least 2 continuation tokens (x_T is predicted by prefill), got ",
                     cont_.size());
  check_prompt_cache(c, cache_, "exact decode");
  reference_ = run({}, &ref_logprob_);
}

ExactResult ExactDecoder::decode(std::span<const std::uint8_t> keep) const {
  const ModelConfig& c = fwd_.model().config;
  const std::size_t n = static_cast<std::size_t>(c.n_layers) * c.n_kv_heads * cache_.T;
  if (keep.size() != n)
    fail<InputError>("exact decode: keep mask of ", keep.size(), " flags, expected [", c.n_layers, ", ", c.n_kv_heads,
                     ", ", cache_.T, "]");
  if (std::all_of(keep.begin(), keep.end(), [](std::uint8_t k) { return k != 0; })) return reference_;
  return run(keep, nullptr);
}

ExactResult ExactDecoder::run(std::span<const std::uint8_t> keep, std::vector<double>* logprob_out) const {
  const ModelConfig& c = fwd_.model().config;
  const int T = cache_.T, M = static_cast<int>(cont_.size()), n = M - 1, d = c.head_dim, V = c.vocab;
  // The prompt's keys/values, then the continuation's, recomputed by the forward.
  KvCache kv(c, T + n);
  for (int l = 0; l < c.n_layers; ++l)
    for (int g = 0; g < c.n_kv_heads; ++g) {
      const std::size_t src = static_cast<std::size_t>(g) * cache_.stride * d;
      const std::size_t dst = static_cast<std::size_t>(g) * kv.capacity() * d;
      std::copy_n(cache_.keys[l].data() + src, static_cast<std::size_t>(T) * d, kv.keys(l) + dst);
      std::copy_n(cache_.values[l].data() + src, static_cast<std::size_t>(T) * d, kv.values(l) + dst);
    }
  kv.set_length(T);
  ForwardOptions fo;
  fo.keep = keep;
  fo.keep_len = keep.empty() ? 0 : T;
  const MatrixRM hidden = fwd_.forward(std::span(cont_).first(n), kv, fo);  // [n, D]
  const MatrixRM logits = fwd_.logits(hidden);                             // [n, V]

  ExactResult r;
  r.nll_pos.resize(n);
  r.kl_pos.assign(n, 0.0);
  if (logprob_out) logprob_out->resize(static_cast<std::size_t>(n) * V);
  std::vector<double> lp(V);
  for (int t = 0; t < n; ++t) {
    const float* z = logits.row(t).data();
    double mx = z[0];
    for (int v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(z[v]));
    double s = 0;
    for (int v = 0; v < V; ++v) s += std::exp(z[v] - mx);
    const double lse = mx + std::log(s);
    for (int v = 0; v < V; ++v) lp[v] = z[v] - lse;
    r.nll_pos[t] = -lp[cont_[t + 1]];
    if (logprob_out) std::copy(lp.begin(), lp.end(), logprob_out->begin() + static_cast<std::ptrdiff_t>(t) * V);
    if (!logprob_out) {  // a compressed decode: compare with the reference
      const double* ref = ref_logprob_.data() + static_cast<std::size_t>(t) * V;
      double kl = 0;
      for (int v = 0; v < V; ++v) kl += std::exp(ref[v]) * (ref[v] - lp[v]);
      r.kl_pos[t] = std::max(0.0, kl);
    }
    r.nll += r.nll_pos[t];
    r.kl += r.kl_pos[t];
  }
  r.nll /= n;
  r.kl /= n;
  r.delta_nll = logprob_out ? 0.0 : r.nll - reference_.nll;
  return r;
}

double ExactDecoder::flops_per_decode() const {
  const ModelConfig& c = fwd_.model().config;
  const double n = static_cast<double>(cont_.size()) - 1, ctx = cache_.T + n;
  const double per_token_layer = 2.0 * c.hidden * (c.q_dim() + 2.0 * c.kv_dim() + c.q_dim()) +
                                 2.0 * 3.0 * c.hidden * c.ffn_hidden + 4.0 * c.n_heads * ctx * c.head_dim;
  return n * (c.n_layers * per_token_layer + 2.0 * c.hidden * c.vocab);
}

std::size_t ExactDecoder::bytes() const {
  std::size_t n = 0;
  for (std::size_t l = 0; l < cache_.keys.size(); ++l) n += (cache_.keys[l].size() + cache_.values[l].size()) * sizeof(float);
  return n + ref_logprob_.size() * sizeof(double) + cont_.size() * sizeof(int);
}

std::vector<std::uint8_t> keep_mask(const Selection& s, int b) {
  const int L = s.n_layers(), Hkv = s.n_kv_heads(), T = s.T();
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(L) * Hkv * T, 0);
  for (int l = 0; l < L; ++l)
    for (int g = 0; g < Hkv; ++g) {
      std::uint8_t* row = keep.data() + (static_cast<std::size_t>(l) * Hkv + g) * T;
      for (std::int32_t i : s.kept(b, l, g)) row[i] = 1;
    }
  return keep;
}

void check_model_matches(const Model& model, const TraceReader& reader) {
  check_model_shape(model, reader);
  check_model_weights(model, reader, reader.read_w_o(0));
}

void check_model_shape(const Model& model, const TraceReader& reader) {
  const ModelConfig& c = model.config;
  const ModelInfo& m = reader.model();
  const std::string file = reader.path().string();
  if (c.n_layers != m.n_layers || c.n_heads != m.n_heads || c.n_kv_heads != m.n_kv_heads ||
      c.head_dim != m.head_dim || c.hidden != m.hidden || c.vocab != m.vocab ||
      rope_style_name(c.rope_style) != m.rope_style || c.rope_theta != m.rope_theta)
    fail<InputError>(file, ": recorded with another model shape (trace: ", m.n_layers, " layers, ", m.n_heads, "/",
                     m.n_kv_heads, " heads, head_dim ", m.head_dim, ", hidden ", m.hidden, ", vocab ", m.vocab,
                     "; model ", model.source, ": ", c.n_layers, " layers, ", c.n_heads, "/", c.n_kv_heads,
                     " heads, head_dim ", c.head_dim, ", hidden ", c.hidden, ", vocab ", c.vocab, ")");
}

void check_model_weights(const Model& model, const TraceReader& reader, const std::vector<float>& w_o) {
  const std::string file = reader.path().string();
  const MatrixRM& wo = model.layers[0].wo;
  if (w_o.size() != static_cast<std::size_t>(wo.size()) || !std::equal(w_o.begin(), w_o.end(), wo.data()))
    fail<InputError>(file, ": recorded with other weights than ", model.source, " (/model/w_o of layer 0 differs)");
}

ExactDecoder exact_decoder(const CpuForward& fwd, const TraceReader& reader, std::size_t prompt) {
  const int L = reader.model().n_layers;
  std::vector<std::vector<float>> keys(L), values(L);
  tbb::parallel_for(0, L, [&](int l) {
    LayerRecord rec = reader.read_layer(prompt, l);
    keys[l] = std::move(rec.keys);
    values[l] = std::move(rec.values);
  });
  return exact_decoder(fwd, reader, prompt, std::move(keys), std::move(values), reader.read_outputs(prompt));
}

ExactDecoder exact_decoder(const CpuForward& fwd, const TraceReader& reader, std::size_t prompt,
                           std::vector<std::vector<float>> keys, std::vector<std::vector<float>> values,
                           const PromptOutputs& outs) {
  const PromptMeta& meta = reader.prompts()[prompt];
  PromptCache cache;
  cache.T = meta.n_prompt;
  cache.stride = meta.n_prompt + meta.n_cont;
  cache.keys = std::move(keys);
  cache.values = std::move(values);
  std::vector<int> cont(outs.tokens.begin() + meta.n_prompt, outs.tokens.end());
  if (cont.size() < 2)
    fail<InputError>(reader.path().string(), ": prompt ", meta.id, " has ", cont.size(),
                     " continuation tokens; exact decoding needs at least 2");
  return ExactDecoder(fwd, std::move(cache), std::move(cont));
}

double exact_delta_nll(const ExactDecoder& decoder, const Selection& selection, int b) {
  return decoder.decode(keep_mask(selection, b)).delta_nll;
}

std::vector<ExactResult> exact_sweep(const ExactDecoder& decoder, const std::vector<Selection>& selections) {
  const int P = static_cast<int>(selections.size());
  const int B = P > 0 ? selections[0].n_budgets() : 0;
  std::vector<ExactResult> out(static_cast<std::size_t>(P) * B);
  tbb::parallel_for(0, P * B, [&](int pb) {
    const int p = pb / B, b = pb % B;
    out[pb] = decoder.decode(keep_mask(selections[p], b));
  });
  return out;
}

}  // namespace kvsim
