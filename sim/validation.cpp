#include "sim/validation.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>

#include "core/bytes.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "metrics/bootstrap.hpp"
#include "metrics/correlation.hpp"
#include "sim/generate.hpp"
#include "sim/output_files.hpp"

namespace kvsim {

namespace {

ReplayOptions with_selections(ReplayOptions o) {
  o.keep_selections = true;
  return o;
}

struct Estimator {
  const char* name;
  double FidelityPoint::*field;
};
constexpr Estimator kEstimators[] = {
    {"sum", &FidelityPoint::est_sum}, {"logit", &FidelityPoint::est_logit}, {"logit_kl", &FidelityPoint::est_kl}};

// An estimator no point has (the logit ones on traces without their datasets) is left out; a
// non-finite estimate anywhere else is an error naming the point.
bool supported(const std::vector<FidelityPoint>& pts, const Estimator& e, const ReplayOptions& o) {
  if (!pts.empty() && std::all_of(pts.begin(), pts.end(), [&](const FidelityPoint& p) { return std::isnan(p.*e.field); }))
    return false;
  for (const FidelityPoint& p : pts)
    if (!std::isfinite(p.*e.field))
      fail<InputError>(o.traces[p.trace].string(), ": prompt ", p.prompt, ": policy ", o.policies[p.policy], ", budget ",
                       o.budgets.labels()[p.budget], ": estimate ", e.name, " is ", p.*e.field,
                       " (traces without /model/classifier and cont_residual have no logit estimates: validate them apart)");
  return true;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Validation::Validation(ReplayOptions options, const Model& model, GenerationOptions generation)
    : replay_(with_selections(std::move(options))), fwd_(model), gen_(std::move(generation)) {
  if (gen_.max_new < 0) fail<InputError>("--generate must be >= 0, got ", gen_.max_new);
  if (gen_.max_new > 0) {
    if (!gen_.tokenizer) fail<InputError>("generation needs the model's tokenizer");
    if (!gen_.scorer.empty()) (void)parse_scorer(gen_.scorer, "--scorer");
    if (gen_.bootstrap < 0) fail<InputError>("--bootstrap must be >= 0, got ", gen_.bootstrap);
  }
  for (std::size_t t = 0; t < replay_.options().traces.size(); ++t) {
    const TraceReader& r = replay_.trace(t);
    check_model_shape(model, r);
    check_model_weights(model, r, replay_.traces().w_o(t)->at(0));  // the replay's copy, not read again
    for (const PromptMeta& m : r.prompts()) {
      if (m.n_cont < 2)
        fail<InputError>(r.path().string(), ": prompt ", m.id, " has ", m.n_cont,
                         " continuation tokens; exact decoding needs at least 2 (trace with --cont-len >= 2)");
      if (gen_.max_new > 0) {
        const std::string where = r.path().string() + ": prompt " + m.id;
        const Scorer s = prompt_scorer(m, where);
        if (!m.answers.empty()) check_gold(s, m.answers, where + ": answers");
      }
    }
  }
}

Scorer Validation::prompt_scorer(const PromptMeta& m, const std::string& where) const {
  if (!gen_.scorer.empty()) return parse_scorer(gen_.scorer, "--scorer");
  if (!m.scorer.empty()) return parse_scorer(m.scorer, where + ": scorer");
  // Without gold answers the reference continuation is the gold: a text, scored by overlap.
  return m.answers.empty() ? Scorer::kRougeL : default_scorer(m.task);
}

void Validation::generate_prompt(std::size_t t, const PromptResult& r, const PromptOutputs& outs,
                                 const ExactDecoder& decoder, PromptValidation& out) const {
  const TraceReader& reader = replay_.trace(t);
  const PromptMeta& meta = *r.meta;
  const std::string where = reader.path().string() + ": prompt " + meta.id;
  const int T = meta.n_prompt;
  // Gold answers: the trace's (RULER outputs, LongBench answers; checked by the constructor),
  // else the continuation text, checked here where it is first decoded.
  const Scorer scorer = prompt_scorer(meta, where);
  std::vector<std::string> gold = meta.answers;
  if (gold.empty()) {
    const std::vector<int> cont(outs.tokens.begin() + T, outs.tokens.end());
    gold.push_back(gen_.tokenizer->decode(cont));
    check_gold(scorer, gold, where + ": gold answers (the reference continuation)");
  }
  // Jobs: the full cache first, then each distinct kept set once.
  const int P = static_cast<int>(r.selections.size()), B = static_cast<int>(r.budget_tokens.size());
  std::vector<std::vector<std::uint8_t>> jobs(1);
  std::vector<int> job_of(static_cast<std::size_t>(P) * B, 0);
  std::map<std::uint64_t, std::vector<int>> by_hash;
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < B; ++b) {
      const FidelityPoint& pt = out.points[static_cast<std::size_t>(p) * B + b];
      if (pt.keeps_all) continue;  // job 0
      std::vector<std::uint8_t> keep = keep_mask(r.selections[p], b);
      const std::uint64_t h = hash_bytes(std::as_bytes(std::span(keep)));
      int found = -1;
      for (int j : by_hash[h])
        if (jobs[j] == keep) found = j;
      if (found < 0) {
        found = static_cast<int>(jobs.size());
        by_hash[h].push_back(found);
        jobs.push_back(std::move(keep));
      }
      job_of[static_cast<std::size_t>(p) * B + b] = found;
    }
  if (outs.cont_topk_ids.empty()) fail<InputError>(where, ": no cont_topk_ids (top-K 0); generation needs the prefill's argmax");
  const GreedyGenerator generator(fwd_, decoder.cache(), outs.cont_topk_ids[0], gen_.stop);
  const std::vector<std::vector<int>> tokens = generator.generate(jobs, gen_.max_new);
  out.generation_jobs += jobs.size();
  std::vector<std::string> texts(jobs.size());
  std::vector<double> scores(jobs.size());
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    texts[j] = gen_.tokenizer->decode(tokens[j]);
    scores[j] = task_score(scorer, texts[j], gold);
  }
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < B; ++b) {
      FidelityPoint& pt = out.points[static_cast<std::size_t>(p) * B + b];
      const int j = job_of[static_cast<std::size_t>(p) * B + b];
      pt.score = scores[j], pt.score_full = scores[0], pt.text = texts[j];
      pt.generated_tokens = static_cast<int>(tokens[j].size());
    }
  out.generation.push_back({t, meta.id, meta.task, std::string(scorer_name(scorer)), std::move(gold), texts[0], scores[0],
                          static_cast<int>(tokens[0].size())});
}

PromptValidation Validation::evaluate_prompt(std::size_t t, std::size_t i) const {
  const auto& policies = replay_.policies();
  const TraceReader& reader = replay_.trace(t);
  PromptValidation out;
  auto t0 = std::chrono::steady_clock::now();
  // The prompt is read once: the replay's keys, values and outputs feed the exact decode and
  // the generation.
  ReadPrompt read;
  const PromptResult r = replay_.replay_prompt(t, i, read);
  out.seconds_estimates = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<float>> keys, values;
  for (LayerTensors& ly : read.tensors.layers) keys.push_back(std::move(ly.keys)), values.push_back(std::move(ly.values));
  read.tensors = {};  // the rest (queries, derived attention) is not needed any more
  const ExactDecoder decoder = exact_decoder(fwd_, reader, i, std::move(keys), std::move(values), read.outputs);
  const std::vector<ExactResult> exact = exact_sweep(decoder, r.selections);
  out.seconds_exact = seconds_since(t0);
  const int B = static_cast<int>(r.budget_tokens.size()), L = r.n_layers;
  for (int p = 0; p < static_cast<int>(policies.size()); ++p)
    for (int b = 0; b < B; ++b) {
      FidelityPoint pt;
      pt.trace = t, pt.prompt = r.meta->id, pt.task = r.meta->task;
      pt.policy = p, pt.budget = b, pt.budget_tokens = r.budget_tokens[b];
      const long kept = r.selections[p].total_kept(b);
      pt.kept_per_head = static_cast<double>(kept) / (static_cast<double>(L) * r.n_kv_heads);
      pt.keeps_all = kept == static_cast<long>(L) * r.n_kv_heads * r.meta->n_prompt;
      for (int l = 0; l < L; ++l) pt.out_err += r.at(p, l, b).out_err / L;
      pt.est_sum = r.est_sum(p, b), pt.est_logit = r.est_logit(p, b), pt.est_kl = r.est_kl(p, b);
      const ExactResult& e = exact[static_cast<std::size_t>(p) * B + b];
      pt.exact_nll = e.nll, pt.exact_dnll = e.delta_nll, pt.exact_kl = e.kl;
      out.points.push_back(std::move(pt));
    }
  if (gen_.max_new > 0) {
    t0 = std::chrono::steady_clock::now();
    generate_prompt(t, r, read.outputs, decoder, out);
    out.seconds_generate = seconds_since(t0);
  }
  return out;
}

void Validation::add(PromptValidation&& v) {
  for (FidelityPoint& p : v.points) points_.push_back(std::move(p));
  for (PromptGeneration& g : v.generation) generations_.push_back(std::move(g));
  seconds_estimates_ += v.seconds_estimates, seconds_exact_ += v.seconds_exact, seconds_generate_ += v.seconds_generate;
  generation_jobs_ += v.generation_jobs;
}

void Validation::run(const std::function<void(std::size_t, const std::string&)>& progress) {
  // Through core/dist's job in a single process too (compute then deliver, in order), so that
  // the results every rank sends travel through the same encoding here.
  const std::vector<TraceItem> items = replay_.traces().items();
  dist::Job job;
  job.items = items.size();
  job.compute = [&](std::size_t k) { return encode_prompt_validation(evaluate_prompt(items[k].trace, items[k].prompt)); };
  job.deliver = [&](std::size_t k, std::string&& bytes) {
    add(decode_prompt_validation(bytes));
    if (progress) progress(k + 1, replay_.trace(items[k].trace).prompts()[items[k].prompt].id);
  };
  job.label = [&](std::size_t k) { return item_label(replay_.traces(), items[k]); };
  // Replay, exact decode and generation all grow with the prompt length.
  job.cost = [&](std::size_t k) {
    return static_cast<double>(replay_.trace(items[k].trace).prompts()[items[k].prompt].n_prompt);
  };
  dist::run_job(job);
}

namespace {

// The fields that travel, one list for both directions (core/bytes.hpp).
template <typename Archive, typename Point>
void point_fields(Archive& a, Point& p) {
  a.io(p.trace, p.prompt, p.task, p.policy, p.budget, p.budget_tokens, p.kept_per_head, p.keeps_all, p.out_err,
       p.est_sum, p.est_logit, p.est_kl, p.exact_nll, p.exact_dnll, p.exact_kl, p.score, p.score_full,
       p.generated_tokens, p.text);
}

template <typename Archive, typename Generation>
void generation_fields(Archive& a, Generation& g) {
  a.io(g.trace, g.prompt, g.task, g.scorer, g.gold, g.text_full, g.score_full, g.generated_tokens);
}

template <typename Archive, typename Validation>
void cost_fields(Archive& a, Validation& v) {
  a.io(v.seconds_estimates, v.seconds_exact, v.seconds_generate, v.generation_jobs);
}

}  // namespace

std::string encode_prompt_validation(const PromptValidation& v) {
  ByteWriter w;
  w.put<std::uint64_t>(v.points.size());
  for (const FidelityPoint& p : v.points) point_fields(w, p);
  w.put<std::uint64_t>(v.generation.size());
  for (const PromptGeneration& g : v.generation) generation_fields(w, g);
  cost_fields(w, v);
  return w.take();
}

PromptValidation decode_prompt_validation(std::string_view bytes) {
  ByteReader r(bytes);
  PromptValidation v;
  v.points.resize(r.get<std::uint64_t>());
  for (FidelityPoint& p : v.points) point_fields(r, p);
  v.generation.resize(r.get<std::uint64_t>());
  for (PromptGeneration& g : v.generation) generation_fields(r, g);
  cost_fields(r, v);
  KVSIM_CHECK(r.done(), "decode_prompt_validation: trailing bytes");
  return v;
}

std::vector<CorrelationRow> Validation::correlations() const {
  std::vector<CorrelationRow> rows;
  const auto& specs = replay_.options().policies;
  const auto& labels = replay_.options().budgets.labels();
  auto add = [&](const std::string& scope, const std::string& name, const std::function<bool(const FidelityPoint&)>& in) {
    for (const auto& [target, exact] : {std::pair{"dnll", &FidelityPoint::exact_dnll}, std::pair{"kl", &FidelityPoint::exact_kl}})
      for (const Estimator& e : kEstimators) {
        if (!supported(points_, e, replay_.options())) continue;
        std::vector<double> x, y;
        for (const FidelityPoint& p : points_)
          if (in(p)) x.push_back(p.*e.field), y.push_back(p.*exact);
        rows.push_back({scope, name, e.name, target, x.size(), spearman(x, y), pearson(x, y), kendall_tau_b(x, y)});
      }
  };
  add("all", "all", [](const FidelityPoint&) { return true; });
  add("compressed", "all", [](const FidelityPoint& p) { return !p.keeps_all; });
  for (int q = 0; q < static_cast<int>(specs.size()); ++q)
    add("policy", specs[q], [q](const FidelityPoint& p) { return p.policy == q; });
  for (int b = 0; b < static_cast<int>(labels.size()); ++b)
    add("budget", labels[b], [b](const FidelityPoint& p) { return p.budget == b; });
  return rows;
}

std::vector<RankingRow> Validation::rankings() const {
  std::vector<RankingRow> rows;
  const auto& specs = replay_.options().policies;
  const auto& labels = replay_.options().budgets.labels();
  const int P = static_cast<int>(specs.size());
  for (int b = 0; b < static_cast<int>(labels.size()); ++b)
    for (const Estimator& e : kEstimators) {
      if (!supported(points_, e, replay_.options())) continue;
      std::vector<double> est(P, 0.0), exact(P, 0.0), n(P, 0.0);
      for (const FidelityPoint& p : points_)
        if (p.budget == b) est[p.policy] += p.*e.field, exact[p.policy] += p.exact_dnll, n[p.policy] += 1;
      for (int q = 0; q < P; ++q) est[q] /= std::max(1.0, n[q]), exact[q] /= std::max(1.0, n[q]);
      const auto best_est = std::min_element(est.begin(), est.end()) - est.begin();
      const auto best_exact = std::min_element(exact.begin(), exact.end()) - exact.begin();
      rows.push_back({labels[b], e.name, P, kendall_tau_b(est, exact), specs[best_est], specs[best_exact]});
    }
  return rows;
}

std::vector<ScoreRow> Validation::scores() const {
  std::vector<ScoreRow> rows;
  if (gen_.max_new <= 0) return rows;
  const int P = static_cast<int>(replay_.options().policies.size());
  const int B = static_cast<int>(replay_.options().budgets.labels().size());
  std::vector<std::string> tasks = {"all"};
  for (const FidelityPoint& p : points_)
    if (std::find(tasks.begin(), tasks.end(), p.task) == tasks.end()) tasks.push_back(p.task);
  if (tasks.size() == 2) tasks.pop_back();  // one task: "all" says it
  for (std::size_t k = 0; k < tasks.size(); ++k)
    for (int q = 0; q < P; ++q)
      for (int b = 0; b < B; ++b) {
        ScoreRow row;
        row.task = tasks[k], row.policy = q, row.budget = b;
        std::vector<double> s, f;
        for (const FidelityPoint& p : points_)
          if (p.policy == q && p.budget == b && (k == 0 || p.task == tasks[k])) {
            s.push_back(p.score), f.push_back(p.score_full);
            row.kept_per_head += p.kept_per_head, row.dnll_exact += p.exact_dnll, row.out_err += p.out_err;
            row.est_logit += p.est_logit;
          }
        row.n = s.size();
        if (row.n == 0) continue;
        const double n = static_cast<double>(row.n);
        row.kept_per_head /= n, row.dnll_exact /= n, row.out_err /= n, row.est_logit /= n;
        // One seed per cell, so adding a policy or a task does not move the other cells' CIs.
        const std::uint64_t seed = gen_.seed + 1000003ull * static_cast<std::uint64_t>(q * B + b);
        const MeanCi m = mean_ci(s, gen_.bootstrap, seed);
        row.score = m.mean, row.score_lo = m.lo, row.score_hi = m.hi;
        const RatioCi r = percent_of_reference(s, f, gen_.bootstrap, seed);
        row.pct_full = r.ratio, row.pct_lo = r.lo, row.pct_hi = r.hi;
        rows.push_back(row);
      }
  return rows;
}

std::vector<DecisionRow> Validation::decisions() const {
  std::vector<DecisionRow> rows;
  if (gen_.max_new <= 0) return rows;
  const auto& labels = replay_.options().budgets.labels();
  const int P = static_cast<int>(replay_.options().policies.size()), B = static_cast<int>(labels.size());
  const Estimator predictors[] = {{"out_err", &FidelityPoint::out_err}, {"sum", &FidelityPoint::est_sum},
                                  {"logit", &FidelityPoint::est_logit}, {"logit_kl", &FidelityPoint::est_kl},
                                  {"dnll_exact", &FidelityPoint::exact_dnll}};
  for (const Estimator& pr : predictors) {
    if (!supported(points_, pr, replay_.options())) continue;
    // Cell means [P, B] of the predictor and of −score (both: lower = better).
    std::vector<double> x(static_cast<std::size_t>(P) * B, 0.0), y(x.size(), 0.0), n(x.size(), 0.0);
    for (const FidelityPoint& p : points_) {
      const std::size_t c = static_cast<std::size_t>(p.policy) * B + p.budget;
      x[c] += p.*pr.field, y[c] -= p.score, n[c] += 1;
    }
    for (std::size_t c = 0; c < x.size(); ++c) x[c] /= std::max(1.0, n[c]), y[c] /= std::max(1.0, n[c]);
    for (int b = 0; b < B; ++b) {
      std::vector<double> xb, yb;
      for (int q = 0; q < P; ++q) xb.push_back(x[static_cast<std::size_t>(q) * B + b]), yb.push_back(y[static_cast<std::size_t>(q) * B + b]);
      rows.push_back({"budget", labels[b], pr.name, P, kendall_tau_b(xb, yb), spearman(xb, yb)});
    }
    rows.push_back({"cells", "all", pr.name, P * B, kendall_tau_b(x, y), spearman(x, y)});
  }
  return rows;
}

std::string Validation::report() const {
  std::string out;
  char buf[512];
  for (const char* target : {"dnll", "kl"}) {
    out += std::string(target) == "dnll" ? "estimate vs exact delta-NLL (signed, nats per token):\n"
                                         : "\nestimate vs exact KL(full || compressed) (nats per position):\n";
    std::snprintf(buf, sizeof buf, "%-12s %-44s %-9s %6s %9s %9s %9s\n", "scope", "name", "estimator", "n", "spearman",
                  "pearson", "kendall");
    out += buf;
    for (const CorrelationRow& r : correlations()) {
      if (r.target != target) continue;
      std::snprintf(buf, sizeof buf, "%-12s %-44s %-9s %6zu %9.4f %9.4f %9.4f\n", r.scope.c_str(),
                    r.name.substr(0, 44).c_str(), r.estimator.c_str(), r.n, r.spearman, r.pearson, r.kendall);
      out += buf;
    }
  }
  out += "\npolicy ranking agreement per budget (Kendall tau-b between the orders by mean estimate and mean exact):\n";
  std::snprintf(buf, sizeof buf, "%-8s %-9s %9s  %-32s %-32s\n", "budget", "estimator", "kendall", "best (estimated)",
                "best (exact)");
  out += buf;
  for (const RankingRow& r : rankings()) {
    std::snprintf(buf, sizeof buf, "%-8s %-9s %9.4f  %-32s %-32s\n", r.budget.c_str(), r.estimator.c_str(), r.kendall,
                  r.best_estimated.substr(0, 32).c_str(), r.best_exact.substr(0, 32).c_str());
    out += buf;
  }
  if (gen_.max_new <= 0) return out;
  const auto& specs = replay_.options().policies;
  const auto& labels = replay_.options().budgets.labels();
  out += "\ntask score of greedy generation (" + std::to_string(gen_.max_new) +
         " tokens) from the compressed cache, % of FullKV [95% CI], kept tokens per head:\n";
  std::snprintf(buf, sizeof buf, "%-10s %-36s %-8s %6s %7s %24s %9s\n", "task", "policy", "budget", "n", "score",
                "% of FullKV", "kept");
  out += buf;
  for (const ScoreRow& r : scores()) {
    std::snprintf(buf, sizeof buf, "%-10s %-36s %-8s %6zu %7.3f %8.1f [%5.1f, %5.1f] %9.1f\n", r.task.substr(0, 10).c_str(),
                  specs[r.policy].substr(0, 36).c_str(), labels[r.budget].c_str(), r.n, r.score, 100 * r.pct_full,
                  100 * r.pct_lo, 100 * r.pct_hi, r.kept_per_head);
    out += buf;
  }
  out += "\ndecision-level fidelity: policy rankings by each predictor vs by task score (Kendall tau-b, Spearman):\n";
  std::snprintf(buf, sizeof buf, "%-7s %-8s %-11s %5s %9s %9s\n", "scope", "budget", "predictor", "n", "kendall", "spearman");
  out += buf;
  for (const DecisionRow& r : decisions()) {
    std::snprintf(buf, sizeof buf, "%-7s %-8s %-11s %5d %9.4f %9.4f\n", r.scope.c_str(), r.budget.c_str(),
                  r.predictor.c_str(), r.n, r.kendall, r.spearman);
    out += buf;
  }
  return out;
}

void Validation::write(const std::filesystem::path& dir, bool overwrite, nlohmann::json manifest) const {
  PartialDir out(dir, overwrite);
  const auto& opts = replay_.options();
  const auto& specs = opts.policies;
  const auto& labels = opts.budgets.labels();
  const bool gen = gen_.max_new > 0;
  {
    std::FILE* f = open_write(out / "pairs.csv");
    std::fputs("trace,prompt,task,policy,budget,budget_tokens,kept_per_head,out_err,dnll_est_sum,dnll_est_logit,"
               "dnll_est_kl,nll_exact,dnll_exact,kl_exact", f);
    std::fputs(gen ? ",score,score_full,generated_tokens\n" : "\n", f);
    for (const FidelityPoint& p : points_) {
      const std::string row = opts.traces[p.trace].filename().string() + "," + p.prompt + "," + p.task + ",\"" +
                              specs[p.policy] + "\"," + labels[p.budget] + "," + std::to_string(p.budget_tokens) + "," +
                              fmt_g9(p.kept_per_head) + "," + fmt_g9(p.out_err) + "," + fmt_g9(p.est_sum) + "," +
                              fmt_g9(p.est_logit) + "," + fmt_g9(p.est_kl) + "," + fmt_g9(p.exact_nll) + "," +
                              fmt_g9(p.exact_dnll) + "," + fmt_g9(p.exact_kl) +
                              (gen ? "," + fmt_g9(p.score) + "," + fmt_g9(p.score_full) + "," + std::to_string(p.generated_tokens) : "") +
                              "\n";
      std::fputs(row.c_str(), f);
    }
    close_checked(f, out / "pairs.csv");
  }
  {
    std::FILE* f = open_write(out / "correlations.csv");
    std::fputs("scope,name,estimator,target,n,spearman,pearson,kendall\n", f);
    for (const CorrelationRow& r : correlations()) {
      const std::string row = r.scope + ",\"" + r.name + "\"," + r.estimator + "," + r.target + "," + std::to_string(r.n) + "," +
                              fmt_g9(r.spearman) + "," + fmt_g9(r.pearson) + "," + fmt_g9(r.kendall) + "\n";
      std::fputs(row.c_str(), f);
    }
    close_checked(f, out / "correlations.csv");
  }
  {
    std::FILE* f = open_write(out / "rankings.csv");
    std::fputs("budget,estimator,n_policies,kendall,best_estimated,best_exact\n", f);
    for (const RankingRow& r : rankings()) {
      const std::string row = r.budget + "," + r.estimator + "," + std::to_string(r.n_policies) + "," +
                              fmt_g9(r.kendall) + ",\"" + r.best_estimated + "\",\"" + r.best_exact + "\"\n";
      std::fputs(row.c_str(), f);
    }
    close_checked(f, out / "rankings.csv");
  }
  if (gen) {
    std::FILE* f = open_write(out / "scores.csv");
    std::fputs("task,policy,budget,n,kept_per_head,score,score_lo,score_hi,pct_full,pct_full_lo,pct_full_hi,dnll_exact,"
               "out_err,dnll_est_logit\n", f);
    for (const ScoreRow& r : scores()) {
      const std::string row = r.task + ",\"" + specs[r.policy] + "\"," + labels[r.budget] + "," + std::to_string(r.n) + "," +
                              fmt_g9(r.kept_per_head) + "," + fmt_g9(r.score) + "," + fmt_g9(r.score_lo) + "," +
                              fmt_g9(r.score_hi) + "," + fmt_g9(r.pct_full) + "," + fmt_g9(r.pct_lo) + "," +
                              fmt_g9(r.pct_hi) + "," + fmt_g9(r.dnll_exact) + "," + fmt_g9(r.out_err) + "," +
                              fmt_g9(r.est_logit) + "\n";
      std::fputs(row.c_str(), f);
    }
    close_checked(f, out / "scores.csv");
    f = open_write(out / "decisions.csv");
    std::fputs("scope,budget,predictor,n,kendall,spearman\n", f);
    for (const DecisionRow& r : decisions()) {
      const std::string row = r.scope + "," + r.budget + "," + r.predictor + "," + std::to_string(r.n) + "," +
                              fmt_g9(r.kendall) + "," + fmt_g9(r.spearman) + "\n";
      std::fputs(row.c_str(), f);
    }
    close_checked(f, out / "decisions.csv");
    // One JSON line per prompt (the full cache's text and the gold answers), then per point.
    f = open_write(out / "generations.jsonl");
    auto line = [&](const nlohmann::json& j) {
      std::fputs((j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), f);
    };
    for (const PromptGeneration& g : generations_)
      line({{"trace", opts.traces[g.trace].filename().string()}, {"prompt", g.prompt}, {"task", g.task},
            {"policy", "FullKV"}, {"scorer", g.scorer}, {"gold", g.gold}, {"text", g.text_full},
            {"score", g.score_full}, {"generated_tokens", g.generated_tokens}});
    for (const FidelityPoint& p : points_)
      line({{"trace", opts.traces[p.trace].filename().string()}, {"prompt", p.prompt}, {"task", p.task},
            {"policy", specs[p.policy]}, {"budget", labels[p.budget]}, {"kept_per_head", p.kept_per_head},
            {"text", p.text}, {"score", p.score}, {"generated_tokens", p.generated_tokens}});
    close_checked(f, out / "generations.jsonl");
    manifest["generation"] = {{"max_new", gen_.max_new},
                              {"scorer", gen_.scorer.empty() ? "per prompt (trace scorer, else by task)" : gen_.scorer},
                              {"stop_ids", gen_.stop},
                              {"bootstrap", gen_.bootstrap},
                              {"seed", gen_.seed},
                              {"jobs", generation_jobs_}};
  }
  manifest["timing_seconds"] = {{"estimates", seconds_estimates_}, {"exact", seconds_exact_}};
  if (gen) manifest["timing_seconds"]["generate"] = seconds_generate_;
  {
    std::ofstream m(out / "manifest.json");
    m << manifest.dump(2) << "\n";
    if (!m) fail<InputError>((out / "manifest.json").string(), ": write failed");
  }
  out.commit();
}

}  // namespace kvsim
