#include "sim/validation.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>

#include "core/error.hpp"
#include "metrics/correlation.hpp"
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

Validation::Validation(ReplayOptions options, const Model& model)
    : replay_(with_selections(std::move(options))), fwd_(model) {
  for (std::size_t t = 0; t < replay_.options().traces.size(); ++t) {
    const TraceReader& r = replay_.trace(t);
    check_model_matches(model, r);
    for (const PromptMeta& m : r.prompts())
      if (m.n_cont < 2)
        fail<InputError>(r.path().string(), ": prompt ", m.id, " has ", m.n_cont,
                         " continuation tokens; exact decoding needs at least 2 (trace with --cont-len >= 2)");
  }
}

void Validation::run(const std::function<void(std::size_t, const std::string&)>& progress) {
  const auto& policies = replay_.policies();
  std::size_t done = 0;
  for (std::size_t t = 0; t < replay_.options().traces.size(); ++t) {
    const TraceReader& reader = replay_.trace(t);
    for (std::size_t i = 0; i < reader.prompts().size(); ++i) {
      auto t0 = std::chrono::steady_clock::now();
      const PromptResult r = replay_.replay_prompt(t, i);
      seconds_estimates_ += seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      const ExactDecoder decoder = exact_decoder(fwd_, reader, i);
      const std::vector<ExactResult> exact = exact_sweep(decoder, r.selections);
      seconds_exact_ += seconds_since(t0);
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
          points_.push_back(std::move(pt));
        }
      ++done;
      if (progress) progress(done, r.meta->id);
    }
  }
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
  return out;
}

void Validation::write(const std::filesystem::path& dir, bool overwrite, nlohmann::json manifest) const {
  PartialDir out(dir, overwrite);
  const auto& opts = replay_.options();
  const auto& specs = opts.policies;
  const auto& labels = opts.budgets.labels();
  {
    std::FILE* f = open_write(out / "pairs.csv");
    std::fputs("trace,prompt,task,policy,budget,budget_tokens,kept_per_head,out_err,dnll_est_sum,dnll_est_logit,"
               "dnll_est_kl,nll_exact,dnll_exact,kl_exact\n", f);
    for (const FidelityPoint& p : points_) {
      const std::string row = opts.traces[p.trace].filename().string() + "," + p.prompt + "," + p.task + ",\"" +
                              specs[p.policy] + "\"," + labels[p.budget] + "," + std::to_string(p.budget_tokens) + "," +
                              fmt_g9(p.kept_per_head) + "," + fmt_g9(p.out_err) + "," + fmt_g9(p.est_sum) + "," +
                              fmt_g9(p.est_logit) + "," + fmt_g9(p.est_kl) + "," + fmt_g9(p.exact_nll) + "," +
                              fmt_g9(p.exact_dnll) + "," + fmt_g9(p.exact_kl) + "\n";
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
  manifest["timing_seconds"] = {{"estimates", seconds_estimates_}, {"exact", seconds_exact_}};
  {
    std::ofstream m(out / "manifest.json");
    m << manifest.dump(2) << "\n";
    if (!m) fail<InputError>((out / "manifest.json").string(), ": write failed");
  }
  out.commit();
}

}  // namespace kvsim
