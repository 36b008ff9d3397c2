// GGUF: dequantization of each supported block type against hand-built blocks, a
// random-weight model written as GGUF (q/k rows permuted as llama.cpp's converter does) and
// read back, and the errors of truncated, unsupported and incomplete files.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/half.hpp"
#include "support/gguf_writer.hpp"
#include "support/trace_fixture.hpp"
#include "support/shared.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/gguf.hpp"
#include "tracer/model.hpp"
#include "tracer/tokenizer.hpp"

using namespace kvsim;
using test::GgufWriter;

namespace {

void put_f16(std::vector<std::uint8_t>& b, std::size_t at, float v) {
  const half_bits h = float_to_half(v);
  std::memcpy(b.data() + at, &h, 2);
}

std::vector<float> dequant(GgmlType t, const std::vector<std::uint8_t>& block) {
  const std::size_t n = block.size() / ggml_block_bytes(t) * ggml_block_elements(t);
  std::vector<float> out(n);
  dequantize(t, reinterpret_cast<const std::byte*>(block.data()), out.data(), n);
  return out;
}

}  // namespace

TEST_CASE("gguf: F32, F16 and BF16 elements convert exactly", "[gguf]") {
  const float f32[3] = {1.5f, -0.25f, 3e-3f};
  std::vector<std::uint8_t> b(12);
  std::memcpy(b.data(), f32, 12);
  CHECK(dequant(GgmlType::kF32, b) == std::vector<float>{1.5f, -0.25f, 3e-3f});
  // fp16 0x3C00 = 1, 0xC000 = −2, 0x3800 = 0.5, 0x7BFF = 65504 (largest finite).
  const std::vector<std::uint8_t> f16 = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0xFF, 0x7B};
  CHECK(dequant(GgmlType::kF16, f16) == std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f});
  // bf16 0x3F80 = 1, 0xC040 = −3, 0x3E00 = 0.125.
  const std::vector<std::uint8_t> bf16 = {0x80, 0x3F, 0x40, 0xC0, 0x00, 0x3E};
  CHECK(dequant(GgmlType::kBF16, bf16) == std::vector<float>{1.0f, -3.0f, 0.125f});
}

TEST_CASE("gguf: Q8_0 block is d·q", "[gguf]") {
  std::vector<std::uint8_t> b(34);
  put_f16(b, 0, 0.5f);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(j * 8 - 128));
  const auto y = dequant(GgmlType::kQ8_0, b);
  CHECK(y[0] == -64.0f);  // q = −128
  CHECK(y[16] == 0.0f);   // q = 0
  CHECK(y[31] == 60.0f);  // q = 120
  for (int j = 0; j < 32; ++j) CHECK(y[j] == 0.5f * static_cast<float>(j * 8 - 128));
}

TEST_CASE("gguf: Q4_0 block is d·(q − 8), low nibbles first", "[gguf]") {
  std::vector<std::uint8_t> b(18);
  put_f16(b, 0, 2.0f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
  const auto y = dequant(GgmlType::kQ4_0, b);
  CHECK(y[0] == -16.0f);   // low nibble of byte 0: 0
  CHECK(y[15] == 14.0f);   // low nibble of byte 15: 15
  CHECK(y[16] == 14.0f);   // high nibble of byte 0: 15
  CHECK(y[31] == -16.0f);  // high nibble of byte 15: 0
  for (int j = 0; j < 16; ++j) {
    CHECK(y[j] == 2.0f * static_cast<float>(j - 8));
    CHECK(y[j + 16] == 2.0f * static_cast<float>(7 - j));
  }
}

TEST_CASE("gguf: Q4_1 block is d·q + m", "[gguf]") {
  std::vector<std::uint8_t> b(40);  // two blocks
  put_f16(b, 0, 0.5f);
  put_f16(b, 2, -1.0f);
  put_f16(b, 20, 0.25f);
  put_f16(b, 22, 3.0f);
  for (int j = 0; j < 16; ++j) {
    b[4 + j] = static_cast<std::uint8_t>(j | (3 << 4));
    b[24 + j] = static_cast<std::uint8_t>(15 - j);
  }
  const auto y = dequant(GgmlType::kQ4_1, b);
  REQUIRE(y.size() == 64);
  CHECK(y[0] == -1.0f);
  CHECK(y[15] == 6.5f);    // 0.5·15 − 1
  CHECK(y[16] == 0.5f);    // 0.5·3 − 1
  CHECK(y[32] == 6.75f);   // 0.25·15 + 3
  CHECK(y[63] == 3.0f);    // high nibble 0
  for (int j = 0; j < 16; ++j) {
    CHECK(y[j] == 0.5f * static_cast<float>(j) - 1.0f);
    CHECK(y[j + 16] == 0.5f);
    CHECK(y[32 + j] == 0.25f * static_cast<float>(15 - j) + 3.0f);
  }
}

TEST_CASE("gguf: Q4_K super-block: 6-bit packed scales and mins, d·sc·q − dmin·m", "[gguf]") {
  // Sub-block scales and mins, the upper four of each above 15 so the 2 high bits stored
  // in bytes 0..7 matter.
  const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63};
  const int mn[8] = {0, 1, 2, 3, 18, 40, 5, 63};
  std::vector<std::uint8_t> b(144);
  put_f16(b, 0, 1.0f);   // d
  put_f16(b, 2, 0.5f);   // dmin
  std::uint8_t* s = b.data() + 4;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<std::uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
  }
  // Quant of element e: sub-block e / 32 and position l = e % 32; sub-blocks 2k and 2k+1
  // share qs bytes 32k..32k+31 (low and high nibble).
  auto q_of = [](int e) { return (e * 5 + 3) % 16; };
  std::uint8_t* qs = b.data() + 16;
  for (int e = 0; e < 256; ++e) {
    const int sub = e / 32, l = e % 32;
    qs[32 * (sub / 2) + l] |= static_cast<std::uint8_t>(q_of(e) << (sub % 2 ? 4 : 0));
  }
  const auto y = dequant(GgmlType::kQ4_K, b);
  REQUIRE(y.size() == 256);
  CHECK(y[0] == 3.0f);                // 1·1·3 − 0.5·0
  CHECK(y[32] == 2.0f * 3 - 0.5f);    // e=32: q = 163 % 16 = 3, sc 2, m 1
  CHECK(y[128] == 17.0f * 3 - 9.0f);  // e=128: q = 643 % 16 = 3, sc 17, m 18
  CHECK(y[255] == 63.0f * 14 - 31.5f);  // e=255: q = 1278 % 16 = 14, sc 63, m 63
  for (int e = 0; e < 256; ++e) {
    INFO("element " << e);
    CHECK(y[e] == 1.0f * static_cast<float>(sc[e / 32]) * static_cast<float>(q_of(e)) -
                      0.5f * static_cast<float>(mn[e / 32]));
  }
}

TEST_CASE("gguf: Q6_K super-block: 4+2-bit quants, int8 scales per 16, d·scale·(q − 32)", "[gguf]") {
  std::vector<std::uint8_t> b(210);
  std::uint8_t* ql = b.data();
  std::uint8_t* qh = b.data() + 128;
  auto* scales = reinterpret_cast<std::int8_t*>(b.data() + 192);
  put_f16(b, 208, 0.25f);
  for (int i = 0; i < 16; ++i) scales[i] = static_cast<std::int8_t>(i % 2 ? -(i + 1) : i + 1);
  auto q_of = [](int e) { return (e * 7 + 5) % 64; };
  // Element e: half h = e / 128, r = e % 128, quarter s = r / 32, l = r % 32. Low 4 bits in
  // ql[64h + l + 32(s & 1)] (low nibble for s < 2, high for s >= 2), high 2 bits at bit 2s
  // of qh[32h + l], scale index 8h + 2s + l / 16.
  auto scale_of = [&](int e) {
    const int h = e / 128, r = e % 128, s = r / 32, l = r % 32;
    return scales[8 * h + 2 * s + l / 16];
  };
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, s = r / 32, l = r % 32, q = q_of(e);
    ql[64 * h + l + 32 * (s & 1)] |= static_cast<std::uint8_t>((q & 0x0F) << (s >= 2 ? 4 : 0));
    qh[32 * h + l] |= static_cast<std::uint8_t>((q >> 4) << (2 * s));
  }
  const auto y = dequant(GgmlType::kQ6_K, b);
  REQUIRE(y.size() == 256);
  CHECK(y[0] == 0.25f * 1 * (5 - 32));     // scale[0] = 1, q = 5
  CHECK(y[16] == 0.25f * -2 * (53 - 32));  // scale[1] = −2, q = 117 % 64 = 53
  CHECK(y[32] == 0.25f * 3 * (37 - 32));   // scale[2] = 3, q = 229 % 64 = 37
  CHECK(y[255] == 0.25f * -16 * (62 - 32));  // scale[15] = −16, q = 1790 % 64 = 62
  for (int e = 0; e < 256; ++e) {
    INFO("element " << e);
    CHECK(y[e] == 0.25f * static_cast<float>(scale_of(e)) * static_cast<float>(q_of(e) - 32));
  }
}

namespace {

// The model's weights as a llama-architecture GGUF, fp32, with attn_q/attn_k rows permuted
// as llama.cpp's converter stores them (HF row j·d/2 + i of a head goes to row 2i + j).
// `c` is the metadata written (default: the model's own config).
GgufWriter llama_gguf(const Model& m, const ModelConfig* meta = nullptr) {
  const ModelConfig& c = meta ? *meta : m.config;
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", c.n_layers);
  w.add_u32("llama.context_length", c.max_seq_len);
  w.add_u32("llama.embedding_length", c.hidden);
  w.add_u32("llama.feed_forward_length", c.ffn_hidden);
  w.add_u32("llama.attention.head_count", c.n_heads);
  w.add_u32("llama.attention.head_count_kv", c.n_kv_heads);
  w.add_f32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
  w.add_u32("llama.rope.dimension_count", c.head_dim);
  w.add_u32("general.alignment", 32);
  auto permuted = [&](const MatrixRM& hf, int heads) {
    MatrixRM g(hf.rows(), hf.cols());
    const int d = c.head_dim;
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d / 2; ++i)
        for (int j = 0; j < 2; ++j) g.row(h * d + 2 * i + j) = hf.row(h * d + j * (d / 2) + i);
    return g;
  };
  auto mat = [&](const std::string& name, const MatrixRM& x) {
    w.add_f32_tensor(name, {static_cast<std::uint64_t>(x.cols()), static_cast<std::uint64_t>(x.rows())}, x.data());
  };
  auto vec = [&](const std::string& name, const VectorF& x) {
    w.add_f32_tensor(name, {static_cast<std::uint64_t>(x.size())}, x.data());
  };
  mat("token_embd.weight", m.embed);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const LayerWeights& L = m.layers[l];
    vec(p + "attn_norm.weight", L.attn_norm);
    mat(p + "attn_q.weight", permuted(L.wq, c.n_heads));
    mat(p + "attn_k.weight", permuted(L.wk, c.n_kv_heads));
    mat(p + "attn_v.weight", L.wv);
    mat(p + "attn_output.weight", L.wo);
    vec(p + "ffn_norm.weight", L.ffn_norm);
    mat(p + "ffn_gate.weight", L.w_gate);
    mat(p + "ffn_up.weight", L.w_up);
    mat(p + "ffn_down.weight", L.w_down);
  }
  vec("output_norm.weight", m.final_norm);
  if (!c.tied_classifier) mat("output.weight", m.classifier);
  return w;
}

ModelConfig tiny_config(bool tied) {
  ModelConfig c;
  c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.hidden = 32, c.ffn_hidden = 48;
  c.vocab = 64, c.max_seq_len = 128, c.rope_theta = 10000.0, c.norm_eps = 1e-5, c.tied_classifier = tied;
  c.rope_style = RopeStyle::kRotateHalf;
  return c;
}

MatrixRM logits_of(const Model& m) {
  const std::vector<int> tokens = {1, 5, 9, 63, 0, 17, 17, 2, 40, 33};
  KvCache cache(m.config, static_cast<int>(tokens.size()));
  const CpuForward fwd(m);
  return fwd.logits(fwd.forward(tokens, cache));
}

}  // namespace

TEST_CASE("gguf: a random model written as GGUF loads with the same config and logits", "[gguf]") {
  const test::TempDir dir;
  for (bool tied : {true, false}) {
    INFO("tied " << tied);
    const Model ref = random_model(tiny_config(tied), 7);
    const auto path = dir / (tied ? "tied.gguf" : "untied.gguf");
    llama_gguf(ref).write(path);
    const Model m = load_model(path);
    const ModelConfig& c = m.config;
    CHECK(c.arch == "llama");
    CHECK(c.n_layers == 2);
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 2);
    CHECK(c.head_dim == 8);
    CHECK(c.hidden == 32);
    CHECK(c.ffn_hidden == 48);
    CHECK(c.vocab == 64);
    CHECK(c.max_seq_len == 128);
    CHECK(c.rope_theta == 10000.0);
    CHECK(c.norm_eps == Approx(1e-5));
    CHECK(c.rope_style == RopeStyle::kRotateHalf);
    CHECK(c.tied_classifier == tied);
    CHECK(m.source.find("#xxh3:") != std::string::npos);
    // Un-permuting restores the HF rows exactly.
    CHECK(m.layers[1].wq == ref.layers[1].wq);
    CHECK(m.layers[1].wk == ref.layers[1].wk);
    CHECK((logits_of(m) - logits_of(ref)).cwiseAbs().maxCoeff() == 0.0f);
  }
}

TEST_CASE("gguf: metadata of every value type reads back", "[gguf]") {
  const test::TempDir dir;
  GgufWriter w;
  w.add_u32("u", 7);
  w.add_f32("f", 0.5f);
  w.add_bool("b", true);
  w.add_string("s", "héllo");
  w.add_strings("ss", {"a b", "", "Ġt"});
  w.add_i32s("ii", {3, -1, 1});
  w.version = 2;
  w.write(dir / "meta.gguf");
  const GgufFile f(dir / "meta.gguf");
  CHECK(f.version() == 2);
  CHECK(f.alignment() == 32);
  CHECK(f.get_int("u") == 7);
  CHECK(f.get_float("u") == 7.0);
  CHECK(f.get_float("f") == 0.5);
  CHECK(f.get_bool("b"));
  CHECK(f.get_string("s") == "héllo");
  CHECK(f.get_strings("ss") == std::vector<std::string>{"a b", "", "Ġt"});
  CHECK(f.get_ints("ii") == std::vector<std::int64_t>{3, -1, 1});
  CHECK(f.get_int("absent", 42) == 42);
  CHECK_THROWS_WITH(f.get_int("absent"), Catch::Contains("meta.gguf") && Catch::Contains("absent is missing"));
  CHECK_THROWS_WITH(f.get_int("s"), Catch::Contains("s is a string, expected an integer"));
  CHECK_THROWS_WITH(f.get_strings("ii"), Catch::Contains("ii is not an array of strings"));
}

TEST_CASE("gguf: bad files give one clear ModelError naming the file and the key or tensor", "[gguf][errors]") {
  const test::TempDir dir;
  const Model ref = random_model(tiny_config(true), 3);
  const GgufWriter good = llama_gguf(ref);
  const std::vector<std::uint8_t> bytes = good.bytes();
  auto load_error = [&](const std::string& name, const std::vector<std::uint8_t>& b) {
    const auto p = dir / name;
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    try {
      load_model(p);
    } catch (const ModelError& e) {
      const std::string what = e.what();
      CHECK(what.find(p.string()) != std::string::npos);
      return what;
    }
    FAIL("no ModelError for " << name);
    return std::string();
  };

  SECTION("header cut inside the metadata") {
    const auto what = load_error("cut_header.gguf", {bytes.begin(), bytes.begin() + 100});
    CHECK_THAT(what, Catch::Contains("truncated GGUF header"));
  }
  SECTION("tensor data beyond the end of the file") {
    const auto what = load_error("cut_data.gguf", {bytes.begin(), bytes.end() - 10});
    CHECK_THAT(what, Catch::Contains("truncated file: tensor output_norm.weight") && Catch::Contains("F32 [32]"));
  }
  SECTION("a tensor offset near 2^64 (no wrap-around)") {
    std::vector<std::uint8_t> b = bytes;
    const std::string name = "output_norm.weight";
    const auto at = std::search(b.begin(), b.end(), name.begin(), name.end()) - b.begin();
    const std::uint64_t huge = ~std::uint64_t{31};  // aligned
    std::memcpy(b.data() + at + name.size() + 4 + 8 + 4, &huge, 8);  // after n_dims, ne[0], type
    CHECK_THAT(load_error("offset.gguf", b), Catch::Contains("truncated file: tensor output_norm.weight"));
  }
  SECTION("not a GGUF file") {
    std::vector<std::uint8_t> b = bytes;
    std::memcpy(b.data(), "GGML", 4);
    CHECK_THAT(load_error("magic.gguf", b), Catch::Contains("not a GGUF file (magic 'GGML'"));
  }
  SECTION("GGUF version 1") {
    std::vector<std::uint8_t> b = bytes;
    b[4] = 1;
    CHECK_THAT(load_error("v1.gguf", b), Catch::Contains("GGUF version 1 is not supported"));
  }
  SECTION("a tensor of an unsupported type") {
    GgufWriter w = good;
    w.add_tensor("blk.0.extra.weight", {256, 2}, 13, std::vector<std::uint8_t>(2 * 176));  // Q5_K
    const auto what = load_error("q5k.gguf", w.bytes());
    CHECK_THAT(what, Catch::Contains("tensor blk.0.extra.weight has type Q5_K") && Catch::Contains("not support"));
  }
  SECTION("a missing metadata key") {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.embedding_length", 32);
    CHECK_THAT(load_error("nokey.gguf", w.bytes()), Catch::Contains("metadata key llama.block_count is missing"));
  }
  SECTION("another architecture") {
    GgufWriter w;
    w.add_string("general.architecture", "gpt2");
    CHECK_THAT(load_error("gpt2.gguf", w.bytes()), Catch::Contains("general.architecture 'gpt2' is not supported"));
  }
  SECTION("a missing tensor") {
    // The same metadata, no tensors: token_embd.weight is the first one looked up.
    std::vector<std::uint8_t> b = bytes;
    std::uint64_t zero = 0;
    std::memcpy(b.data() + 8, &zero, 8);  // tensor_count = 0
    CHECK_THAT(load_error("notensor.gguf", b), Catch::Contains("tensor token_embd.weight is missing"));
  }
  SECTION("a tensor of the wrong shape") {
    ModelConfig c = tiny_config(true);
    c.ffn_hidden = 40;
    const ModelConfig meta = tiny_config(true);  // says 48
    const GgufWriter w = llama_gguf(random_model(c, 3), &meta);
    CHECK_THAT(load_error("shape.gguf", w.bytes()),
               Catch::Contains("tensor blk.0.ffn_gate.weight has shape [40,32], expected [48,32]"));
  }
}

TEST_CASE("fuzz gguf_model: sizes in the metadata far beyond the tensors are refused before allocating", "[gguf][errors][fuzz]") {
  // Found by kvsim_fuzz_gguf_model: load_gguf sized every weight matrix from the llama.*
  // metadata before checking any tensor's shape, so feed_forward_length 2^29 in a 6 KB file asked
  // for 64 GB (ASan: allocator out of memory). Shapes are now checked against the tensor index
  // (inside the file) first, and block_count against the number of tensors.
  const test::TempDir dir;
  const std::vector<std::uint8_t> good = llama_gguf(random_model(tiny_config(true), 3)).bytes();
  auto with_u32 = [&](const std::string& key, std::uint32_t value) {
    std::vector<std::uint8_t> b = good;
    const auto at = std::search(b.begin(), b.end(), key.begin(), key.end()) - b.begin();
    std::memcpy(b.data() + at + key.size() + 4, &value, 4);  // after the key and its value type
    const auto p = dir / (key + ".gguf");
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    return p;
  };
  CHECK_THROWS_WITH(load_gguf(with_u32("llama.feed_forward_length", INT32_MAX)),
                    Catch::Contains("ffn_gate.weight has shape [48,32], expected [2147483647,32]"));
  CHECK_THROWS_WITH(load_gguf(with_u32("llama.block_count", INT32_MAX)),
                    Catch::Contains("llama.block_count 2147483647 needs 9 tensors per layer, the file holds 20 tensors"));
  // n_heads · head_dim is an int product (ModelConfig::q_dim).
  ModelConfig c = tiny_config(true);
  c.n_heads = 1 << 16, c.n_kv_heads = 1, c.head_dim = 1 << 16;
  CHECK_THROWS_MATCHES(c.validate("m"), ModelError, Catch::Matchers::Message("m: n_heads 65536 * head_dim 65536 is out of range"));
}

TEST_CASE("gguf: tokenizer from tokenizer.ggml.* metadata (gpt2 BPE, smollm pre-tokenizer)", "[gguf][tokenizer]") {
  const test::TempDir dir;
  auto tokenizer_gguf = [](const std::string& model, const std::string& pre) {
    GgufWriter w;
    w.add_string("tokenizer.ggml.model", model);
    w.add_string("tokenizer.ggml.pre", pre);
    w.add_strings("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b", "Ġ", "ab", "Ġab", "1", "2", "<tool>"});
    w.add_i32s("tokenizer.ggml.token_type", {3, 3, 1, 1, 1, 1, 1, 1, 1, 4});
    w.add_strings("tokenizer.ggml.merges", {"a b", "Ġ ab"});
    w.add_u32("tokenizer.ggml.bos_token_id", 0);
    w.add_u32("tokenizer.ggml.eos_token_id", 1);
    w.add_bool("tokenizer.ggml.add_bos_token", true);
    w.add_string("tokenizer.chat_template", "{{ messages }}");
    return w;
  };
  tokenizer_gguf("gpt2", "smollm").write(dir / "tok.gguf");
  const auto t = load_tokenizer(dir / "tok.gguf");  // recognised by its magic
  CHECK(t->vocab_size() == 10);
  CHECK(t->bos_id() == 0);
  CHECK(t->eos_id() == 1);
  CHECK(t->chat_template() == "{{ messages }}");
  // BOS; "ab" → a·b merged; " ab" → Ġ·a·b → Ġ·ab → Ġab; digits one by one; </s> and the
  // user-defined <tool> matched whole.
  const std::vector<int> ids = t->encode("ab ab12</s><tool>", true);
  CHECK(ids == std::vector<int>{0, 5, 6, 7, 8, 1, 9});
  CHECK(t->encode("ab", false) == std::vector<int>{5});
  CHECK(t->decode(ids) == "ab ab12<tool>");  // control tokens dropped, user-defined kept
  CHECK(t->decode(ids, true) == "<s>ab ab12</s><tool>");

  tokenizer_gguf("llama", "default").write(dir / "spm.gguf");
  CHECK_THROWS_WITH(load_tokenizer(dir / "spm.gguf"),
                    Catch::Contains("spm.gguf") && Catch::Contains("tokenizer.ggml.model 'llama' is not supported"));
  tokenizer_gguf("gpt2", "qwen2").write(dir / "pre.gguf");
  CHECK_THROWS_WITH(load_tokenizer(dir / "pre.gguf"),
                    Catch::Contains("pre.gguf") && Catch::Contains("tokenizer.ggml.pre 'qwen2' is not supported"));
  GgufWriter none;
  none.add_string("tokenizer.ggml.model", "gpt2");
  none.write(dir / "none.gguf");
  CHECK_THROWS_WITH(load_tokenizer(dir / "none.gguf"),
                    Catch::Contains("none.gguf") && Catch::Contains("metadata key tokenizer.ggml.tokens is missing"));
}

TEST_CASE("gguf: dequantization equals the gguf package on random blocks of every type", "[gguf]") {
  // tests/data/gguf_blocks.{gguf,json}: written by `scripts/verify-gguf.py blocks` with the
  // gguf package's GGUFWriter (random bytes, finite fp16 scales) and its dequantize().
  const auto dir = std::filesystem::path(KVSIM_SOURCE_DIR) / "tests" / "data";
  const GgufFile f(dir / "gguf_blocks.gguf");
  std::ifstream in(dir / "gguf_blocks.json");
  const auto expected = nlohmann::json::parse(in).at("tensors");
  REQUIRE(expected.size() == 8);
  REQUIRE(f.tensors().size() == 8);
  for (const auto& [name, e] : expected.items()) {
    INFO(name);
    const auto shape = e.at("shape").get<std::vector<std::int64_t>>();
    const auto want = e.at("values").get<std::vector<float>>();
    CHECK(ggml_type_name(static_cast<std::uint32_t>(f.tensor(name).type)) == e.at("type").get<std::string>());
    std::vector<float> got(want.size());
    f.read_f32(name, shape, got.data());
    int mismatches = 0;
    for (std::size_t i = 0; i < want.size(); ++i) mismatches += got[i] != want[i];
    CHECK(mismatches == 0);
  }
}

TEST_CASE("kvsim trace/generate: a truncated GGUF and an unsupported tensor type give one clear error", "[gguf][cli][errors]") {
  const test::TempDir dir;
  GgufWriter w = llama_gguf(random_model(tiny_config(true), 5));
  w.add_string("tokenizer.ggml.model", "gpt2");
  const auto bytes = w.bytes();
  w.write(dir / "cut.gguf", bytes.size() - 100);
  w.add_tensor("blk.1.ffn_up.extra", {32, 2}, 7, std::vector<std::uint8_t>(2 * 24));  // Q5_1
  w.write(dir / "q5.gguf");
  std::ofstream(dir / "in.txt") << "Once upon a time there was a cat.";
  const std::string out = (dir / "o.h5").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"trace --model " + (dir / "cut.gguf").string() + " --input " + (dir / "in.txt").string() + " --out " + out,
       "cut.gguf: truncated file: tensor output_norm.weight (F32 [32]) ends at byte"},
      {"generate --model " + (dir / "cut.gguf").string() + " --prompt hi", "cut.gguf: truncated file"},
      {"trace --model " + (dir / "q5.gguf").string() + " --input " + (dir / "in.txt").string() + " --out " + out,
       "q5.gguf: tensor blk.1.ffn_up.extra has type Q5_1, which kvsim does not support"},
  };
  for (const auto& [args, needle] : cases) {
    const test::CliResult r = test::run_cli(args);
    INFO(args << "\n" << r.output);
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains(needle));
    CHECK(test::count_occurrences(r.output, "\n") == 1);  // one line
    CHECK_FALSE(std::filesystem::exists(out));
  }
}

TEST_CASE("gguf: a file cut at any byte gives a ModelError, never a crash", "[gguf][errors]") {
  const test::TempDir dir;
  GgufWriter w = llama_gguf(random_model(tiny_config(true), 9));
  w.add_strings("tokenizer.ggml.tokens", {"a", "b"});
  const auto bytes = w.bytes();
  const auto path = dir / "cut.gguf";
  int errors = 0, cuts = 0;
  for (std::size_t keep = 0; keep < bytes.size(); keep += keep < 2048 ? 1 : 509) {
    w.write(path, keep);
    ++cuts;
    try {
      GgufFile f(path);
    } catch (const ModelError& e) {
      ++errors;
      if (std::string(e.what()).find(path.string()) == std::string::npos) FAIL("no file name in: " << e.what());
    }
  }
  CHECK(errors == cuts);
}
