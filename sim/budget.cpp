#include "sim/budget.hpp"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "core/error.hpp"

namespace kvsim {

BudgetSweep BudgetSweep::tokens(std::vector<int> budgets) {
  if (budgets.empty()) fail<InputError>("--budget: no budgets given");
  BudgetSweep s;
  for (int b : budgets) {
    if (b < 1) fail<InputError>("--budget: budget ", b, " must be at least 1 token per KV head");
    s.labels_.push_back(std::to_string(b));
  }
  s.tokens_ = std::move(budgets);
  return s;
}

BudgetSweep BudgetSweep::ratios(std::vector<double> ratios) {
  if (ratios.empty()) fail<InputError>("--ratio: no ratios given");
  BudgetSweep s;
  for (double r : ratios) {
    if (!(r >= 0.0 && r < 1.0)) fail<InputError>("--ratio: compression ratio ", r, " must be in [0, 1)");
    std::ostringstream os;
    os << "r" << r;
    s.labels_.push_back(os.str());
  }
  s.ratios_ = std::move(ratios);
  return s;
}

namespace {

// "64,128" or "64, 128": comma-separated, blanks around entries ignored; an empty entry
// ("8,,16", a trailing comma) is refused rather than skipped, since it is most likely a typo.
std::vector<std::string> split_commas(const std::string& text, const char* option) {
  std::vector<std::string> out;
  std::size_t b = 0;
  while (true) {
    const std::size_t e = std::min(text.find(',', b), text.size());
    const std::size_t first = text.find_first_not_of(' ', b);
    const std::size_t last = text.find_last_not_of(' ', e == 0 ? 0 : e - 1);
    if (first >= e || last == std::string::npos || last < first)
      fail<InputError>(option, ": empty entry in '", text, "' (expected a comma-separated list, e.g. 64,128)");
    const std::string item = text.substr(first, last - first + 1);
    if (item.find(' ') != std::string::npos)
      fail<InputError>(option, ": '", item, "' in '", text, "' is not one value (separate entries with commas)");
    out.push_back(item);
    if (e == text.size()) break;
    b = e + 1;
  }
  return out;
}

}  // namespace

BudgetSweep BudgetSweep::parse(const std::string& budgets, const std::string& ratios) {
  if (!budgets.empty() && !ratios.empty()) fail<InputError>("give --budget or --ratio, not both");
  if (budgets.empty() && ratios.empty()) fail<InputError>("no budgets: give --budget 64,128 or --ratio 0.5");
  if (!budgets.empty()) {
    std::vector<int> v;
    for (const auto& p : split_commas(budgets, "--budget")) {
      char* end = nullptr;
      const long x = std::strtol(p.c_str(), &end, 10);
      if (*end != '\0' || x > (1L << 30) || x < -(1L << 30)) fail<InputError>("--budget: '", p, "' is not an integer");
      v.push_back(static_cast<int>(x));
    }
    return tokens(std::move(v));
  }
  std::vector<double> v;
  for (const auto& p : split_commas(ratios, "--ratio")) {
    char* end = nullptr;
    const double x = std::strtod(p.c_str(), &end);
    if (*end != '\0' || p.empty()) fail<InputError>("--ratio: '", p, "' is not a number");
    v.push_back(x);
  }
  return BudgetSweep::ratios(std::move(v));
}

BudgetPlan BudgetSweep::resolve(int T, const std::string& where) const {
  BudgetPlan plan;
  for (int b : tokens_) {
    if (b > T)
      fail<InputError>(where, ": budget ", b, " tokens per KV head is larger than the prompt (T = ", T,
                       "); use budgets <= T or --ratio");
    plan.per_head.push_back(b);
  }
  plan.per_head_exact.assign(plan.per_head.begin(), plan.per_head.end());
  for (double r : ratios_) {
    // kvpress 0.5.x (ScorerPress.compress): n_kept = int(k_len * (1 - compression_ratio)):
    // the product in double, in that order, then truncation, so 4195 * (1 - 0.8) =
    // 838.9999999999998 keeps 838 and 1024 * (1 - 0.8) = 204.79999999999995 keeps 204.
    // At least 1 token: kvsim's budgets are >= 1 (kvpress would keep none when T·(1 − r) < 1).
    const double exact = T * (1.0 - r);
    plan.per_head.push_back(std::max(1, static_cast<int>(exact)));
    plan.per_head_exact.push_back(exact);
  }
  return plan;
}

}  // namespace kvsim
