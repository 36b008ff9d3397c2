// Replay throughput (issue 3): a Llama-3-8B-shaped synthetic trace against every policy ×
// 6 budgets — seconds per prompt, evaluations per second, achieved GFLOP/s as a fraction of
// this machine's GEMM peak measured in the same run — and, on real stories260K traces, the
// speed-up over re-running the CPU forward pass once per (policy, budget) grid point.
// Usage: bench_replay --trace FILE --policies 'P1;P2;...' (--budgets B1,B2 | --ratios R1,R2) [--threads N] [--projection P]
//        (profile of an existing trace: where the per-prompt time goes), or
//        bench_replay [--threads N] [--shape llama3-8b] [--T 4096] [--M 32] [--prompts 1] [--budgets B1,B2,...]
//                     [--projection fp32|bf16] [--keep PATH]
// (--budgets: the synthetic sweep's tokens per KV head, default T/64 … T/2; budgets above T/2 take
// the dropped-side path of metrics/layer_metrics.cpp)
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>

#include "bench/peak.hpp"
#include "core/rng.hpp"
#include "sim/replay.hpp"
#include "sim/synthetic.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/trace_output.hpp"

using namespace kvsim;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<std::string> all_policies() {
  std::vector<std::string> out;
  for (const auto& info : policy_registry()) out.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
  return out;
}

double gemm_peak() {
  Rng rng(1);
  MatrixRM x(2048, 4096), w(4096, 4096), y;
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(rng.normal());
  linear(x, w, y);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const double t0 = now();
    linear(x, w, y);
    best = std::min(best, now() - t0);
  }
  return 2.0 * 2048 * 4096 * 4096 / best / 1e9;
}

struct ReplayTiming {
  double seconds = 0, flops = 0;
  int prompts = 0;
  PromptResult::Phases phases, cpu;  // summed over prompts
  ProjectionCost projection;         // the W_O GEMMs alone, summed over prompts
};

ReplayTiming time_replay(const fs::path& trace, const BudgetSweep& budgets,
                         ProjectionPrecision projection = ProjectionPrecision::kFp32,
                         std::vector<std::string> policies = all_policies()) {
  ReplayOptions ro;
  ro.projection = projection;
  ro.traces = {trace};
  ro.policies = std::move(policies);
  ro.budgets = budgets;
  const Replay replay(ro);
  ReplayTiming t;
  const double t0 = now();
  replay.run([&](const PromptResult& r) {
    t.flops += r.flops;
    t.projection.flops += r.projection.flops, t.projection.cpu_seconds += r.projection.cpu_seconds;
    ++t.prompts;
    t.phases.read += r.seconds.read, t.phases.attention += r.seconds.attention;
    t.phases.select += r.seconds.select, t.phases.reference += r.seconds.reference;
    t.phases.metrics += r.seconds.metrics, t.phases.estimate += r.seconds.estimate;
    t.cpu.read += r.cpu_seconds.read, t.cpu.attention += r.cpu_seconds.attention;
    t.cpu.select += r.cpu_seconds.select, t.cpu.reference += r.cpu_seconds.reference;
    t.cpu.metrics += r.cpu_seconds.metrics, t.cpu.estimate += r.cpu_seconds.estimate;
  });
  t.seconds = now() - t0;
  return t;
}

// The W_O projection GEMMs' rate inside the replay (flops over the CPU seconds of the threads
// running them), against the best SGEMM per core of this run's peak line.
// Without a peak (--trace), the rate alone.
void print_projection_rate(const ReplayTiming& r, ProjectionPrecision precision, const bench::GemmRates* peak,
                           int threads) {
  if (r.projection.cpu_seconds <= 0) return;
  const double rate = r.projection.flops / r.projection.cpu_seconds / 1e9;
  std::printf("  W_O projection GEMMs inside the replay (%s): %.0f GFLOP per prompt in %.2f CPU s = %.1f GFLOP/s per core",
              projection_name(precision), r.projection.flops / r.prompts / 1e9, r.projection.cpu_seconds / r.prompts, rate);
  if (peak) {
    const double best = peak->best() / threads;
    std::printf(" = %.0f%% of the best SGEMM per core of this run (%.1f: %s on %d threads / %d)", 100.0 * rate / best, best,
                peak->best_name(), threads, threads);
  }
  std::printf("\n");
}

void print_phases(const char* what, const PromptResult::Phases& ph, int prompts) {
  std::printf("  %s per prompt: read %.2f s, attention %.2f s, select %.2f s, layer references %.2f s, layer metrics %.2f s, "
              "estimates %.2f s\n",
              what, ph.read / prompts, ph.attention / prompts, ph.select / prompts, ph.reference / prompts,
              ph.metrics / prompts, ph.estimate / prompts);
}

// Feed-forward width of the named shapes (ModelInfo does not carry it), for the rerun FLOPs.
int ffn_dim(const std::string& shape, const ModelInfo& m) {
  if (shape == "llama3-8b") return 14336;
  if (shape == "qwen2-7b") return 18944;
  if (shape == "smollm2-135m") return 1536;
  return 4 * m.hidden;
}

// FLOPs of rerunning the model for one grid point: a prefill of T tokens (projections, MLP,
// causal attention, last-row logits) and a greedy decode of M tokens against the growing cache.
double rerun_flops(const ModelInfo& m, int F, int T, int M) {
  const double D = m.hidden, Hd = static_cast<double>(m.n_heads) * m.head_dim;
  const double per_token = m.n_layers * 2.0 * (D * (Hd + 2.0 * m.n_kv_heads * m.head_dim) + Hd * D + 3.0 * D * F);
  double f = per_token * T + m.n_layers * 2.0 * static_cast<double>(T) * T * Hd + 2.0 * D * m.vocab;
  for (int j = 0; j < M; ++j) f += per_token + m.n_layers * 4.0 * (T + j + 1.0) * Hd + 2.0 * D * m.vocab;
  return f;
}

// --trace FILE: replays an existing trace (e.g. SmolLM2 traces of 4k-token prompts) with the
// given policies and budgets or ratios, and prints where the per-prompt time goes.
int profile_trace(const fs::path& trace, const std::string& policies, const std::string& budgets,
                  const std::string& ratios, ProjectionPrecision projection, int threads) {
  std::vector<std::string> specs;
  std::stringstream list(policies);
  // Policy specs contain commas inside parentheses; split on ';' here.
  for (std::string item; std::getline(list, item, ';');) specs.push_back(item);
  const BudgetSweep sweep = BudgetSweep::parse(budgets, ratios);
  const double t0 = now();
  const ReplayTiming r = time_replay(trace, sweep, projection, specs);
  const double wall = now() - t0;
  const double points = static_cast<double>(r.prompts) * specs.size() * sweep.labels().size();
  std::printf("bench_replay --trace %s: %d prompts x %zu policies x %zu budgets, threads=%d, projection %s\n",
              trace.c_str(), r.prompts, specs.size(), sweep.labels().size(), threads, projection_name(projection));
  std::printf("replay: %.3f s/prompt, %.4f s per (prompt, policy, budget) point (%.0f points, %.1f s incl. opening)\n",
              r.seconds / r.prompts, r.seconds / points, points, wall);
  print_phases("wall", r.phases, r.prompts);
  print_phases("CPU (all threads)", r.cpu, r.prompts);
  print_projection_rate(r, projection, nullptr, threads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, T = 4096, M = 32, prompts = 1;
  std::string shape = "llama3-8b";
  ProjectionPrecision projection = ProjectionPrecision::kFp32;
  std::string keep, trace, policies, ratio_list, budget_list;  // --keep PATH: write the synthetic trace there once and reuse it (the same --shape, --T, --M, --prompts)
  std::vector<int> budgets;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--threads") threads = std::atoi(argv[i + 1]);
    else if (k == "--shape") shape = argv[i + 1];
    else if (k == "--T") T = std::atoi(argv[i + 1]);
    else if (k == "--M") M = std::atoi(argv[i + 1]);
    else if (k == "--prompts") prompts = std::atoi(argv[i + 1]);
    else if (k == "--keep") keep = argv[i + 1];
    else if (k == "--trace") trace = argv[i + 1];
    else if (k == "--policies") policies = argv[i + 1];
    else if (k == "--ratios") ratio_list = argv[i + 1];
    else if (k == "--projection") projection = parse_projection(argv[i + 1], "--projection");
    else if (k == "--budgets") {
      budget_list = argv[i + 1];
      std::stringstream list(budget_list);
      for (std::string item; std::getline(list, item, ',');) budgets.push_back(std::atoi(item.c_str()));
    }
    else { std::fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
  }
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  if (!trace.empty()) return profile_trace(trace, policies, budget_list, ratio_list, projection, threads);
  const fs::path dir = fs::temp_directory_path() / ("kvsim-bench-replay-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const int n_policies = static_cast<int>(all_policies().size());
  std::printf("bench_replay: threads=%d, %d policies x %zu budgets\n", threads, n_policies, budgets.empty() ? 6 : budgets.size());
  const bench::GemmRates sgemm = bench::print_peak(threads, 2496, 4096, 4096);  // the W_O projection of 13 policies' rows stacked

  const double peak = gemm_peak();
  std::printf("GEMM peak (kvsim::linear, [2048x4096]x[4096x4096]^T, best of 3): %.1f GFLOP/s\n", peak);

  SyntheticSpec spec;
  spec.model = synthetic_shape(shape);
  spec.T = T, spec.M = M, spec.W = 64, spec.n_prompts = prompts;
  double t0 = now();
  const fs::path synthetic = keep.empty() ? dir / "synthetic.h5" : fs::path(keep);
  if (keep.empty() || !fs::exists(synthetic)) write_synthetic_trace(synthetic, spec);
  std::printf("synthetic %s trace: T=%d M=%d W=64, %d prompt(s), written in %.1f s\n", shape.c_str(), T, M, prompts, now() - t0);
  if (budgets.empty()) budgets = {T / 64, T / 32, T / 16, T / 8, T / 4, T / 2};
  const ReplayTiming r = time_replay(synthetic, BudgetSweep::tokens(budgets), projection);
  std::printf("W_O projection precision: %s\n", projection_name(projection));
  if (keep.empty()) fs::remove(synthetic);
  const ModelInfo& m = spec.model;
  // Attention derivation (window and continuation rows), counted analytically.
  const double attn_flops = 2.0 * m.n_layers * m.n_heads * m.head_dim * (64.0 * T + static_cast<double>(M) * (T + M));
  // The peak again after the replay (the machine is shared: keep the better of the two).
  const double peak_after = gemm_peak();
  std::printf("GEMM peak after the replay: %.1f GFLOP/s\n", peak_after);
  const double best_peak = std::max(peak, peak_after);
  const double flops = r.flops + attn_flops * r.prompts;
  const double evals = static_cast<double>(r.prompts) * n_policies * budgets.size();
  std::printf("replay: %.2f s/prompt, %.1f evaluations/s (policy x budget x prompt), %.1f GFLOP/s = %.0f%% of the better GEMM peak\n",
              r.seconds / r.prompts, evals / r.seconds, flops / r.seconds / 1e9, 100.0 * flops / r.seconds / 1e9 / best_peak);
  print_phases("wall", r.phases, r.prompts);
  print_phases("CPU (all threads)", r.cpu, r.prompts);
  print_projection_rate(r, projection, &sgemm, threads);
  // One grid point replayed against rerunning the model for it (prefill + M-token decode).
  const double per_point_flops = flops / r.prompts / (n_policies * budgets.size());
  const double rerun = rerun_flops(m, ffn_dim(shape, m), T, M);
  std::printf("  per (policy, budget) point: %.1f GFLOP replayed vs %.0f GFLOP to rerun the model (prefill of %d + %d-token "
              "decode): 1/%.0f\n",
              per_point_flops / 1e9, rerun / 1e9, T, M, rerun / per_point_flops);
  // The W_O projections alone (2·budgets·M·H·d·D per policy and layer), as a rate over the
  // layer metrics phase's CPU time: a lower bound on the projection GEMMs' rate per core, against
  // the peak per core (the 2-thread peak / threads).
  const double wo_flops = 2.0 * n_policies * budgets.size() * M * m.n_layers * m.n_heads * m.head_dim * m.hidden;
  const double wo_rate = wo_flops * r.prompts / r.cpu.metrics / 1e9, core_peak = best_peak / threads;
  std::printf("  W_O projections if every point were distinct: %.0f GFLOP per prompt, >= %.1f GFLOP/s per core over the layer metrics phase's CPU time "
              "= %.0f%% of the best GEMM peak per core (%.1f)\n",
              wo_flops / 1e9, wo_rate, 100.0 * wo_rate / core_peak, core_peak);

  const fs::path stories = "../shared/models/stories260K/stories260K.bin";
  const fs::path text = "../shared/data/tinystories_valid_subset/tinystories_val.txt";
  if (!fs::exists(stories)) {
    std::printf("stories260K comparison: skipped (%s absent)\n", stories.c_str());
    fs::remove_all(dir);
    return 0;
  }
  const Model model = load_model(stories);
  const CpuForward fwd(model);
  const int sT = 512, sM = 32, sN = 16;
  {
    Rng rng(3);
    std::vector<PromptSpec> random_prompts(sN);
    for (PromptSpec& p : random_prompts) {
      p.tokens.resize(sT + sM);
      for (auto& t : p.tokens) t = static_cast<int>(rng.below(model.config.vocab));
      p.n_prompt = sT, p.truncated_from = sT;
    }
    TraceFileOptions o;
    o.record.window = 64, o.record.topk = 8;
    o.producer.version = "bench";
    o.logit_data = false;  // no classifier: the comparison times the replay without the logit-space estimate
    trace_prompts(fwd, random_prompts, dir / "stories.h5", o);
  }
  const std::vector<int> sb = {16, 32, 64, 128, 256, 512};
  const ReplayTiming sr = time_replay(dir / "stories.h5", BudgetSweep::tokens(sb));
  // The alternative: one forward pass over prompt + continuation per grid point.
  std::vector<int> tokens(sT + sM, 5);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    KvCache cache(model.config, sT + sM);
    t0 = now();
    fwd.forward(tokens, cache);
    best = std::min(best, now() - t0);
  }
  const double grid = static_cast<double>(n_policies) * sb.size();
  std::printf("stories260K (T=%d, M=%d, %d prompts): replay %.4f s/prompt for the grid; forward %.4f s per pass x %.0f "
              "grid points = %.3f s/prompt; replay is %.1fx faster\n",
              sT, sM, sN, sr.seconds / sN, best, grid, best * grid, best * grid / (sr.seconds / sN));
  fs::remove_all(dir);
  return 0;
}
