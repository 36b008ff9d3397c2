#include "sim/synthetic.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <tbb/parallel_for.h>

#include "core/error.hpp"
#include "core/matrix.hpp"
#include "core/rng.hpp"
#include "core/version.hpp"
#include "policies/prompt_tensors.hpp"
#include "traces/trace_writer.hpp"
#include "tracer/trace_output.hpp"

namespace kvsim {

ModelInfo synthetic_shape(const std::string& name) {
  ModelInfo m;
  m.arch = "llama", m.rope_style = "rotate_half", m.norm_eps = 1e-5;
  auto set = [&](int L, int H, int Hkv, int d, int D, int V, double theta) {
    m.n_layers = L, m.n_heads = H, m.n_kv_heads = Hkv, m.head_dim = d, m.hidden = D, m.vocab = V, m.rope_theta = theta;
  };
  if (name == "llama3-8b") set(32, 32, 8, 128, 4096, 128256, 500000.0);
  else if (name == "qwen2-7b") set(28, 28, 4, 128, 3584, 152064, 1000000.0);
  else if (name == "smollm2-135m") set(30, 9, 3, 64, 576, 49152, 100000.0);
  else if (name == "tiny") set(2, 4, 2, 16, 64, 256, 10000.0);
  else fail<InputError>("unknown synthetic shape '", name, "' (known: llama3-8b, qwen2-7b, smollm2-135m, tiny)");
  m.source = "synthetic:" + name;
  return m;
}

namespace {

// rotate_half RoPE of one head vector at position pos, in place.
void rope(float* x, int d, int pos, double theta) {
  const int half = d / 2;
  for (int p = 0; p < half; ++p) {
    const double ang = pos * std::pow(theta, -2.0 * p / d);
    const float c = static_cast<float>(std::cos(ang)), s = static_cast<float>(std::sin(ang));
    const float a = x[p], b = x[p + half];
    x[p] = a * c - b * s;
    x[p + half] = a * s + b * c;
  }
}

// The per-(layer, head) generator: shared directions and the query at any position.
struct HeadGen {
  int d;
  double theta;
  std::vector<float> u;    // sink / heavy-hitter direction, lowest-frequency pairs
  std::vector<float> loc;  // locality component, high-frequency pairs
  std::uint64_t seed;
  HeadGen(int d_, double theta_, std::uint64_t seed_) : d(d_), theta(theta_), u(d_, 0.f), loc(d_, 0.f), seed(seed_) {
    Rng rng(seed);
    const int half = d / 2, low = std::max(1, half / 8), high = half / 2;
    for (int p = half - low; p < half; ++p) u[p] = static_cast<float>(rng.normal()), u[p + half] = static_cast<float>(rng.normal());
    for (int p = 0; p < high; ++p) loc[p] = static_cast<float>(rng.normal()), loc[p + half] = static_cast<float>(rng.normal());
    auto normalise = [](std::vector<float>& v) {
      double n = 0;
      for (float x : v) n += x * x;
      for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
    };
    normalise(u), normalise(loc);
  }
  // Post-RoPE query of position pos.
  void query(int pos, float* out) const {
    Rng rng(derive_seed(seed, 0x51000000ull + static_cast<std::uint64_t>(pos)));
    // With keys k = w·r·u + 2r·loc + noise (r = d^¼), the logit q·k/√d gets w from u (the
    // token's weight: 6 for sinks, 2..4 for heavy hitters, 0 otherwise) and 4·cos-sum from
    // loc, while the noise cross terms stay below 1 whatever d is.
    const float r = std::pow(static_cast<float>(d), 0.25f);
    for (int e = 0; e < d; ++e) out[e] = r * u[e] + 2.0f * r * loc[e] + static_cast<float>(rng.normal());
    rope(out, d, pos, theta);
  }
};

}  // namespace

void check_synthetic_spec(const SyntheticSpec& spec) {
  const ModelInfo& m = spec.model;
  auto in_range = [](const char* name, std::int64_t v, std::int64_t lo, std::int64_t hi) {
    if (v < lo || v > hi) fail<InputError>("synthetic trace: ", name, " must be in [", lo, ", ", hi, "], got ", v);
  };
  in_range("prompt length T", spec.T, 1, kMaxSyntheticPrompt);
  in_range("continuation length M", spec.M, 0, kMaxSyntheticCont);
  in_range("window W", spec.W, 1, kMaxSyntheticPrompt);
  in_range("number of prompts", spec.n_prompts, 1, kMaxSyntheticPrompts);
  in_range("top-K", spec.topk, 1, m.vocab);
  in_range("colsum stride", spec.colsum_stride, 0, kMaxSyntheticPrompt);
  in_range("compression level", spec.compression_level, 0, 9);
  if (m.n_heads < 1 || m.n_kv_heads < 1 || m.n_heads % m.n_kv_heads != 0 || m.head_dim < 2 || m.head_dim % 2 != 0)
    fail<InputError>("synthetic trace: bad model shape H=", m.n_heads, " Hkv=", m.n_kv_heads, " d=", m.head_dim);
  // One layer's buffers in 64-bit: keys + values [Hkv, T+M, d], q_window [H, W, d], q_cont [H, M, d], colsum [H, T].
  const std::int64_t T = spec.T, M = spec.M, W = std::min(spec.W, spec.T), d = m.head_dim;
  const std::int64_t floats = 2 * m.n_kv_heads * (T + M) * d + m.n_heads * (W + M) * d + m.n_heads * T;
  if (floats * 4 > kMaxSyntheticLayerBytes)
    fail<InputError>("synthetic trace: one layer at T=", T, ", M=", M, " needs ", floats * 4 >> 20, " MiB (at most ",
                     kMaxSyntheticLayerBytes >> 20, " MiB)");
}

void write_synthetic_trace(const std::filesystem::path& path, const SyntheticSpec& spec,
                           const std::function<void(int)>& progress) {
  check_synthetic_spec(spec);
  const ModelInfo& m = spec.model;
  const int L = m.n_layers, H = m.n_heads, Hkv = m.n_kv_heads, G = H / Hkv, d = m.head_dim, D = m.hidden;
  RecordOptions record;
  record.window = spec.W, record.topk = spec.topk;
  const int T = spec.T, M = spec.M, W = record.window_for(T), N = T + M;
  const int stride = spec.colsum_stride > 0 ? spec.colsum_stride : (T <= 1024 ? 1 : 16);
  Rng wrng(derive_seed(spec.seed, 0xA11CEull));
  std::vector<float> w_o(static_cast<std::size_t>(L) * D * H * d);
  const float ws = 1.0f / std::sqrt(static_cast<float>(H * d));
  for (auto& x : w_o) x = ws * static_cast<float>(wrng.normal());
  const std::vector<float> final_norm(D, 1.0f);
  TraceProducer producer{kToolVersion, kGitSha, "synthetic", ""};
  WriterOptions wo;
  wo.compression_level = spec.compression_level, wo.overwrite = true;
  TraceWriter writer(path, m, producer, w_o, final_norm, wo);
  std::vector<float> keys, values, q_window, q_cont, colsum;
  for (int p = 0; p < spec.n_prompts; ++p) {
    const std::uint64_t pseed = derive_seed(spec.seed, static_cast<std::uint64_t>(p) + 1);
    PromptSpec prompt;
    prompt.n_prompt = T, prompt.truncated_from = T;
    prompt.task = "synthetic", prompt.source = m.source, prompt.sample_id = std::to_string(p);
    Rng trng(derive_seed(pseed, 7));
    prompt.tokens.resize(N);
    for (auto& t : prompt.tokens) t = static_cast<int>(trng.below(static_cast<std::uint64_t>(m.vocab)));
    trace_prompt(writer, prompt, static_cast<std::size_t>(p), record, [&](PromptSink& sink) {
      // Heavy hitters: ~3% of prompt tokens, shared by the heads of a layer.
      for (int l = 0; l < L; ++l) {
        const std::uint64_t lseed = derive_seed(pseed, 1000 + static_cast<std::uint64_t>(l));
        std::vector<float> weight(T, 0.0f);
        {
          Rng r(lseed);
          for (int i = 0; i < T; ++i) weight[i] = i < 4 ? 6.0f : (r.uniform() < 0.03 ? static_cast<float>(2.0 + 2.0 * r.uniform()) : 0.0f);
        }
        keys.assign(static_cast<std::size_t>(Hkv) * N * d, 0.0f);
        values.assign(keys.size(), 0.0f);
        q_window.assign(static_cast<std::size_t>(H) * W * d, 0.0f);
        q_cont.assign(static_cast<std::size_t>(H) * M * d, 0.0f);
        colsum.assign(static_cast<std::size_t>(H) * T, 0.0f);
        std::vector<HeadGen> gens;
        for (int h = 0; h < H; ++h) gens.emplace_back(d, m.rope_theta, derive_seed(lseed, 100 + static_cast<std::uint64_t>(h / G) * 64 + h % G));
        tbb::parallel_for(0, Hkv, [&](int g) {
          Rng r(derive_seed(lseed, 5000 + static_cast<std::uint64_t>(g)));
          const HeadGen& kg = gens[g * G];  // the group's key directions come from its first head
          const float rd = std::pow(static_cast<float>(d), 0.25f), sl = 2.0f * rd;
          for (int i = 0; i < N; ++i) {
            float* k = keys.data() + (static_cast<std::size_t>(g) * N + i) * d;
            float* v = values.data() + (static_cast<std::size_t>(g) * N + i) * d;
            const float su = i < T ? weight[i] * rd : 0.0f;
            for (int e = 0; e < d; ++e) {
              k[e] = su * kg.u[e] + sl * kg.loc[e] + static_cast<float>(r.normal());
              v[e] = static_cast<float>(r.normal());
            }
            rope(k, d, i, m.rope_theta);
          }
        });
        tbb::parallel_for(0, H, [&](int h) {
          const HeadGen& qg = gens[h];
          HeadGen mixed = gens[(h / G) * G];  // queries share the group's directions
          mixed.seed = qg.seed;
          for (int r = 0; r < W; ++r) mixed.query(T - W + r, q_window.data() + (static_cast<std::size_t>(h) * W + r) * d);
          for (int t = 0; t < M; ++t) mixed.query(T + t, q_cont.data() + (static_cast<std::size_t>(h) * M + t) * d);
          // Column sums from every stride-th prompt query (all of them when stride is 1).
          const float* k = keys.data() + static_cast<std::size_t>(h / G) * N * d;
          std::vector<float> q(d), row(T);
          float* cs = colsum.data() + static_cast<std::size_t>(h) * T;
          for (int pos = stride - 1; pos < T; pos += stride) {
            mixed.query(pos, q.data());
            causal_attention(q.data(), 1, pos, k, T, d, row.data());
            for (int i = 0; i <= pos; ++i) cs[i] += static_cast<float>(stride) * row[i];
          }
        });
        LayerView view{keys, values, q_window, q_cont, colsum, {}};  // value_wo_l1: the writer computes it
        sink.layer(l, view);
      }
      PromptOutputs out;  // tokens: those the prompt began with
      out.prompt_logprob.resize(T);
      for (int i = 1; i < T; ++i) out.prompt_logprob[i] = -static_cast<float>(4.0 * trng.uniform());
      out.cont_logprob.resize(M);
      out.cont_logsumexp.resize(M);
      out.cont_topk_ids.resize(static_cast<std::size_t>(M) * spec.topk);
      out.cont_topk_logits.resize(out.cont_topk_ids.size());
      for (int t = 0; t < M; ++t) {
        float logit = 10.0f;
        for (int k = 0; k < spec.topk; ++k) {
          out.cont_topk_ids[static_cast<std::size_t>(t) * spec.topk + k] = static_cast<std::int32_t>(trng.below(m.vocab));
          out.cont_topk_logits[static_cast<std::size_t>(t) * spec.topk + k] = (logit -= static_cast<float>(trng.uniform()));
        }
        out.cont_logsumexp[t] = 12.0f;
        out.cont_logprob[t] = -static_cast<float>(3.0 * trng.uniform());
      }
      sink.outputs(out);
    });
    if (progress) progress(p + 1);
  }
  writer.finish();
}

}  // namespace kvsim
