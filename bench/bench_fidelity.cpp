// Cost of exact vs estimated Δ-NLL evaluation per job (issue 5): on stories260K traces of
// TinyStories (T = 512, M = 32, window 64), 8 policies × 5 budgets per prompt. "estimate" is
// the whole replay of a prompt (reading, attention, policy selection, per-layer metrics and
// both Δ-NLL estimates) divided by its jobs; "exact" is the re-decode of every kept set (one
// batched forward over M−1 tokens against the compressed cache, classifier, KL) divided
// likewise, selection excluded (the replay already made it); "generated" is free-running
// greedy generation of M tokens from every kept set, batched across the prompt's jobs
// (sim/generate.hpp), divided likewise (what `kvsim validate --generate M` adds per point).
// Usage: bench_fidelity [--threads N] [--prompts 8]
#include <tbb/global_control.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "sim/exact_decode.hpp"
#include "sim/generate.hpp"
#include "sim/replay.hpp"
#include "tracer/inputs.hpp"
#include "tracer/tokenizer.hpp"
#include "tracer/trace_output.hpp"

using namespace kvsim;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, n_prompts = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--prompts")) n_prompts = std::atoi(argv[i + 1]);
  }
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  const fs::path ckpt = "../shared/models/stories260K/stories260K.bin";
  const fs::path text = "../shared/data/tinystories_valid_subset/tinystories_val.txt";
  if (!fs::exists(ckpt) || !fs::exists(text)) {
    std::printf("bench_fidelity: skipped (%s or %s absent)\n", ckpt.c_str(), text.c_str());
    return 0;
  }
  const Model model = load_model(ckpt);
  const CpuForward fwd(model);
  const int T = 512, M = 32, W = 64;
  const fs::path dir = fs::temp_directory_path() / ("kvsim-bench-fidelity-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    const auto tok = load_tokenizer(ckpt.parent_path() / "tok512.bin");
    InputOptions io;
    io.prompt_len = T, io.cont_len = M, io.limit = n_prompts;
    TraceFileOptions o;
    o.record.window = W, o.record.topk = 64;
    o.producer.version = "bench";
    trace_prompts(fwd, load_prompts(text, *tok, io), dir / "ts.h5", o);
  }
  ReplayOptions ro;
  ro.traces = {dir / "ts.h5"};
  ro.policies = {"full", "random", "streamingllm", "knorm", "h2o", "tova", "snapkv", "snapkv:window=8"};
  ro.budgets = BudgetSweep::tokens({16, 32, 64, 128, 256});
  ro.keep_selections = true;
  const Replay replay(ro);
  const std::size_t P = replay.total_prompts();
  const double jobs_per_prompt = static_cast<double>(ro.policies.size()) * ro.budgets.size();
  double t_est = 0, t_exact = 0, flops_exact = 0, t_gen = 0;
  for (std::size_t p = 0; p < P; ++p) {
    double t0 = now();
    const PromptResult r = replay.replay_prompt(0, p);
    t_est += now() - t0;
    t0 = now();
    const ExactDecoder dec = exact_decoder(fwd, replay.trace(0), p);
    const auto exact = exact_sweep(dec, r.selections);
    t_exact += now() - t0;
    flops_exact += dec.flops_per_decode() * jobs_per_prompt;
    t0 = now();
    std::vector<std::vector<std::uint8_t>> keeps;
    for (const Selection& s : r.selections)
      for (int b = 0; b < s.n_budgets(); ++b) keeps.push_back(keep_mask(s, b));
    const GreedyGenerator gen(fwd, dec.cache(), replay.trace(0).read_outputs(p).cont_topk_ids[0], {});
    (void)gen.generate(keeps, M);
    t_gen += now() - t0;
  }
  const double jobs = jobs_per_prompt * static_cast<double>(P);
  std::printf("fidelity cost, stories260K, T=%d M=%d, %zu TinyStories prompts x %zu policies x %d budgets, %d threads:\n",
              T, M, P, ro.policies.size(), ro.budgets.size(), threads);
  std::printf("  estimate (replay: selection + metrics + both estimates): %.3f ms/job (%.3f s/prompt)\n",
              1e3 * t_est / jobs, t_est / static_cast<double>(P));
  std::printf("  exact re-decode (forward over M-1 tokens + classifier):  %.3f ms/job (%.3f s/prompt, %.2f GFLOP/s)\n",
              1e3 * t_exact / jobs, t_exact / static_cast<double>(P), flops_exact / t_exact / 1e9);
  std::printf("  generated (greedy, %d tokens, batched over the jobs):  %.3f ms/job (%.3f s/prompt)\n", M,
              1e3 * t_gen / jobs, t_gen / static_cast<double>(P));
  std::printf("  exact / estimate: %.1fx; generated / estimate: %.1fx\n", t_exact / t_est, t_gen / t_est);
  fs::remove_all(dir);
  return 0;
}
