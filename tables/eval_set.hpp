#pragma once
// The prompts a decision table is compiled on (calibration) or judged by (diff, transfer), and
// the evaluation of CompilerKV decisions on them (docs/tables.md, "Rewards").
//
// Per prompt, once: the CompilerKV state (utility u [L, Hkv, T], α entropy, window perplexity),
// and what measuring a kept set needs: values, continuation attention, W_O, the per-layer
// reference outputs and the logit-space Δ-NLL estimator (sim/replay.hpp). Those tensors are
// cached in memory up to a byte cap; a prompt beyond the cap is read again from its trace
// whenever it is evaluated (same results, slower).
//
// The reward of a prompt under a set of per-layer decisions at budget B is
//   −estimated Δ-NLL = −LogitEstimator(Σ_l W_O δ_l).dnll        (nats per continuation token)
// the estimate `kvsim run` reports as dnll_est_logit (estimated_delta_nll). On traces without
// /model/classifier or cont_residual it falls back, as estimated_delta_nll does, to
// −Σ_l out_err_l (dnll_est_sum, unitless).
//
// With a model (exact rewards, `kvsim compile --reward exact`) the reward is instead
//   −exact Δ-NLL = −ExactDecoder::decode(keep).delta_nll   (nats per scored token)
// the teacher-forced re-decode of sim/exact_decode.hpp, keep[l, g, t] = 1 for the tokens t that
// layer l keeps (the same for every KV head g in CompilerKV). Each prompt then also holds its
// decoder (prompt K/V and reference log-probs), counted against the cache cap.
//
// In an MPI job (core/dist.hpp) the set can be spread over the ranks (Placement): each prompt
// has one owner rank, which alone reads it, holds its utility tensors and caches its
// evaluation data (so --cache-mb is per rank); every rank holds every prompt's scalars (T,
// α entropy, window perplexity: the bins and budget checks need them everywhere), gathered
// from the owners. A prompt stays with its owner for the whole command, so a compile reuses
// its cache every pass; the owners are a fixed cost-aware assignment (assign_prompts).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/model_shape.hpp"
#include "metrics/layer_metrics.hpp"
#include "metrics/logit_estimate.hpp"
#include "policies/compilerkv.hpp"
#include "policies/prompt_tensors.hpp"
#include "sim/exact_decode.hpp"
#include "policies/decision_table.hpp"
#include "sim/trace_set.hpp"
#include "traces/trace_reader.hpp"

namespace kvsim {

// What measuring kept sets of one prompt needs (owning; cached or read for one use).
struct PromptEvalData {
  PromptTensors tensors;                  // values, continuation attention and W_O only
  std::vector<PromptView> layer_views;    // [L] one-layer views (layer l of the prompt as layer 0)
  std::vector<LayerReference> refs;       // [L] full-cache references, each of its one-layer view
  std::unique_ptr<LogitEstimator> logit;  // null: the reward falls back to −Σ_l out_err
  std::unique_ptr<ExactDecoder> exact;    // non-null: exact rewards (the estimates are not used)
  std::size_t bytes() const;
};

struct EvalPrompt {
  std::size_t trace = 0, index = 0;  // trace file and prompt index in it
  const PromptMeta* meta = nullptr;
  // On the owner rank: the whole state. Elsewhere: the scalars only (alpha, utility empty).
  CompilerKvState state;
  std::shared_ptr<const PromptEvalData> cached;  // null when beyond the cache cap (or not owned)
  int owner = 0;                                 // the rank that evaluates it (0 in one process)
};

// Where the prompts of a set live in an MPI job (a world of one holds every prompt anyway).
enum class Placement {
  kEveryRank,  // this rank loads every prompt (no communication)
  kBalanced,   // spread over the ranks by assign_prompts, for good (cql compile: many passes)
  kOnDemand,   // nothing loaded up front: a rank reads a prompt when it is handed it, once
               // (diff, transfer: one pass, dynamic hand-out with dist::run_job)
};

// Owner rank of each prompt: greedy longest-first on cost (prompts by cost descending, then
// index; each to the least loaded rank, then the lowest). Deterministic: every rank computes
// the same assignment from the trace metadata alone.
std::vector<int> assign_prompts(const std::vector<double>& cost, int ranks);

// The decision for one layer: head weights [H] and the gate threshold, read by the gate mode.
struct LayerDecision {
  std::span<const float> head_w;
  float tau = 0;
  GateMode gate_mode = GateMode::absolute;
};

// The measured outcome of one layer's kept set.
struct LayerOutcome {
  LayerMetrics metrics;
  int kept = 0;                  // tokens kept per KV head
  int candidates = 0;            // w + |C|: the elastic set before the budget clamp
  int set_id = 0;                // decisions of one evaluate_layer call with equal set_id kept the same set
  std::vector<float> wo_delta;   // [M, D] W_O δ_t (empty without a logit estimator, or with exact rewards)
  std::vector<std::int32_t> kept_tokens;  // ascending, the same for every KV head (exact rewards only)
};

struct EvalCounters {
  std::uint64_t decisions = 0;     // layer decisions evaluated (arms)
  std::uint64_t measurements = 0;  // distinct kept sets measured (identical ones are shared)
  std::uint64_t task_rewards = 0;  // prompt rewards computed (exact rewards: one re-decode each)
};

class EvalSet {
 public:
  // Opens every trace and loads every prompt's state; checks that all traces share one model
  // shape, record at least `window` window queries, and have continuations. `progress` (may be
  // empty) receives a line per loaded trace. `exact` (may be null; must outlive the set): exact
  // rewards with this forward, whose model must be every trace's (check_model_matches).
  // `sink`: CompilerKV's protected first tokens (compilerkv_state). `placement`: see above;
  // kBalanced is collective in an MPI job (every rank constructs the set).
  EvalSet(std::vector<std::filesystem::path> traces, int window, std::size_t cache_bytes,
          const std::function<void(const std::string&)>& progress = {}, const CpuForward* exact = nullptr,
          int sink = 0, Placement placement = Placement::kEveryRank);
  ~EvalSet();

  const ModelShape& model() const { return model_; }
  int window() const { return window_; }
  int sink() const { return sink_; }
  std::size_t size() const { return prompts_.size(); }
  const EvalPrompt& prompt(std::size_t p) const { return prompts_[p]; }
  // True when the prompts are spread over more than one rank (kBalanced or kOnDemand in an MPI
  // job): evaluations are collective, every rank taking part.
  bool distributed() const { return distributed_; }
  // kOnDemand in an MPI job: no prompt is loaded here until read_now(p); prompt(p).state is
  // empty (its metadata is there).
  bool on_demand() const { return on_demand_; }
  // Prompt p with its whole state, and its evaluation data, read now (not cached): what a rank
  // of an on-demand set evaluates when it is handed p.
  std::pair<EvalPrompt, std::shared_ptr<const PromptEvalData>> read_now(std::size_t p) const;
  bool owns(std::size_t p) const { return prompts_[p].owner == rank_; }
  // The prompts this rank evaluates, in index order; owned_by(r) those of rank r.
  const std::vector<std::size_t>& owned() const { return owned_; }
  std::vector<std::size_t> owned_by(int rank) const;
  // Collective on a distributed set: `mine` holds a row of `row` numbers per owned prompt (in
  // owned() order); rank 0 gets every prompt's row in prompt order [size(), row], the others
  // an empty vector. Doubles travel as raw bits. Without distribution: `mine` itself.
  std::vector<double> rows_to_root(std::vector<double> mine, std::size_t row) const;
  const std::vector<std::filesystem::path>& traces() const { return paths_; }
  const TraceSet& trace_set() const { return *traces_; }
  std::size_t cached_prompts() const;
  // True when every prompt has the logit-space estimator (reward in nats per token).
  bool logit_rewards() const { return logit_rewards_; }
  // True when rewards are exact re-decodes (a forward was given).
  bool exact_rewards() const { return exact_ != nullptr; }
  // The reward in words, for provenance: exact, the logit-space estimate or its fallback.
  std::string reward_description() const;
  // [{path, xxh3, prompts, task}] and the hash of the whole set (order-independent). Files
  // are hashed on rank 0 only when the set is distributed (hashed() false elsewhere): the
  // provenance is written there.
  bool hashed() const { return traces_->hashed(); }
  nlohmann::json trace_provenance() const;
  std::string trace_set_hash() const;

  // Calls fn with prompt p's evaluation data: the cached copy, or one read for this call.
  // Only on p's owner.
  void with_data(std::size_t p, const std::function<void(const PromptEvalData&)>& fn) const;

 private:
  std::shared_ptr<PromptEvalData> load(std::size_t trace, std::size_t index, CompilerKvState* state) const;
  void share_scalars(std::vector<std::uint8_t>& logit);

  std::vector<std::filesystem::path> paths_;
  std::unique_ptr<TraceSet> traces_;  // readers, W_O, classifier, final norm and file hash per trace
  ModelShape model_;
  int window_ = 0, sink_ = 0;
  const CpuForward* exact_ = nullptr;
  bool logit_rewards_ = true;
  bool distributed_ = false, on_demand_ = false;
  int rank_ = 0;
  std::vector<EvalPrompt> prompts_;
  std::vector<std::size_t> owned_;
};

// Measures layer l's kept set under each decision (budget B): out[k] for decisions[k].
// Decisions that give the same kept set share one measurement.
void evaluate_layer(const EvalPrompt& prompt, const PromptEvalData& data, int l, int B,
                    std::span<const LayerDecision> decisions, std::vector<LayerOutcome>& out, EvalCounters& counters);

// The reward (−estimated Δ-NLL, or −exact Δ-NLL when data.exact) of one prompt whose layer l
// has outcome layers[l].
double prompt_reward(const PromptEvalData& data, std::span<const LayerOutcome* const> layers);

// The table's decisions for one prompt at budget B (nearest table budget, the prompt's bins):
// outcomes [L] and the reward. The table must match the model (map_table_to_model first).
double evaluate_table(const EvalPrompt& prompt, const PromptEvalData& data, const DecisionTable& table, int B,
                      std::vector<LayerOutcome>& outcomes, EvalCounters& counters);

}  // namespace kvsim
