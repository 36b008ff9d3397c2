#include "sim/replay.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <ctime>
#include <cmath>
#include <limits>
#include <map>

#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/rng.hpp"
#include "metrics/logit_estimate.hpp"
#include "policies/prompt_tensors.hpp"
#include "policies/score_utils.hpp"
#include "sim/result_codec.hpp"

namespace kvsim {

Replay::Replay(ReplayOptions options) : options_(std::move(options)) {
  if (options_.traces.empty()) fail<InputError>("no trace files given");
  if (options_.policies.empty()) fail<InputError>("no policies given");
  for (const auto& spec : options_.policies) {
    policies_.push_back(make_policy(spec));
    needs_ = merge(needs_, policies_.back()->needs());
  }
  TraceSet::Checks checks;
  checks.opened = [&](std::size_t t, const TraceReader& r) {
    const std::string file = options_.traces[t].string();
    if (r.prompts().empty()) fail<InputError>(file, ": the trace holds no complete prompt");
    const ModelInfo& mi = r.model();
    for (const auto& pol : policies_) {
      try {
        pol->check_model(mi);
      } catch (const InputError& e) {
        fail<InputError>(file, ": ", e.what());
      }
    }
    for (std::size_t i = 0; i < r.prompts().size(); ++i) {
      const PromptMeta& m = r.prompts()[i];
      const std::string where = file + ": prompt " + m.id;
      options_.budgets.resolve(m.n_prompt, where);
      if (m.n_cont < 1)
        fail<InputError>(where, ": no continuation tokens (n_cont = 0); the output metrics need the continuation queries");
      if (needs_.window > m.window) {
        std::string who;
        for (const auto& pol : policies_)
          if (pol->needs().window > m.window) who = pol->spec();
        fail<InputError>(where, ": records a window of ", m.window, " queries but ", who, " needs ", needs_.window,
                         " (trace with --window ", needs_.window, " or lower the policy's window)");
      }
    }
    // Datasets every prompt has in a v1 trace, but that a foreign or damaged file may lack.
    if (needs_.colsum && !r.has_dataset(0, "layers/0/attn_colsum"))
      fail<InputError>(file, ": dataset /prompts/", r.prompts()[0].id, "/layers/0/attn_colsum is missing (needed by h2o)");
  };
  // Weights derived once per trace from its W_O: packed for the projection, grams for LaProx.
  checks.loaded = [&](std::size_t, const TraceReader& r, const TraceWO& w_o) {
    const ModelInfo& mi = r.model();
    if (options_.projection == ProjectionPrecision::kBf16) {
      auto packed = std::make_shared<std::vector<PackedBf16>>();
      packed->reserve(w_o.size());
      for (const auto& w : w_o) packed->emplace_back(w.data(), mi.hidden, mi.n_heads * mi.head_dim);
      w_o_bf16_.push_back(std::move(packed));
      w_o_packed_.push_back(nullptr);
    } else {
      auto packed = std::make_shared<std::vector<PackedWeights>>();
      packed->reserve(w_o.size());
      for (const auto& w : w_o)
        packed->emplace_back(ConstMapMatrixRM(w.data(), mi.hidden, static_cast<Eigen::Index>(mi.n_heads) * mi.head_dim));
      w_o_bf16_.push_back(nullptr);
      w_o_packed_.push_back(std::move(packed));
    }
    w_o_gram_.push_back(needs_.w_o_gram ? head_output_grams_all(w_o, mi) : nullptr);
  };
  traces_ = std::make_unique<TraceSet>(options_.traces, checks);
  // In an MPI job every rank replays prompts of its own copy of the set: the same one.
  dist::require_same("trace set", traces_->fingerprint());
}

Replay::~Replay() = default;

const char* projection_name(ProjectionPrecision p) { return p == ProjectionPrecision::kBf16 ? "bf16" : "fp32"; }

ProjectionPrecision parse_projection(const std::string& text, const std::string& option) {
  if (text == "fp32") return ProjectionPrecision::kFp32;
  if (text == "bf16") return ProjectionPrecision::kBf16;
  fail<InputError>(option, ": '", text, "' is not a precision (fp32 or bf16)");
}

std::shared_ptr<const std::vector<std::vector<float>>> head_output_grams_all(const std::vector<std::vector<float>>& w_o,
                                                                          const ModelInfo& model) {
  auto grams = std::make_shared<std::vector<std::vector<float>>>(w_o.size());
  for (std::size_t l = 0; l < w_o.size(); ++l)
    (*grams)[l] = head_output_grams(w_o[l], model.n_heads, model.head_dim, model.hidden);
  return grams;
}

std::uint64_t prompt_seed(std::uint64_t seed, const std::filesystem::path& trace, const std::string& prompt_id) {
  // The seed depends on the file name and prompt id, not on the order of the command line.
  const std::string key = trace.filename().string() + "/" + prompt_id;
  return derive_seed(seed, hash_bytes(key));
}

void derive_prompt_attention(PromptTensors& tensors, const PolicyNeeds& needs) {
  tensors.derive_attention(needs.window > 0, true);
}

PromptTensors load_prompt(const TraceReader& reader, std::size_t prompt, const PolicyNeeds& needs,
                          std::shared_ptr<const std::vector<std::vector<float>>> w_o, std::uint64_t seed) {
  PromptTensors pt = read_prompt(reader, prompt, needs, std::move(w_o), seed).tensors;
  derive_prompt_attention(pt, needs);
  return pt;
}

std::unique_ptr<LogitEstimator> make_logit_estimator(const TraceReader& reader, std::size_t prompt,
                                                     const PromptOutputs& outs, const std::vector<float>* classifier,
                                                     const std::vector<float>& final_norm) {
  // The logit-space estimate needs the final residual and the classifier (optional datasets).
  if (!classifier || outs.cont_residual.empty()) return nullptr;
  const PromptMeta& meta = reader.prompts()[prompt];
  const ModelInfo& model = reader.model();
  LogitEstimateInput in;
  in.T = meta.n_prompt, in.M = meta.n_cont, in.D = model.hidden, in.V = model.vocab, in.K = meta.topk;
  in.cont_residual = outs.cont_residual, in.final_norm = final_norm, in.norm_eps = model.norm_eps;
  in.classifier = *classifier, in.tokens = outs.tokens, in.cont_topk_ids = outs.cont_topk_ids;
  return std::make_unique<LogitEstimator>(in);
}

ReadPrompt Replay::read(std::size_t trace, std::size_t prompt) const {
  ReadPrompt data = traces_->read_prompt(
      trace, prompt, needs_, prompt_seed(options_.seed, options_.traces[trace], traces_->reader(trace).prompts()[prompt].id));
  data.tensors.w_o_bf16 = w_o_bf16_[trace];
  data.tensors.w_o_packed = w_o_packed_[trace];
  data.tensors.w_o_gram = w_o_gram_[trace];
  return data;
}

namespace {

// Phase timer: wall and process CPU seconds since the last lap (or construction).
class PhaseClock {
 public:
  void lap(double& wall, double& cpu) {
    const auto t1 = std::chrono::steady_clock::now();
    const std::clock_t c1 = std::clock();
    wall = std::chrono::duration<double>(t1 - t0_).count(), cpu = static_cast<double>(c1 - c0_) / CLOCKS_PER_SEC;
    t0_ = t1, c0_ = c1;
  }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
  std::clock_t c0_ = std::clock();
};

}  // namespace

PromptResult Replay::replay_prompt(std::size_t trace, std::size_t prompt) const {
  ReadPrompt data;
  return replay_prompt(trace, prompt, data);
}

PromptResult Replay::replay_prompt(std::size_t trace, std::size_t prompt, ReadPrompt& data) const {
  PhaseClock clock;
  data = read(trace, prompt);
  double wall = 0, cpu = 0;
  clock.lap(wall, cpu);
  return replay_read(trace, prompt, data, wall, cpu);
}

PromptResult Replay::replay_read(std::size_t trace, std::size_t prompt, ReadPrompt& data, double read_wall,
                                 double read_cpu) const {
  const TraceReader& reader = traces_->reader(trace);
  const PromptMeta& meta = reader.prompts()[prompt];
  const ModelInfo& model = reader.model();
  const std::string file = options_.traces[trace].string();
  PhaseClock clock;
  PromptResult result;
  result.seconds.read = read_wall, result.cpu_seconds.read = read_cpu;
  PromptTensors& pt = data.tensors;
  derive_prompt_attention(pt, needs_);
  const PromptView view = pt.view();
  clock.lap(result.seconds.attention, result.cpu_seconds.attention);
  result.trace = trace, result.meta = &meta;
  result.n_layers = model.n_layers, result.n_kv_heads = model.n_kv_heads, result.head_dim = model.head_dim;
  const BudgetPlan plan = options_.budgets.resolve(meta.n_prompt, file + ": prompt " + meta.id);
  result.budget_tokens = plan.per_head;

  const int P = static_cast<int>(policies_.size()), L = model.n_layers, B = static_cast<int>(plan.per_head.size());
  std::vector<Selection> selections(P);
  tbb::parallel_for(0, P, [&](int p) {
    selections[p] = policies_[p]->select(view, plan);
    check_selection(selections[p], plan, policies_[p]->spec(), policies_[p]->respects_budget(),
                    policies_[p]->budget_slack());
  });
  clock.lap(result.seconds.select, result.cpu_seconds.select);
  std::vector<LayerReference> refs(L);
  tbb::parallel_for(0, L, [&](int l) { refs[l] = layer_reference(view, l); });
  clock.lap(result.seconds.reference, result.cpu_seconds.reference);

  const std::unique_ptr<LogitEstimator> logit =
      make_logit_estimator(reader, prompt, data.outputs, traces_->classifier(trace), traces_->final_norm(trace));
  const std::size_t md = static_cast<std::size_t>(meta.n_cont) * model.hidden;
  // [L, P, B, M, D], every element written by layer_metrics_stacked: not zeroed first (1.3 GB at
  // an 8B shape, 4k tokens and 78 points).
  const std::size_t n_wo_delta = logit ? static_cast<std::size_t>(L) * P * B * md : 0;
  const std::unique_ptr<float[]> wo_delta_buffer(new float[std::max<std::size_t>(n_wo_delta, 1)]);
  const std::span<float> wo_delta(wo_delta_buffer.get(), n_wo_delta);

  // One task per layer: every policy's δ rows stacked, one W_O GEMM (layer_metrics_stacked).
  result.metrics.resize(static_cast<std::size_t>(P) * L * B);
  std::vector<double> flops(L, 0.0);
  std::vector<ProjectionCost> projection(L);
  std::vector<const Selection*> stack(P);
  for (int p = 0; p < P; ++p) stack[p] = &selections[p];
  tbb::parallel_for(0, L, [&](int l) {
    std::vector<LayerMetrics> m(static_cast<std::size_t>(P) * B);  // [P, B]
    flops[l] = layer_metrics_stacked(view, refs[l], stack, m,
                                     logit ? wo_delta.subspan(static_cast<std::size_t>(l) * P * B * md, P * B * md)
                                           : std::span<float>(),
                                     &projection[l]);
    for (int p = 0; p < P; ++p)
      std::copy_n(m.begin() + static_cast<std::ptrdiff_t>(p) * B, B,
                  result.metrics.begin() + (static_cast<std::ptrdiff_t>(p) * L + l) * B);
  });
  clock.lap(result.seconds.metrics, result.cpu_seconds.metrics);
  result.dnll_est_sum.assign(static_cast<std::size_t>(P) * B, 0.0);
  result.dnll_est_logit.assign(static_cast<std::size_t>(P) * B, std::numeric_limits<double>::quiet_NaN());
  result.dnll_est_kl = result.dnll_est_logit;
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < B; ++b) {
      double s = 0;
      for (int l = 0; l < L; ++l) s += result.at(p, l, b).out_err;
      result.dnll_est_sum[static_cast<std::size_t>(p) * B + b] = s;
    }
  if (logit) {
    tbb::parallel_for(0, P * B, [&](int pb) {
      const int p = pb / B, b = pb % B;
      // Δr = Σ_l W_O δ_l, summed in layer order.
      std::vector<float> dr(md, 0.0f);
      for (int l = 0; l < L; ++l) {
        const float* src = wo_delta.data() + ((static_cast<std::size_t>(l) * P + p) * B + b) * md;
        for (std::size_t i = 0; i < md; ++i) dr[i] += src[i];
      }
      const LogitEstimate e = logit->estimate(dr);
      result.dnll_est_logit[pb] = e.dnll;
      result.dnll_est_kl[pb] = e.kl;
    });
    result.flops += static_cast<double>(P) * B * (logit->flops_per_estimate() + static_cast<double>(L) * md);
  }
  clock.lap(result.seconds.estimate, result.cpu_seconds.estimate);
  for (const auto& r : refs) result.flops += r.flops;
  for (double f : flops) result.flops += f;
  for (const ProjectionCost& c : projection)
    result.projection.flops += c.flops, result.projection.cpu_seconds += c.cpu_seconds;
  check_finite(result, file, logit != nullptr);
  if (options_.keep_selections) result.selections = std::move(selections);
  return result;
}

void Replay::check_finite(const PromptResult& r, const std::string& file, bool has_logit) const {
  // layer_metrics is exact to ~1e-7 whatever the kept share (docs/metrics.md) and traces hold
  // no NaN/inf (reader and writer refuse them), so a non-finite value means every surviving
  // key's attention underflowed fp32 (a logit gap above ~100 to the dropped ones), or a bug.
  // dnll_est_logit/_kl are NaN by design, not an error, on traces without their datasets.
  const auto& labels = options_.budgets.labels();
  auto bad = [&](int p, int b, const std::string& layer, const char* what, double x) {
    fail<TraceError>(file, ": prompt ", r.meta->id, ": policy ", policies_[p]->spec(), ", budget ", labels[b], " (",
                     r.budget_tokens[b], " tokens per head)", layer, ": ", what, " is ",
                     std::isnan(x) ? "NaN" : x > 0 ? "+inf" : "-inf");
  };
  const int P = static_cast<int>(policies_.size()), B = static_cast<int>(r.budget_tokens.size());
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < B; ++b) {
      for (int l = 0; l < r.n_layers; ++l) {
        const LayerMetrics& m = r.at(p, l, b);
        const std::string layer = ", layer " + std::to_string(l);
        if (!std::isfinite(m.out_err)) bad(p, b, layer, "out_err", m.out_err);
        if (!std::isfinite(m.out_err_value)) bad(p, b, layer, "out_err_value", m.out_err_value);
        if (!std::isfinite(m.recall)) bad(p, b, layer, "recall", m.recall);
      }
      if (!std::isfinite(r.est_sum(p, b))) bad(p, b, "", "dnll_est_sum", r.est_sum(p, b));
      if (has_logit && !std::isfinite(r.est_logit(p, b))) bad(p, b, "", "dnll_est_logit", r.est_logit(p, b));
      if (has_logit && !std::isfinite(r.est_kl(p, b))) bad(p, b, "", "dnll_est_kl", r.est_kl(p, b));
    }
}

double estimated_delta_nll(const PromptResult& result, int p, int b) {
  const double logit = result.est_logit(p, b);
  return std::isnan(logit) ? result.est_sum(p, b) : logit;
}

void Replay::run(const std::function<void(const PromptResult&)>& on_prompt) const {
  if (dist::size() > 1) {
    const std::vector<TraceItem> items = traces_->items();
    // The next prompt of this rank is read on a thread of its own while this one is replayed,
    // as below; prefetch and compute run on the same thread, one prompt ahead at most.
    std::map<std::size_t, std::future<ReadPrompt>> ahead;
    dist::Job job;
    job.items = items.size();
    job.prefetch = [&](std::size_t k) {
      if (ahead.count(k) == 0)
        ahead.emplace(k, std::async(std::launch::async, [this, t = items[k].trace, i = items[k].prompt] { return read(t, i); }));
    };
    job.compute = [&](std::size_t k) {
      PhaseClock clock;
      ReadPrompt data;
      if (auto it = ahead.find(k); it != ahead.end()) {
        data = it->second.get();  // rethrows a read error here, for this prompt
        ahead.erase(it);
      } else {
        data = read(items[k].trace, items[k].prompt);
      }
      double wait = 0, wait_cpu = 0;
      clock.lap(wait, wait_cpu);
      return encode_prompt_result(replay_read(items[k].trace, items[k].prompt, data, wait, wait_cpu),
                                  options_.selection_tokens);
    };
    job.deliver = [&](std::size_t k, std::string&& bytes) {
      on_prompt(decode_prompt_result(bytes, &traces_->reader(items[k].trace).prompts()[items[k].prompt]));
    };
    job.label = [&](std::size_t k) { return item_label(*traces_, items[k]); };
    // A replay costs about its prompt length (selections and metrics over T, attention T·(W + M)).
    job.cost = [&](std::size_t k) {
      return static_cast<double>(traces_->reader(items[k].trace).prompts()[items[k].prompt].n_prompt);
    };
    dist::run_job(job);
    return;
  }
  // The next prompt is read (HDF5, decompression, conversion) on its own thread while this one is
  // replayed: reading is mostly serial (libhdf5's lock), the replay mostly parallel, so the read
  // fills cores the replay leaves idle. One prompt ahead at most (memory: two prompts' raw tensors).
  const std::vector<TraceItem> order = traces_->items();
  auto read_async = [&](std::size_t k) {
    return std::async(std::launch::async, [this, t = order[k].trace, i = order[k].prompt] { return read(t, i); });
  };
  std::future<ReadPrompt> next;
  if (!order.empty()) next = read_async(0);
  for (std::size_t k = 0; k < order.size(); ++k) {
    PhaseClock clock;
    ReadPrompt data = next.get();  // rethrows a read error here, in order
    double wait = 0, wait_cpu = 0;
    clock.lap(wait, wait_cpu);
    if (k + 1 < order.size()) next = read_async(k + 1);
    on_prompt(replay_read(order[k].trace, order[k].prompt, data, wait, wait_cpu));
  }
}

}  // namespace kvsim
