// The CPU forward pass against a naive second implementation, and the real checkpoints
// against each other (llama2.c .bin vs HF safetensors of stories260K).
#include <catch2/catch.hpp>

#include <tbb/global_control.h>

#include <array>
#include <cstring>
#include <fstream>
#include <functional>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "support/reference_forward.hpp"
#include "support/shared.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/model.hpp"

using namespace kvsim;

namespace {

ModelConfig small_config(int heads, int kv_heads, RopeStyle style, bool bias, bool tied) {
  ModelConfig c;
  c.n_layers = 2;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = 8;
  c.hidden = 24;
  c.ffn_hidden = 40;
  c.vocab = 50;
  c.max_seq_len = 256;
  c.rope_style = style;
  c.qkv_bias = bias;
  c.tied_classifier = tied;
  c.rope_theta = 10000.0;
  return c;
}

std::vector<int> random_tokens(int n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& x : t) x = static_cast<int>(rng.below(vocab));
  return t;
}

double max_abs_diff(const MatrixRM& a, const std::vector<std::vector<float>>& b) {
  double m = 0;
  for (int r = 0; r < a.rows(); ++r)
    for (int c = 0; c < a.cols(); ++c) m = std::max(m, std::abs(static_cast<double>(a(r, c)) - b[r][c]));
  return m;
}

}  // namespace

TEST_CASE("forward: batched prefill equals the naive reference", "[forward]") {
  struct Case {
    int heads, kv_heads;
    RopeStyle style;
    bool bias, tied;
  };
  // GQA group sizes 1, 2 and 3 (not a power of two), both RoPE conventions, Qwen2-style
  // biases, tied and untied classifiers.
  for (Case cs : {Case{4, 4, RopeStyle::kInterleaved, false, true}, Case{4, 2, RopeStyle::kRotateHalf, false, false},
                  Case{6, 2, RopeStyle::kRotateHalf, true, true}, Case{3, 1, RopeStyle::kInterleaved, true, false}}) {
    Model m = random_model(small_config(cs.heads, cs.kv_heads, cs.style, cs.bias, cs.tied), 7);
    const auto tokens = random_tokens(150, m.config.vocab, 3);  // > one 64-row query block, partial last block
    CpuForward fwd(m);
    KvCache cache(m.config, 150);
    const MatrixRM logits = fwd.logits(fwd.forward(tokens, cache));
    const auto ref = test::reference_forward(m, tokens);
    INFO("heads " << cs.heads << " kv " << cs.kv_heads << " bias " << cs.bias << " tied " << cs.tied);
    CHECK(max_abs_diff(logits, ref.logits) < 2e-4);
    // Post-RoPE keys in the cache, [Hkv, T, d], against the reference's [T][Hkv*d].
    const int d = m.config.head_dim;
    double kdiff = 0;
    for (int l = 0; l < m.config.n_layers; ++l)
      for (int g = 0; g < m.config.n_kv_heads; ++g)
        for (int t = 0; t < 150; ++t)
          for (int i = 0; i < d; ++i)
            kdiff = std::max(kdiff, static_cast<double>(std::abs(cache.keys(l)[(g * 150 + t) * d + i] - ref.keys[l][t][g * d + i])));
    CHECK(kdiff < 1e-4);
  }
}

TEST_CASE("forward: attention column sums over prompt queries match the reference", "[forward]") {
  Model m = random_model(small_config(6, 2, RopeStyle::kRotateHalf, false, true), 11);
  const int n = 140, T = 100;
  const auto tokens = random_tokens(n, m.config.vocab, 5);
  const auto ref = test::reference_forward(m, tokens);
  CpuForward fwd(m);
  KvCache cache(m.config, n);
  ForwardOptions opt;
  opt.colsum_len = T;
  std::vector<std::vector<float>> colsum(m.config.n_layers);
  fwd.forward(tokens, cache, opt, [&](const LayerActivations& a) {
    colsum[a.layer].assign(a.attn_colsum, a.attn_colsum + static_cast<std::size_t>(m.config.n_heads) * T);
  });
  for (int l = 0; l < m.config.n_layers; ++l)
    for (int h = 0; h < m.config.n_heads; ++h) {
      double total = 0;
      for (int i = 0; i < T; ++i) {
        double expect = 0;
        for (int q = i; q < T; ++q) expect += ref.probs[l][h][q * n + i];
        REQUIRE(colsum[l][h * T + i] == Approx(expect).margin(1e-5));
        total += colsum[l][h * T + i];
      }
      // Each of the T prompt queries distributes probability 1 over prompt keys.
      CHECK(total == Approx(T).epsilon(1e-5));
    }
}

TEST_CASE("forward: incremental decoding equals one batched pass", "[forward]") {
  Model m = random_model(small_config(6, 3, RopeStyle::kInterleaved, true, false), 13);
  const auto tokens = random_tokens(90, m.config.vocab, 9);
  CpuForward fwd(m);
  KvCache whole(m.config, 90);
  const MatrixRM all = fwd.logits(fwd.forward(tokens, whole));
  KvCache inc(m.config, 90);
  fwd.forward(std::span(tokens).first(70), inc);
  for (int t = 70; t < 90; ++t) {
    const MatrixRM step = fwd.logits(fwd.forward(std::span(tokens).subspan(t, 1), inc));
    REQUIRE((step.row(0) - all.row(t)).cwiseAbs().maxCoeff() < 1e-4);
  }
}

TEST_CASE("forward: the same result for any thread count", "[forward]") {
  Model m = random_model(small_config(6, 2, RopeStyle::kRotateHalf, false, true), 17);
  const auto tokens = random_tokens(300, m.config.vocab, 1);
  auto run = [&](int threads) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    CpuForward fwd(m);
    KvCache cache(m.config, 300);
    return fwd.logits(fwd.forward(tokens, cache));
  };
  const MatrixRM a = run(1), b = run(2);
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0);
}

namespace {

// Random x [n, in], w [out, in] (same seed, same values), and y = product(x, w) checked
// against Eigen's product; then every row of y is checked to have the same bits when computed
// alone, and the whole y when computed on one thread.
void check_product(int n, int out, int in, Rng& rng, const std::function<void(const MatrixRM&, const MatrixRM&, MatrixRM&)>& product) {
  MatrixRM x(n, in), w(out, in), y;
  for (int i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  for (int i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(rng.normal());
  const MatrixRM ref = x * w.transpose();
  product(x, w, y);
  CHECK((y - ref).cwiseAbs().maxCoeff() < 1e-4f);
  for (int t = 0; t < n; ++t) {
    MatrixRM alone;
    product(x.middleRows(t, 1), w, alone);
    INFO("row " << t << " of " << n);
    CHECK(std::memcmp(alone.data(), y.row(t).data(), sizeof(float) * out) == 0);
  }
  MatrixRM one;
  {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
    product(x, w, one);
  }
  CHECK(std::memcmp(one.data(), y.data(), sizeof(float) * y.size()) == 0);
}

}  // namespace

TEST_CASE("linear: equals Eigen's product, and a row's bits do not depend on the batch, tiles or threads",
          "[forward]") {
  Rng rng(11);
  // Remainders everywhere: inner 37, outputs not a multiple of the panel (70, 1000: several
  // column tiles), rows not a multiple of the register block or the row tile (13, 250).
  for (auto [n, out, in] : {std::array{13, 70, 37}, std::array{250, 1000, 96}, std::array{3, 5, 600}})
    check_product(n, out, in, rng, [](const MatrixRM& x, const MatrixRM& w, MatrixRM& y) { linear(x, w, y); });
}

TEST_CASE("linear_serial: the same bits as linear, into a strided output", "[forward]") {
  Rng rng(12);
  for (auto [n, out, in] : {std::array{13, 70, 37}, std::array{250, 1000, 96}, std::array{100, 64, 4096}}) {
    MatrixRM x(n, in), w(out, in), y;
    for (int i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
    for (int i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(rng.normal());
    const PackedWeights packed(w);
    linear(x, packed, y);
    MatrixRM wide = MatrixRM::Constant(n, out + 3, 7.0f);  // row stride out + 3: the 3 extra columns stay 7
    linear_serial(x.data(), in, n, packed, wide.data(), out + 3);
    INFO(n << " x " << in << " times " << out << " x " << in);
    CHECK(wide.rightCols(3).cwiseEqual(7.0f).all());
    const MatrixRM left = wide.leftCols(out);
    CHECK(std::memcmp(left.data(), y.data(), sizeof(float) * y.size()) == 0);
  }
}

TEST_CASE("linear_rowwise: equals Eigen's product, and a row's bits do not depend on the batch or threads",
          "[forward]") {
  Rng rng(9);
  // Sizes that leave remainders everywhere: inner 37 (not a packet multiple), 70 outputs (not
  // a multiple of the tile or the register block), 13 rows (not a multiple of the row block).
  for (auto [n, out, in] : {std::array{13, 70, 37}, std::array{9, 96, 64}})
    check_product(n, out, in, rng, linear_rowwise);
}

TEST_CASE("stories260K: llama2.c and safetensors checkpoints give the same logits", "[forward][shared]") {
  const auto bin = test::shared_path("models/stories260K/stories260K.bin");
  const auto hf = test::shared_path("models/stories260K-hf");
  KVSIM_REQUIRE_SHARED(bin);
  KVSIM_REQUIRE_SHARED(hf);
  const Model a = load_model(bin), b = load_model(hf);
  CHECK(a.config.rope_style == RopeStyle::kInterleaved);
  CHECK(b.config.rope_style == RopeStyle::kRotateHalf);
  CHECK(a.config.n_kv_heads == 4);
  CHECK(b.config.n_kv_heads == 4);
  auto tokens = random_tokens(512, 512, 21);
  tokens[0] = 1;  // BOS
  CpuForward fa(a), fb(b);
  KvCache ca(a.config, 512), cb(b.config, 512);
  const MatrixRM la = fa.logits(fa.forward(tokens, ca)), lb = fb.logits(fb.forward(tokens, cb));
  const double diff = (la - lb).cwiseAbs().maxCoeff();
  INFO("max |Δlogit| = " << diff);
  CHECK(diff < 1e-4);
}

TEST_CASE("model loading: bad checkpoints give one clear error", "[forward][errors]") {
  test::TempDir tmp;
  SECTION("missing path") {
    CHECK_THROWS_WITH(load_model(tmp / "nope.bin"), Catch::Contains("nope.bin") && Catch::Contains("no such file"));
  }
  SECTION("unknown architecture") {
    std::filesystem::create_directories(tmp / "gpt2");
    std::ofstream(tmp / "gpt2" / "config.json") << R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 768})";
    CHECK_THROWS_AS(load_model(tmp / "gpt2"), ModelError);
    CHECK_THROWS_WITH(load_model(tmp / "gpt2"), Catch::Contains("config.json") && Catch::Contains("GPT2LMHeadModel"));
  }
  SECTION("config missing a field") {
    std::filesystem::create_directories(tmp / "c");
    std::ofstream(tmp / "c" / "config.json") << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})";
    CHECK_THROWS_WITH(load_hf_config(tmp / "c" / "config.json"), Catch::Contains("intermediate_size"));
  }
  SECTION("truncated llama2.c checkpoint") {
    const auto bin = test::shared_path("models/stories260K/stories260K.bin");
    KVSIM_REQUIRE_SHARED(bin);
    std::ifstream in(bin, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(tmp / "cut.bin", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    CHECK_THROWS_AS(load_model(tmp / "cut.bin"), ModelError);
    CHECK_THROWS_WITH(load_model(tmp / "cut.bin"), Catch::Contains("cut.bin") && Catch::Contains("truncated"));
  }
  SECTION("truncated safetensors") {
    const auto hf = test::shared_path("models/stories260K-hf");
    KVSIM_REQUIRE_SHARED(hf);
    std::filesystem::create_directories(tmp / "hf");
    std::filesystem::copy_file(hf / "config.json", tmp / "hf" / "config.json");
    std::ifstream in(hf / "model.safetensors", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(tmp / "hf" / "model.safetensors", std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 1000));
    CHECK_THROWS_WITH(load_model(tmp / "hf"), Catch::Contains("model.safetensors") && Catch::Contains("truncated"));
  }
}

TEST_CASE("model loading: the SmolLM2-135M config", "[forward][shared]") {
  const auto cfg = test::shared_path("models/smollm2-135m-tokenizer/config.json");
  KVSIM_REQUIRE_SHARED(cfg);
  const ModelConfig c = load_hf_config(cfg);
  CHECK(c.n_layers == 30);
  CHECK(c.n_heads == 9);
  CHECK(c.n_kv_heads == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.hidden == 576);
  CHECK(c.ffn_hidden == 1536);
  CHECK(c.vocab == 49152);
  CHECK(c.rope_theta == 100000.0);
  CHECK(c.tied_classifier);
  CHECK(c.rope_style == RopeStyle::kRotateHalf);
}
