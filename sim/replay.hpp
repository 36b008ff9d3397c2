#pragma once
// The replay engine (docs/architecture.md): traces × prompts × policies × budgets. One prompt at a
// time (peak memory does not grow with the number of prompts): every (prompt, layer) is read
// once and shared read-only; attention is derived once; each policy scores once and selects
// for every budget from the same scores; metrics sweep budgets incrementally along the kept
// orders. Parallel over policies, (layer, head) and (policy, layer) with oneTBB; every output
// is computed by one task in a fixed order, so results do not depend on the thread count.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metrics/layer_metrics.hpp"
#include "metrics/logit_estimate.hpp"
#include "policies/policy.hpp"
#include "policies/prompt_tensors.hpp"
#include "sim/budget.hpp"
#include "sim/trace_set.hpp"
#include "traces/trace_reader.hpp"

namespace kvsim {

enum class ProjectionPrecision { kFp32, kBf16 };
const char* projection_name(ProjectionPrecision p);
ProjectionPrecision parse_projection(const std::string& text, const std::string& option);  // "fp32" | "bf16", else InputError

struct ReplayOptions {
  std::vector<std::filesystem::path> traces;
  std::vector<std::string> policies;  // spec strings
  BudgetSweep budgets = BudgetSweep::tokens({64});
  std::uint64_t seed = 0;             // mixed into every prompt's seed (random policy)
  bool keep_selections = false;       // hand kept sets to the sink (--dump-kept)
  // In an MPI job (core/dist.hpp), whether the kept sets come back from the other ranks with
  // their token indices (--dump-kept, validate) or with their counts only (kept.csv).
  bool selection_tokens = true;
  // Precision of the W_O projection of the output errors (the replay's largest GEMM): fp32, or
  // bf16 inputs with fp32 accumulation (core/gemm_bf16.hpp; ~2.8x faster where the CPU has
  // AVX512-BF16, metrics within ~1e-4 relative of fp32: docs/metrics.md, "Projection precision").
  ProjectionPrecision projection = ProjectionPrecision::kFp32;
};

// Everything computed for one prompt.
struct PromptResult {
  std::size_t trace = 0;  // index into ReplayOptions::traces
  const PromptMeta* meta = nullptr;
  int n_layers = 0, n_kv_heads = 0, head_dim = 0;
  std::vector<int> budget_tokens;     // [B] resolved per-head budgets
  std::vector<LayerMetrics> metrics;  // [P, L, B]
  std::vector<Selection> selections;  // [P] when keep_selections
  // Estimated Δ-NLL per (policy, budget), [P, B] (docs/metrics.md, "Estimated Δ-NLL"):
  std::vector<double> dnll_est_sum;    // Σ_l out_err_l: the per-layer errors summed (unitless)
  std::vector<double> dnll_est_logit;  // first-order logit-space estimate, nats per token; NaN when the
                                       // trace lacks /model/classifier or the prompt's cont_residual
  std::vector<double> dnll_est_kl;     // its second-order part alone, ½Var_q(Δz) ≈ KL(full‖compressed); NaN likewise
  double flops = 0;                   // metric arithmetic, for benchmarks
  ProjectionCost projection;          // the W_O GEMMs alone: flops and CPU seconds (benchmarks)
  // Seconds of the replay's phases, for benchmarks (never written to results): read (HDF5 read
  // and decompression, conversion to fp32, checks; in Replay::run, where the next prompt is read
  // while this one is replayed, only the wait for it), derive attention, select, layer
  // references, layer metrics, logit estimates. Wall time, and the process's CPU time (all
  // threads; steadier than wall on a shared machine, but it includes a read ahead running alongside).
  struct Phases {
    double read = 0, attention = 0, select = 0, reference = 0, metrics = 0, estimate = 0;
  } seconds, cpu_seconds;

  const LayerMetrics& at(int p, int l, int b) const {
    return metrics[(static_cast<std::size_t>(p) * n_layers + l) * budget_tokens.size() + b];
  }
  double est_sum(int p, int b) const { return dnll_est_sum[static_cast<std::size_t>(p) * budget_tokens.size() + b]; }
  double est_logit(int p, int b) const { return dnll_est_logit[static_cast<std::size_t>(p) * budget_tokens.size() + b]; }
  double est_kl(int p, int b) const { return dnll_est_kl[static_cast<std::size_t>(p) * budget_tokens.size() + b]; }
};

// The best cheap estimate of the continuation's Δ-NLL (nats per token) of policy p (index
// into ReplayOptions::policies) at budget b (index into the sweep): the logit-space estimate
// (dnll_est_logit). Stable API for callers that rank policies (issue 4: compile). On a trace
// recorded without /model/classifier and cont_residual it falls back to dnll_est_sum, which
// is in other units (comparable within such traces only). 0 for the full cache.
double estimated_delta_nll(const PromptResult& result, int p, int b);
// head_output_grams of every layer's W_O [L][H, d, d]: once per trace, for the policies whose
// needs().w_o_gram is set (LaProx), instead of once per prompt.
std::shared_ptr<const std::vector<std::vector<float>>> head_output_grams_all(const std::vector<std::vector<float>>& w_o,
                                                                          const ModelInfo& model);
// A prompt's seed from the job seed, the trace's file name and the prompt id (not from the
// order of the command line).
std::uint64_t prompt_seed(std::uint64_t seed, const std::filesystem::path& trace, const std::string& prompt_id);
// read_all_w_o, ReadPrompt and read_prompt: sim/trace_set.hpp.
// Derives what policies and metrics read: the window attention when a policy reads it and the
// continuation attention always (the metrics read it).
void derive_prompt_attention(PromptTensors& tensors, const PolicyNeeds& needs);
// read_prompt + derive_prompt_attention: one prompt's tensors as policies and metrics see them.
PromptTensors load_prompt(const TraceReader& reader, std::size_t prompt, const PolicyNeeds& needs,
                          std::shared_ptr<const std::vector<std::vector<float>>> w_o, std::uint64_t seed);

// The logit-space Δ-NLL estimator of one prompt (docs/metrics.md) from its outputs, or null when
// the trace lacks /model/classifier (pass null) or the prompt's cont_residual.
std::unique_ptr<LogitEstimator> make_logit_estimator(const TraceReader& reader, std::size_t prompt,
                                                     const PromptOutputs& outputs, const std::vector<float>* classifier,
                                                     const std::vector<float>& final_norm);

class Replay {
 public:
  // Opens every trace, builds every policy and checks, before any work: policy specs and
  // parameters, datasets the policies need, recorded window vs policy windows, budgets vs
  // every prompt's length, continuation present. Throws InputError/TraceError naming the file.
  explicit Replay(ReplayOptions options);
  ~Replay();

  const ReplayOptions& options() const { return options_; }
  const std::vector<std::unique_ptr<Policy>>& policies() const { return policies_; }
  const TraceReader& trace(std::size_t i) const { return traces_->reader(i); }
  const TraceSet& traces() const { return *traces_; }
  std::size_t total_prompts() const { return traces_->total_prompts(); }

  // Calls `on_prompt` for each prompt in order (trace order, then prompt order), from the
  // calling thread. In an MPI job every rank calls it: the prompts are replayed across the
  // ranks (core/dist.hpp) and `on_prompt` runs on rank 0 only, with the same results in the
  // same order.
  void run(const std::function<void(const PromptResult&)>& on_prompt) const;
  // One prompt (exposed for tests and benchmarks). Throws TraceError naming the trace, prompt,
  // policy, budget and layer if any metric or estimate is not finite (NaN never reaches an
  // output; dnll_est_logit/_kl are NaN, by design, on traces without their datasets).
  PromptResult replay_prompt(std::size_t trace, std::size_t prompt) const;
  // The same, handing back the prompt as read (keys and values as in the trace, the outputs) so
  // that a caller needing them too (`kvsim validate`'s exact decode) reads the prompt once.
  PromptResult replay_prompt(std::size_t trace, std::size_t prompt, ReadPrompt& read) const;

 private:
  ReadPrompt read(std::size_t trace, std::size_t prompt) const;
  // The replay of a prompt already read; `read_wall`, `read_cpu`: what reading it cost (or, read
  // ahead, what waiting for it cost).
  PromptResult replay_read(std::size_t trace, std::size_t prompt, ReadPrompt& data, double read_wall, double read_cpu) const;
  void check_finite(const PromptResult& r, const std::string& file, bool has_logit) const;
  ReplayOptions options_;
  std::vector<std::unique_ptr<Policy>> policies_;
  PolicyNeeds needs_;
  std::unique_ptr<TraceSet> traces_;  // readers, W_O [L][D, H*d], classifier, final norm per trace
  std::vector<std::shared_ptr<const std::vector<PackedBf16>>> w_o_bf16_;  // per trace [L], with ProjectionPrecision::kBf16
  std::vector<std::shared_ptr<const std::vector<PackedWeights>>> w_o_packed_;  // per trace [L], with ProjectionPrecision::kFp32
  std::vector<std::shared_ptr<const std::vector<std::vector<float>>>> w_o_gram_;  // per trace [L][H, d, d], when a policy needs them
};

}  // namespace kvsim
