#include "tables/eval_set.hpp"

#include <algorithm>
#include <numeric>
#include <tbb/parallel_for.h>

#include "core/bytes.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "policies/score_utils.hpp"
#include "sim/replay.hpp"

namespace kvsim {

std::size_t PromptEvalData::bytes() const {
  std::size_t n = 0;
  for (const auto& ly : tensors.layers) n += (ly.values.size() + ly.cont_attn.size()) * sizeof(float);
  for (const auto& r : refs) n += (r.o.size() + r.n_cont.size() + 4 * r.z_total.size()) * sizeof(float);
  if (exact) n += exact->bytes();
  return n;
}

EvalSet::EvalSet(std::vector<std::filesystem::path> traces, int window, std::size_t cache_bytes,
                 const std::function<void(const std::string&)>& progress, const CpuForward* exact, int sink,
                 Placement placement)
    : paths_(std::move(traces)), window_(window), sink_(sink), exact_(exact) {
  if (sink < 0) fail<InputError>("sink must be >= 0, got ", sink);
  if (paths_.empty()) fail<InputError>("no trace files given");
  if (window < 1) fail<InputError>("window must be >= 1, got ", window);
  TraceSet::Checks checks;
  checks.opened = [&](std::size_t t, const TraceReader& r) {
    const std::string file = paths_[t].string();
    const ModelInfo& m = r.model();
    const ModelShape& shape = m;
    if (t == 0) {
      model_ = shape;
    } else if (shape.n_layers != model_.n_layers || shape.n_heads != model_.n_heads ||
               shape.n_kv_heads != model_.n_kv_heads || shape.head_dim != model_.head_dim) {
      fail<InputError>(file, ": model shape differs from ", paths_[0].string(), " (one table is for one model)");
    }
    if (r.prompts().empty()) fail<InputError>(file, ": the trace holds no complete prompt");
    if (exact_) check_model_shape(exact_->model(), r);  // names the file and both models
    for (const PromptMeta& pm : r.prompts()) {
      if (pm.n_cont < 2) fail<InputError>(file, ": prompt ", pm.id, ": needs at least 2 continuation tokens, has ", pm.n_cont);
      if (pm.window < window)
        fail<InputError>(file, ": prompt ", pm.id, ": records a window of ", pm.window, " queries, compilerkv needs ", window);
    }
  };
  // The weights against the set's own copy of W_O (not read again).
  if (exact_)
    checks.loaded = [&](std::size_t, const TraceReader& r, const TraceWO& w_o) {
      check_model_weights(exact_->model(), r, w_o[0]);
    };
  // Spread over the ranks, only rank 0 reads every file whole for its hash (it writes the
  // provenance); the others would only repeat that I/O.
  distributed_ = placement != Placement::kEveryRank && dist::size() > 1;
  on_demand_ = distributed_ && placement == Placement::kOnDemand;
  rank_ = distributed_ ? dist::rank() : 0;
  traces_ = std::make_unique<TraceSet>(paths_, checks, /*hash_files=*/!distributed_ || dist::is_root());
  if (distributed_) dist::require_same("trace set", traces_->fingerprint());
  for (std::size_t t = 0; t < traces_->size(); ++t)
    for (std::size_t i = 0; i < traces_->reader(t).prompts().size(); ++i) {
      EvalPrompt ep;
      ep.trace = t, ep.index = i, ep.meta = &traces_->reader(t).prompts()[i];
      prompts_.push_back(std::move(ep));
    }
  if (on_demand_) {
    // Every prompt is read by the rank it is handed to, when it is (read_now).
    for (EvalPrompt& ep : prompts_) ep.owner = -1;
    if (progress)
      progress(std::to_string(prompts_.size()) + " prompts in " + std::to_string(paths_.size()) +
               " traces, read as they are handed out to the ranks");
    return;
  }
  if (distributed_) {
    // Cost ∝ T: scoring, selecting and measuring a kept set all grow with the prompt length
    // (10× between prompts of one set), the continuation length is usually one per set.
    std::vector<double> cost;
    for (const EvalPrompt& ep : prompts_) cost.push_back(ep.meta->n_prompt);
    const std::vector<int> owner = assign_prompts(cost, dist::size());
    for (std::size_t p = 0; p < prompts_.size(); ++p) prompts_[p].owner = owner[p];
  }
  for (std::size_t p = 0; p < prompts_.size(); ++p)
    if (owns(p)) owned_.push_back(p);
  std::vector<std::uint8_t> logit(prompts_.size(), 1);
  std::size_t used = 0, k = 0;
  for (std::size_t t = 0; t < traces_->size(); ++t) {
    std::size_t here = 0;
    for (; k < owned_.size() && prompts_[owned_[k]].trace == t; ++k, ++here) {
      EvalPrompt& ep = prompts_[owned_[k]];
      std::shared_ptr<PromptEvalData> data = load(ep.trace, ep.index, &ep.state);
      logit[owned_[k]] = data->logit != nullptr;
      if (used + data->bytes() <= cache_bytes) {
        used += data->bytes();
        ep.cached = std::move(data);
      }
    }
    const std::size_t n = traces_->reader(t).prompts().size();
    if (progress)
      progress(paths_[t].filename().string() + ": " + std::to_string(n) + " prompts" +
               (distributed_ ? ", " + std::to_string(here) + " loaded on rank " + std::to_string(rank_) : " loaded") + ", " +
               std::to_string(cached_prompts()) + " cached (" + std::to_string(used >> 20) + " MiB)");
  }
  if (distributed_) share_scalars(logit);
  logit_rewards_ = std::all_of(logit.begin(), logit.end(), [](std::uint8_t x) { return x != 0; });
}

namespace {

// What every rank needs of a prompt it does not own: the state's scalars and whether the
// prompt has the logit-space estimator (the set's reward description). One list for both
// directions (core/bytes.hpp).
template <typename Archive, typename State, typename Logit>
void scalar_fields(Archive& a, State& s, Logit& logit) {
  a.io(s.n_layers, s.n_heads, s.n_kv_heads, s.T, s.window, s.sink, s.entropy, s.perplexity, logit);
}

}  // namespace

// Owners send their prompts' scalars to rank 0, which sends all of them, in prompt order, to
// every rank (doubles as raw bits: the bins are the same as in one process).
void EvalSet::share_scalars(std::vector<std::uint8_t>& logit) {
  ByteWriter mine;
  for (std::size_t p : owned_) scalar_fields(mine, prompts_[p].state, logit[p]);
  const std::vector<std::string> parts = dist::gather(mine.take());
  ByteWriter all;
  if (dist::is_root()) {
    std::vector<CompilerKvState> st(prompts_.size());
    for (int r = 0; r < static_cast<int>(parts.size()); ++r) {
      ByteReader in(parts[r]);
      for (std::size_t p : owned_by(r)) scalar_fields(in, st[p], logit[p]);
      KVSIM_CHECK(in.done(), "EvalSet: rank ", r, " sent scalars of another set of prompts");
    }
    for (std::size_t p = 0; p < prompts_.size(); ++p) scalar_fields(all, st[p], logit[p]);
  }
  const std::string bytes = dist::broadcast(all.take());
  ByteReader in(bytes);
  for (std::size_t p = 0; p < prompts_.size(); ++p) {
    CompilerKvState s;
    scalar_fields(in, s, logit[p]);
    if (!owns(p)) prompts_[p].state = std::move(s);
  }
}

std::vector<std::size_t> EvalSet::owned_by(int rank) const {
  std::vector<std::size_t> out;
  for (std::size_t p = 0; p < prompts_.size(); ++p)
    if (prompts_[p].owner == rank) out.push_back(p);
  return out;
}

std::vector<double> EvalSet::rows_to_root(std::vector<double> mine, std::size_t row) const {
  KVSIM_CHECK(mine.size() == owned_.size() * row, "EvalSet::rows_to_root: ", mine.size(), " numbers for ", owned_.size(),
              " prompts of ", row);
  if (!distributed_) return mine;
  ByteWriter w;
  w.put(mine);
  const std::vector<std::string> parts = dist::gather(w.take());
  if (!dist::is_root()) return {};
  std::vector<double> all(prompts_.size() * row), theirs;
  for (int r = 0; r < static_cast<int>(parts.size()); ++r) {
    ByteReader in(parts[r]);
    in.get(theirs);
    const std::vector<std::size_t> ps = owned_by(r);
    KVSIM_CHECK(theirs.size() == ps.size() * row && in.done(), "EvalSet: rank ", r, " sent ", theirs.size(), " numbers for ",
                ps.size(), " prompts of ", row);
    for (std::size_t i = 0; i < ps.size(); ++i)
      std::copy_n(theirs.begin() + static_cast<std::ptrdiff_t>(i * row), row, all.begin() + static_cast<std::ptrdiff_t>(ps[i] * row));
  }
  return all;
}

std::vector<int> assign_prompts(const std::vector<double>& cost, int ranks) {
  KVSIM_CHECK(ranks >= 1, "assign_prompts: no ranks");
  std::vector<std::size_t> order(cost.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return cost[a] > cost[b]; });
  std::vector<double> load(ranks, 0.0);
  std::vector<int> owner(cost.size(), 0);
  for (std::size_t p : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());  // first of the least loaded
    owner[p] = r;
    load[r] += cost[p];
  }
  return owner;
}

EvalSet::~EvalSet() = default;

std::size_t EvalSet::cached_prompts() const {
  return static_cast<std::size_t>(std::count_if(prompts_.begin(), prompts_.end(), [](const EvalPrompt& p) { return p.cached != nullptr; }));
}

std::string EvalSet::reward_description() const {
  if (exact_) return "-exact delta-NLL (teacher-forced re-decode, sim/exact_decode.hpp, nats/token)";
  return logit_rewards_ ? "-estimated_delta_nll: logit-space first-order estimate (dnll_est_logit, nats/token) of "
                          "Sum_l W_O delta_l, metrics/logit_estimate.hpp"
                        : "-estimated_delta_nll fallback: -Sum_l out_err_l (dnll_est_sum, unitless; the traces lack "
                          "/model/classifier or cont_residual)";
}

nlohmann::json EvalSet::trace_provenance() const {
  nlohmann::json a = nlohmann::json::array();
  for (std::size_t t = 0; t < paths_.size(); ++t) {
    const auto& r = traces_->reader(t);
    a.push_back({{"path", paths_[t].string()},
                 {"xxh3", traces_->hash(t)},
                 {"prompts", r.prompts().size()},
                 {"task", r.prompts().empty() ? "" : r.prompts()[0].task},
                 {"model_source", r.model().source}});
  }
  return a;
}

std::string EvalSet::trace_set_hash() const {
  std::vector<std::string> h;
  for (std::size_t t = 0; t < traces_->size(); ++t) h.push_back(traces_->hash(t));
  std::sort(h.begin(), h.end());
  std::string all;
  for (const auto& x : h) all += x;
  return hex64(hash_bytes(all));
}

std::shared_ptr<PromptEvalData> EvalSet::load(std::size_t t, std::size_t i, CompilerKvState* state) const {
  const TraceReader& r = traces_->reader(t);
  auto data = std::make_shared<PromptEvalData>();
  PolicyNeeds needs;
  needs.window = state ? window_ : 0;
  needs.prompt_logprob = state != nullptr;
  ReadPrompt read = traces_->read_prompt(t, i, needs, 0);
  data->tensors = std::move(read.tensors);
  PromptTensors& pt = data->tensors;
  derive_prompt_attention(pt, needs);
  if (state) *state = compilerkv_state(pt.view(), window_, sink_);
  // The exact decoder's prompt cache: the keys/values just read (values stay for the measurements).
  std::vector<std::vector<float>> prompt_keys, prompt_values;
  if (exact_)
    for (auto& ly : pt.layers) prompt_keys.push_back(std::move(ly.keys)), prompt_values.push_back(ly.values);
  // Keep what measuring kept sets reads: values, continuation attention, W_O.
  for (auto& ly : pt.layers) {
    ly.keys = {}, ly.q_window = {}, ly.q_cont = {}, ly.attn_colsum = {}, ly.window_attn = {};
  }
  const PromptView full = pt.view();
  data->layer_views.resize(pt.n_layers);
  data->refs.resize(pt.n_layers);
  tbb::parallel_for(0, pt.n_layers, [&](int l) {
    PromptView v = full;
    v.n_layers = 1;
    v.layers = {full.layers[l]};
    data->layer_views[l] = std::move(v);
    data->refs[l] = layer_reference(data->layer_views[l], 0);
  });
  data->logit = make_logit_estimator(r, i, read.outputs, traces_->classifier(t), traces_->final_norm(t));
  // The exact decoder takes the prompt's keys/values as read above (not read again); they are
  // not part of what measuring kept sets keeps.
  if (exact_) data->exact = std::make_unique<ExactDecoder>(exact_decoder(*exact_, r, i, std::move(prompt_keys), std::move(prompt_values), read.outputs));
  return data;
}

std::pair<EvalPrompt, std::shared_ptr<const PromptEvalData>> EvalSet::read_now(std::size_t p) const {
  EvalPrompt ep = prompts_[p];
  std::shared_ptr<const PromptEvalData> data = load(ep.trace, ep.index, &ep.state);
  return {std::move(ep), std::move(data)};
}

void EvalSet::with_data(std::size_t p, const std::function<void(const PromptEvalData&)>& fn) const {
  const EvalPrompt& ep = prompts_[p];
  KVSIM_CHECK(owns(p), "EvalSet: prompt ", p, " is evaluated on rank ", ep.owner, ", not here");
  if (ep.cached) return fn(*ep.cached);
  const std::shared_ptr<const PromptEvalData> data = load(ep.trace, ep.index, nullptr);
  fn(*data);
}

void evaluate_layer(const EvalPrompt& prompt, const PromptEvalData& data, int l, int B,
                    std::span<const LayerDecision> decisions, std::vector<LayerOutcome>& out, EvalCounters& counters) {
  const CompilerKvState& st = prompt.state;
  const int T = st.T, Hkv = st.n_kv_heads, n = static_cast<int>(decisions.size());
  const PromptView& view = data.layer_views[l];
  // Kept sets, canonical (ascending token index), and which decisions share one.
  std::vector<std::vector<std::int32_t>> kept(n);
  std::vector<int> slot(n, -1), candidates(n);
  std::vector<int> unique;  // decision index of each distinct kept set
  std::vector<float> scores(T);
  std::vector<std::int32_t> order(T);
  for (int k = 0; k < n; ++k) {
    compilerkv_layer_scores(st, l, decisions[k].head_w, scores);
    const ElasticCount c = compilerkv_elastic_count(scores, st.window, decisions[k].tau, B, decisions[k].gate_mode, st.sink);
    candidates[k] = c.candidates;
    // The top c.kept by (score, later token): the prefix of order_by_score, as the policy keeps.
    std::iota(order.begin(), order.end(), 0);
    auto better = [&](std::int32_t a, std::int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && tie_rank(a, st.sink) > tie_rank(b, st.sink));
    };
    if (c.kept < T) std::nth_element(order.begin(), order.begin() + c.kept, order.end(), better);
    kept[k].assign(order.begin(), order.begin() + c.kept);
    std::sort(kept[k].begin(), kept[k].end());
    for (int u : unique)
      if (kept[u] == kept[k]) slot[k] = slot[u];
    if (slot[k] < 0) {
      slot[k] = static_cast<int>(unique.size());
      unique.push_back(k);
    }
  }
  const int nu = static_cast<int>(unique.size());
  Selection sel(nu, nu, 1, Hkv, T);
  std::vector<char> in(T);
  for (int u = 0; u < nu; ++u) {
    const auto& ks = kept[unique[u]];
    std::fill(in.begin(), in.end(), 0);
    for (std::int32_t i : ks) in[i] = 1;
    const std::span<std::int32_t> o = sel.order(u, 0, 0);
    std::copy(ks.begin(), ks.end(), o.begin());
    int pos = static_cast<int>(ks.size());
    for (int i = 0; i < T; ++i)
      if (!in[i]) o[pos++] = i;
    for (int g = 0; g < Hkv; ++g) {
      if (g > 0) std::copy(o.begin(), o.end(), sel.order(u, 0, g).begin());
      sel.count(u, 0, g) = static_cast<int>(ks.size());
    }
  }
  std::vector<LayerMetrics> metrics(nu);
  const std::size_t md = static_cast<std::size_t>(view.M) * view.hidden;
  const bool estimate = data.logit && !data.exact;  // W_O δ feeds the logit estimate only
  std::vector<float> wo_delta(estimate ? nu * md : 0);
  layer_metrics(view, data.refs[l], sel, metrics, wo_delta);
  out.resize(n);
  for (int k = 0; k < n; ++k) {
    LayerOutcome& o = out[k];
    const int u = slot[k];
    o.metrics = metrics[u];
    o.kept = static_cast<int>(kept[k].size());
    o.candidates = candidates[k];
    o.set_id = u;
    if (estimate)
      o.wo_delta.assign(wo_delta.begin() + static_cast<std::ptrdiff_t>(u * md), wo_delta.begin() + static_cast<std::ptrdiff_t>((u + 1) * md));
    else
      o.wo_delta.clear();
    // Only the exact decode reads the kept set itself: the estimate path skips the copy.
    if (data.exact)
      o.kept_tokens = kept[k];
    else
      o.kept_tokens.clear();
  }
  counters.decisions += n;
  counters.measurements += nu;
}

double prompt_reward(const PromptEvalData& data, std::span<const LayerOutcome* const> layers) {
  if (data.exact) {
    // keep [L, Hkv, T]: layer l's kept set for every KV head.
    const int T = data.exact->T(), Hkv = data.tensors.n_kv_heads;
    std::vector<std::uint8_t> keep(layers.size() * Hkv * T, 0);
    for (std::size_t l = 0; l < layers.size(); ++l)
      for (int g = 0; g < Hkv; ++g) {
        std::uint8_t* row = keep.data() + (l * Hkv + g) * T;
        for (std::int32_t i : layers[l]->kept_tokens) row[i] = 1;
      }
    return -data.exact->decode(keep).delta_nll;
  }
  if (!data.logit) {
    double s = 0;  // estimated_delta_nll's fallback: Σ_l out_err_l
    for (const LayerOutcome* o : layers) s += o->metrics.out_err;
    return -s;
  }
  // Δr = Σ_l W_O δ_l in layer order, as the replay sums it.
  std::vector<float> dr(layers[0]->wo_delta.size(), 0.0f);
  for (const LayerOutcome* o : layers)
    for (std::size_t i = 0; i < dr.size(); ++i) dr[i] += o->wo_delta[i];
  return -data.logit->estimate(dr).dnll;
}

double evaluate_table(const EvalPrompt& prompt, const PromptEvalData& data, const DecisionTable& table, int B,
                      std::vector<LayerOutcome>& outcomes, EvalCounters& counters) {
  const int L = prompt.state.n_layers, H = prompt.state.n_heads;
  KVSIM_CHECK(table.model.n_layers == L && table.model.n_heads == H, "table not mapped to the model");
  const int tb = table.budget_index(B);
  const int be = table.entropy_bin(prompt.state.entropy), bp = table.perplexity_bin(prompt.state.perplexity);
  outcomes.resize(L);
  std::vector<LayerOutcome> one;
  for (int l = 0; l < L; ++l) {
    const LayerDecision d{std::span<const float>(&table.head[(static_cast<std::size_t>(tb) * L + l) * H], H),
                          table.gate_at(tb, l, be, bp), table.gate_mode};
    evaluate_layer(prompt, data, l, B, std::span(&d, 1), one, counters);
    outcomes[l] = std::move(one[0]);
  }
  std::vector<const LayerOutcome*> ptrs;
  for (const auto& o : outcomes) ptrs.push_back(&o);
  ++counters.task_rewards;
  return prompt_reward(data, ptrs);
}

}  // namespace kvsim
