// The CUDA backend's host side, on the CPU (no GPU needed): the memory plan, --device and
// --precision parsing, the error without a device or without the CUDA module (and that no
// executable links CUDA), and the arithmetic the kernels share with the host
// (tracer/cuda/kernel_math.hpp) against the CPU forward pass's own.
#include <catch2/catch.hpp>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "support/policy_fixture.hpp"
#include "support/shared.hpp"
#include "support/skip.hpp"
#include "support/trace_fixture.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/cuda/kernel_math.hpp"
#include "tracer/cuda_backend.hpp"
#include "tracer/device.hpp"

using namespace kvsim;
namespace km = kvsim::kernel_math;

namespace {

ModelConfig llama3_8b() {
  ModelConfig c;
  c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 8, c.head_dim = 128, c.hidden = 4096, c.ffn_hidden = 14336;
  c.vocab = 128256, c.rope_theta = 500000, c.tied_classifier = false;
  return c;
}

ModelConfig llama3_70b() {
  ModelConfig c = llama3_8b();
  c.n_layers = 80, c.n_heads = 64, c.hidden = 8192, c.ffn_hidden = 28672;
  return c;
}

constexpr std::size_t kGB = 1000ull * 1000 * 1000;
constexpr double kGiB = 1024.0 * 1024 * 1024;

}  // namespace

TEST_CASE("cuda memory plan: Llama-3-8B at 16k tokens fits an 80 GB GPU in bf16", "[cuda][memory]") {
  const GpuMemoryPlan p = plan_gpu_memory(llama3_8b(), 16384, Precision::kBf16, 2, 64);
  INFO(p.describe());
  // 32 layers x 218.1M parameters + the 525M classifier, 2 bytes each (embedding stays on the host).
  CHECK(p.weights / kGiB == Approx(13.97).margin(0.02));
  // One layer's K and V [8, 16384, 128] bf16, two sets: 4 x 32 MiB.
  CHECK(p.kv_cache == 4ull * 8 * 16384 * 128 * 2);
  // The MLP's fp32 gate/up [16384, 2 x 14336] dominates the activations (1.75 GiB).
  CHECK(p.activations / kGiB == Approx(3.0).margin(0.3));
  CHECK(p.device_total() < 20 * kGiB);
  CHECK_NOTHROW(require_fits(p, 80 * kGB, "test:H100"));
  // fp32 weights (the reference mode) fit as well.
  CHECK_NOTHROW(require_fits(plan_gpu_memory(llama3_8b(), 16384, Precision::kFp32, 2, 64), 80 * kGB, "test:H100"));
}

TEST_CASE("cuda memory plan: a 70B-shaped model at 128k tokens does not fit, with one clear error", "[cuda][memory]") {
  const GpuMemoryPlan p = plan_gpu_memory(llama3_70b(), 131072, Precision::kBf16, 2, 64);
  CHECK(p.weights / kGiB > 120);
  CHECK_THROWS_AS(require_fits(p, 80 * kGB, "cuda:0 (H100)"), DeviceError);
  CHECK_THROWS_WITH(require_fits(p, 80 * kGB, "cuda:0 (H100)"),
                    Catch::Contains("cuda:0 (H100)") && Catch::Contains("not enough device memory") &&
                        Catch::Contains("weights") && Catch::Contains("GiB"));
}

TEST_CASE("cuda memory plan: the parts scale as the layout says", "[cuda][memory]") {
  const ModelConfig c = test::small_config();
  const GpuLayout g = gpu_layout(c, 1000, 2, 8);
  CHECK(g.qkv_dim == static_cast<std::size_t>(c.n_heads + 2 * c.n_kv_heads) * c.head_dim);
  CHECK(g.logits == static_cast<std::size_t>(kLogitRowBlock) * c.vocab);  // one block of rows, not [N, V]
  const GpuMemoryPlan bf16 = plan_gpu_memory(g, c, Precision::kBf16), fp32 = plan_gpu_memory(g, c, Precision::kFp32);
  CHECK(fp32.kv_cache == 2 * bf16.kv_cache);
  // A decode sequence holds every layer's K/V.
  CHECK(plan_gpu_memory(c, 1000, Precision::kBf16, c.n_layers, 8).kv_cache == bf16.kv_cache / 2 * c.n_layers);
}

TEST_CASE("device and precision names parse, unknown ones list the choices", "[cuda][options]") {
  CHECK(parse_device("cpu") == Device::kCpu);
  CHECK(parse_device("cuda") == Device::kCuda);
  CHECK(parse_precision("fp32") == Precision::kFp32);
  CHECK(parse_precision("bf16") == Precision::kBf16);
  CHECK(parse_precision("fp16") == Precision::kFp16);
  CHECK(precision_bytes(Precision::kBf16) == 2);
  CHECK(std::string(precision_name(Precision::kFp16)) == "fp16");
  CHECK_THROWS_WITH(parse_device("gpu"), Catch::Contains("cpu or cuda"));
  CHECK_THROWS_WITH(parse_precision("int8"), Catch::Contains("fp32, bf16 or fp16"));
}

TEST_CASE("without a CUDA device the backend and the CLI give one clear error", "[cuda][errors]") {
  const CudaAvailability a = cuda_availability();
  if (a.devices > 0) KVSIM_SKIP("a CUDA device is present (this test covers machines without one)");
  const Model m = random_model(test::small_config(), 1);
  CudaOptions o;
  o.max_tokens = 64;
  CHECK_THROWS_AS(make_cuda_backend(m, o), DeviceError);
  test::TempDir tmp;
  std::ofstream(tmp / "in.txt") << "hello";
  const auto r = test::run_cli("trace -m " + (tmp / "nope.bin").string() + " -i " + (tmp / "in.txt").string() +
                               " -o " + (tmp / "t.h5").string() + " --device cuda");
  CHECK(r.status == 1);
  CHECK(r.output.find("--device cuda") != std::string::npos);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK(!std::filesystem::exists(tmp / "t.h5"));
  const auto g = test::run_cli("generate -m " + (tmp / "nope.bin").string() + " --device cuda");
  CHECK(g.status == 1);
  CHECK(g.output.find("--device cuda") != std::string::npos);
  // The CPU has one precision.
  const auto p = test::run_cli("generate -m " + (tmp / "nope.bin").string() + " --precision bf16");
  CHECK(p.status == 1);
  CHECK(p.output.find("fp32 only") != std::string::npos);
}

TEST_CASE("CUDA is a module loaded on demand: no executable links it, a missing module is one clear error",
          "[cuda][errors]") {
  // CPU work never loads the CUDA runtime or cuBLAS: only libkvsim_cuda.so links them.
  for (const std::string& exe : {std::string(KVSIM_BINARY), std::filesystem::read_symlink("/proc/self/exe").string()}) {
    const auto ldd = test::run_command("ldd " + exe);
    INFO(exe << ":\n" << ldd.output);
    REQUIRE(ldd.status == 0);
    CHECK(ldd.output.find("libcudart") == std::string::npos);
    CHECK(ldd.output.find("libcublas") == std::string::npos);
  }
  test::TempDir tmp;
  std::ofstream(tmp / "in.txt") << "hello";
  const auto r = test::run_command("KVSIM_CUDA_MODULE=" + (tmp / "no" / "libkvsim_cuda.so").string() + " " +
                                   KVSIM_BINARY + " trace -m " + (tmp / "nope.bin").string() + " -i " +
                                   (tmp / "in.txt").string() + " -o " + (tmp / "t.h5").string() + " --device cuda");
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK(r.output.find("--device cuda") != std::string::npos);
  // In a build with the backend the line names the module it could not load.
  if (cuda_availability().built) CHECK(r.output.find("cannot load the CUDA backend: " + (tmp / "no").string()) != std::string::npos);
  CHECK(!std::filesystem::exists(tmp / "t.h5"));
}

TEST_CASE("kernel math: RoPE pairs and the shared frequencies reproduce apply_rope", "[cuda][kernel-math]") {
  const int heads = 3, d = 16, half = d / 2, pos0 = 37;
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kRotateHalf}) {
    Rng rng(4);
    MatrixRM x(5, heads * d);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
    MatrixRM cpu = x;
    apply_rope(cpu, heads, d, pos0, 10000.0, style);
    const std::vector<float> freq = rope_frequencies(d, 10000.0);
    for (int t = 0; t < 5; ++t)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          // The qkv_rope kernel's arithmetic, with the host-built cos/sin tables.
          const auto p = km::rope_pair(style == RopeStyle::kInterleaved, i, half);
          const float angle = static_cast<float>(pos0 + t) * freq[i], c = std::cos(angle), s = std::sin(angle);
          const float x0 = x(t, h * d + p.a), x1 = x(t, h * d + p.b);
          REQUIRE(cpu(t, h * d + p.a) == Approx(x0 * c - x1 * s).margin(1e-6));
          REQUIRE(cpu(t, h * d + p.b) == Approx(x0 * s + x1 * c).margin(1e-6));
        }
  }
}

TEST_CASE("kernel math: tiled online softmax equals the direct softmax, column sums come from the row lse", "[cuda][kernel-math]") {
  // The flash kernel's loop for one row, written out: tiles of kKeys keys, causal mask, the
  // output and logsumexp after all tiles; then the colsum kernel's exp(s - lse).
  Rng rng(9);
  const int n = 150, d = 8, pos = 120, kKeys = 32;
  std::vector<float> q(d), k(n * d), v(n * d);
  for (auto& e : q) e = static_cast<float>(rng.normal());
  for (auto& e : k) e = 2.0f * static_cast<float>(rng.normal());
  for (auto& e : v) e = static_cast<float>(rng.normal());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  auto score = [&](int j) {
    float s = 0;
    for (int e = 0; e < d; ++e) s += q[e] * k[j * d + e];
    return s * scale;
  };
  float m = -INFINITY, l = 0;
  std::vector<float> o(d, 0.0f);
  for (int j0 = 0; j0 < n; j0 += kKeys) {
    std::vector<float> s(kKeys);
    float tile_max = -INFINITY;
    for (int j = 0; j < kKeys; ++j) {
      s[j] = j0 + j <= pos && j0 + j < n ? score(j0 + j) : -INFINITY;
      tile_max = std::max(tile_max, s[j]);
    }
    const float corr = km::online_rescale(m, l, tile_max);
    for (auto& e : o) e *= corr;
    for (int j = 0; j < kKeys; ++j) {
      const float p = s[j] == -INFINITY ? 0.0f : std::exp(s[j] - m);
      l += p;
      if (j0 + j < n)  // the last tile runs past the n keys: p is 0 there, and v has no row
        for (int e = 0; e < d; ++e) o[e] += p * v[(j0 + j) * d + e];
    }
  }
  const float lse = m + std::log(l);
  const auto ref = test::reference_attention(q.data(), k.data(), n, pos, d);
  double colsum_total = 0;
  for (int e = 0; e < d; ++e) {
    double expect = 0;
    for (int j = 0; j <= pos; ++j) expect += ref[j] * v[j * d + e];
    CHECK(o[e] / l == Approx(expect).margin(1e-5));
  }
  for (int j = 0; j <= pos; ++j) {
    const double p = std::exp(score(j) - lse);
    REQUIRE(p == Approx(ref[j]).margin(1e-6));
    colsum_total += p;
  }
  CHECK(colsum_total == Approx(1.0).epsilon(1e-5));
  // A tile with nothing visible yet leaves the state alone.
  float m0 = -INFINITY, l0 = 0;
  CHECK(km::online_rescale(m0, l0, -INFINITY) == 1.0f);
  CHECK(m0 == -INFINITY);
}

TEST_CASE("kernel math: K rounds of 'best after the previous pick' give the CPU recorder's top-K", "[cuda][kernel-math]") {
  Rng rng(5);
  const int V = 500, K = 40;
  std::vector<float> z(V);
  for (auto& e : z) e = static_cast<float>(std::round(rng.normal() * 4) / 4);  // many ties
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + K, order.end(),
                    [&](int a, int b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
  float pv = INFINITY;
  int pi = -1;
  for (int kk = 0; kk < K; ++kk) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = 0; i < V; ++i)
      if (km::ranks_before(pv, pi, z[i], i) && km::ranks_before(z[i], i, bv, bi)) bv = z[i], bi = i;
    REQUIRE(bi == order[kk]);
    pv = bv, pi = bi;
  }
}

TEST_CASE("kernel math: bf16 rounding is round-to-nearest-even", "[cuda][kernel-math]") {
  CHECK(km::float_to_bf16_bits(1.0f) == 0x3f80);
  CHECK(km::float_to_bf16_bits(1.0f + 0x1p-8f) == 0x3f80);       // tie -> even
  CHECK(km::float_to_bf16_bits(1.0f + 3 * 0x1p-8f) == 0x3f82);   // tie -> even (up)
  CHECK(km::float_to_bf16_bits(-2.0f) == 0xc000);
  CHECK(std::isnan(km::bf16_bits_to_float(km::float_to_bf16_bits(NAN))));
  Rng rng(2);
  for (int i = 0; i < 1000; ++i) {
    const float x = static_cast<float>(rng.normal() * 100);
    const float y = km::bf16_bits_to_float(km::float_to_bf16_bits(x));
    REQUIRE(std::abs(y - x) <= std::abs(x) * 0x1p-8f);
  }
}
