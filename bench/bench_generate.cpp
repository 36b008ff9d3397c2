// Free-running greedy generation from compressed prompt caches (sim/generate.hpp): batched
// across J jobs (one GEMM per weight per step for the whole batch) vs the same jobs decoded one
// at a time (a GEMV per weight per token). Each job keeps a random 1/8 of the prompt positions
// per (layer, KV head) and generates max_new tokens (max_new − 1 forward steps: g0 is the
// prefill's). On stories260K (a real prefill of TinyStories text) when ../shared is present,
// else on a random model of the SmolLM2-135M shape with a random prompt cache (timing only:
// the cost does not depend on the values). `--model smollm2` forces the latter.
// Usage: bench_generate [--threads 2] [--model auto|stories|smollm2] [--T 1024,4096]
//                       [--jobs 1,8,32,96] [--max-new 16] [--single 4]
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>

#include "core/rng.hpp"
#include "sim/generate.hpp"
#include "tracer/inputs.hpp"
#include "tracer/tokenizer.hpp"

using namespace kvsim;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<int> int_list(const char* s) {
  std::vector<int> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');) out.push_back(std::stoi(x));
  return out;
}

// The prompt's K/V and g0: a real prefill of TinyStories text (stories260K), or random values.
struct Prompt {
  PromptCache cache;
  int g0 = 0;
};

Prompt real_prompt(const CpuForward& fwd, const fs::path& text, const fs::path& tok_path, int T) {
  const ModelConfig& c = fwd.model().config;
  const auto tok = load_tokenizer(tok_path);
  InputOptions io;
  io.prompt_len = T, io.cont_len = 0, io.limit = 1;
  const auto prompts = load_prompts(text, *tok, io);
  const std::vector<int> tokens(prompts.at(0).tokens.begin(), prompts.at(0).tokens.begin() + T);
  KvCache kv(c, T);
  const MatrixRM logits = fwd.logits(fwd.forward(tokens, kv).bottomRows(1));
  Prompt p;
  p.g0 = static_cast<int>(std::max_element(logits.data(), logits.data() + c.vocab) - logits.data());
  p.cache = prompt_cache(c, kv, T);
  return p;
}

Prompt random_prompt(const ModelConfig& c, int T) {
  Rng rng(7);
  Prompt p;
  p.cache.T = p.cache.stride = T;
  const std::size_t n = static_cast<std::size_t>(c.n_kv_heads) * T * c.head_dim;
  for (int l = 0; l < c.n_layers; ++l)
    for (auto* side : {&p.cache.keys, &p.cache.values}) {
      std::vector<float> x(n);
      for (float& v : x) v = static_cast<float>(rng.uniform() * 2 - 1);
      side->push_back(std::move(x));
    }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, max_new = 16, single = 4;
  std::string which = "auto";
  std::vector<int> Ts = {1024}, Js = {1, 8, 32, 96};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--model")) which = argv[i + 1];
    if (!std::strcmp(argv[i], "--T")) Ts = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--jobs")) Js = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--max-new")) max_new = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--single")) single = std::atoi(argv[i + 1]);
  }
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  const fs::path ckpt = "../shared/models/stories260K/stories260K.bin";
  const fs::path text = "../shared/data/tinystories_valid_subset/tinystories_val.txt";
  const bool stories = which == "stories" || (which == "auto" && fs::exists(ckpt) && fs::exists(text));
  Model model;
  if (stories) {
    model = load_model(ckpt);
  } else {
    ModelConfig c;  // SmolLM2-135M's shape
    c.n_layers = 30, c.n_heads = 9, c.n_kv_heads = 3, c.head_dim = 64, c.hidden = 576, c.ffn_hidden = 1536;
    c.vocab = 49152, c.rope_theta = 100000, c.tied_classifier = true;
    model = random_model(c, 42);
  }
  const CpuForward fwd(model);
  const ModelConfig& c = model.config;
  const int steps = max_new - 1;
  for (int T : Ts) {
    const Prompt p = stories ? real_prompt(fwd, text, ckpt.parent_path() / "tok512.bin", T) : random_prompt(c, T);
    const GreedyGenerator gen(fwd, p.cache, p.g0, {});
    const int J_max = *std::max_element(Js.begin(), Js.end());
    std::vector<std::vector<std::uint8_t>> masks(J_max);
    for (int j = 0; j < J_max; ++j) {
      Rng rng(100 + j);
      masks[j].resize(static_cast<std::size_t>(c.n_layers) * c.n_kv_heads * T);
      for (auto& f : masks[j]) f = rng.uniform() < 0.125 ? 1 : 0;
    }
    const int kept = T / 8;
    // Unbatched: `single` jobs one at a time; the cost per job does not depend on J.
    const int S = std::min(single, J_max);
    double t0 = now();
    for (int j = 0; j < S; ++j) gen.generate(std::span(masks).subspan(j, 1), max_new);
    const double alone = (now() - t0) / S / steps;  // s per token per job
    std::printf("greedy generation, %s, T=%d, kept %d/%d per (layer, KV head), max_new %d (%d steps), %d threads\n",
                stories ? "stories260K (TinyStories prompt)" : "random SmolLM2-135M shape", T, kept, T, max_new, steps,
                threads);
    std::printf("  %4s  %12s  %16s  %16s  %8s  %8s  %8s\n", "J", "ms/step", "ms/token/job", "unbatched ms/tok", "speed-up",
                "GFLOP/s", "peak MB");
    for (int J : Js) {
      t0 = now();
      const auto out = gen.generate(std::span(masks).first(J), max_new);
      const double t = now() - t0;
      const double per_job = t / steps / J;
      std::printf("  %4d  %12.2f  %16.3f  %16.3f  %7.1fx  %8.2f  %8.1f\n", J, 1e3 * t / steps, 1e3 * per_job, 1e3 * alone,
                  alone / per_job, gen.flops_per_job(max_new, kept) * J / t / 1e9,
                  static_cast<double>(gen.peak_bytes(J, max_new, kept)) / 1e6);
      (void)out;
    }
  }
  return 0;
}
