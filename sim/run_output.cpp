#include "sim/run_output.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <fstream>

#include "core/error.hpp"
#include "sim/output_files.hpp"

namespace kvsim {

namespace {

std::string fmt(double x) { return fmt_g9(x); }

}  // namespace

void RunOutput::Sums::add(const Sums& s) {
  n += s.n;
  budget_tokens += s.budget_tokens, kept_per_head += s.kept_per_head, kept_bytes += s.kept_bytes;
  out_err += s.out_err, out_err_value += s.out_err_value, recall += s.recall;
  dnll_est_sum += s.dnll_est_sum, dnll_est_logit += s.dnll_est_logit;
}

RunOutput::RunOutput(const Replay& replay, std::filesystem::path dir, bool overwrite, std::filesystem::path dump_kept)
    : replay_(replay), dir_(std::move(dir)), dump_(std::move(dump_kept)) {
  namespace fs = std::filesystem;
  if (fs::exists(dir_) && !overwrite) fail<InputError>(dir_.string(), ": already exists (pass --overwrite to replace it)");
  if (!dump_.empty() && fs::exists(dump_) && !overwrite)
    fail<InputError>(dump_.string(), ": already exists (pass --overwrite to replace it)");
  partial_ = dir_;
  partial_ += ".partial";
  make_fresh_dir(partial_);
  layers_ = open_write(partial_ / "layers.csv");
  std::fputs("trace,prompt,task,policy,budget,budget_tokens,layer,kept_tokens,kept_bytes,out_err,out_err_value,recall\n",
             layers_);
  if (!dump_.empty()) {
    dump_partial_ = dump_;
    dump_partial_ += ".partial";
    kept_ = open_write(dump_partial_);
    std::fputs("trace,prompt,policy,budget,layer,kv_head,count,kept\n", kept_);
  }
  prompt_rows_ = open_write(partial_ / "summary.prompts");
  const std::size_t pb = replay_.policies().size() * replay_.options().budgets.size();
  overall_.assign(pb, Sums{});
}

RunOutput::~RunOutput() {
  if (layers_) std::fclose(layers_);
  if (kept_) std::fclose(kept_);
  if (prompt_rows_) std::fclose(prompt_rows_);
  if (!finished_) {
    std::error_code ec;
    std::filesystem::remove_all(partial_, ec);
    if (!dump_partial_.empty()) std::filesystem::remove(dump_partial_, ec);
  }
}

void RunOutput::add(const PromptResult& r) {
  const auto& opts = replay_.options();
  const std::string trace = opts.traces[r.trace].filename().string();
  const auto& labels = opts.budgets.labels();
  const int P = static_cast<int>(replay_.policies().size()), B = static_cast<int>(r.budget_tokens.size()), L = r.n_layers;
  const double kv_bytes_per_token = 2.0 * r.head_dim * 2.0;  // K and V, fp16
  std::string rows;
  auto& task = per_task_[r.meta->task];
  if (task.empty()) task.assign(static_cast<std::size_t>(P) * B, Sums{});
  for (int p = 0; p < P; ++p) {
    const std::string& spec = replay_.policies()[p]->spec();
    const std::string quoted = "\"" + spec + "\"";
    for (int b = 0; b < B; ++b) {
      Sums s;
      s.n = 1;
      s.budget_tokens = r.budget_tokens[b];
      long kept_total = 0;
      for (int l = 0; l < L; ++l) {
        const LayerMetrics& m = r.at(p, l, b);
        rows += trace + "," + r.meta->id + "," + r.meta->task + "," + quoted + "," + labels[b] + "," +
                std::to_string(r.budget_tokens[b]) + "," + std::to_string(l) + "," + std::to_string(m.kept) + "," +
                fmt(static_cast<double>(m.kept) * kv_bytes_per_token) + "," + fmt(m.out_err) + "," +
                fmt(m.out_err_value) + "," + fmt(m.recall) + "\n";
        kept_total += m.kept;
        s.out_err += m.out_err / L, s.out_err_value += m.out_err_value / L, s.recall += m.recall / L;
      }
      s.kept_per_head = static_cast<double>(kept_total) / (static_cast<double>(L) * r.n_kv_heads);
      s.kept_bytes = static_cast<double>(kept_total) * kv_bytes_per_token;
      s.dnll_est_sum = r.est_sum(p, b), s.dnll_est_logit = r.est_logit(p, b);
      const std::size_t k = static_cast<std::size_t>(p) * B + b;
      task[k].add(s);
      overall_[k].add(s);
      const std::string prow = "prompt," + trace + ":" + r.meta->id + "," + quoted + "," + labels[b] + ",1," +
                               fmt(s.budget_tokens) + "," + fmt(s.kept_per_head) + "," + fmt(s.kept_bytes) + "," +
                               fmt(s.out_err) + "," + fmt(s.out_err_value) + "," + fmt(s.recall) + "," +
                               fmt(s.dnll_est_sum) + "," + fmt(s.dnll_est_logit) + "\n";
      std::fputs(prow.c_str(), prompt_rows_);
      if (!r.selections.empty())
        for (int l = 0; l < L; ++l)
          for (int g = 0; g < r.n_kv_heads; ++g) {
            auto& [sum, n] = kept_per_head_[{p, b, l, g}];
            sum += static_cast<long long>(r.selections[p].kept(b, l, g).size());
            ++n;
          }
      if (kept_ && !r.selections.empty()) {
        const Selection& sel = r.selections[p];
        std::string line;
        for (int l = 0; l < L; ++l)
          for (int g = 0; g < r.n_kv_heads; ++g) {
            auto kept = sel.kept(b, l, g);
            std::vector<std::int32_t> sorted(kept.begin(), kept.end());
            std::sort(sorted.begin(), sorted.end());
            line = trace + "," + r.meta->id + "," + quoted + "," + labels[b] + "," + std::to_string(l) + "," +
                   std::to_string(g) + "," + std::to_string(sorted.size()) + ",";
            for (std::size_t i = 0; i < sorted.size(); ++i) line += (i ? " " : "") + std::to_string(sorted[i]);
            line += "\n";
            std::fputs(line.c_str(), kept_);
          }
      }
    }
  }
  std::fputs(rows.c_str(), layers_);
}

void RunOutput::write_summary_row(std::FILE* f, const std::string& scope, const std::string& name, int p, int b,
                                  const Sums& s) {
  const double n = std::max(1, s.n);
  const std::string row = scope + "," + name + ",\"" + replay_.policies()[p]->spec() + "\"," +
                          replay_.options().budgets.labels()[b] + "," + std::to_string(s.n) + "," +
                          fmt(s.budget_tokens / n) + "," + fmt(s.kept_per_head / n) + "," + fmt(s.kept_bytes / n) + "," +
                          fmt(s.out_err / n) + "," + fmt(s.out_err_value / n) + "," + fmt(s.recall / n) + "," +
                          fmt(s.dnll_est_sum / n) + "," + fmt(s.dnll_est_logit / n) + "\n";
  std::fputs(row.c_str(), f);
}

void RunOutput::finish(const nlohmann::json& manifest) {
  namespace fs = std::filesystem;
  close_checked(layers_, partial_ / "layers.csv");
  close_checked(kept_, dump_partial_);
  const int P = static_cast<int>(replay_.policies().size()), B = replay_.options().budgets.size();
  std::FILE* f = open_write(partial_ / "summary.csv");
  std::fputs("scope,name,policy,budget,n_prompts,budget_tokens,kept_per_head,kept_bytes,out_err,out_err_value,recall,"
             "dnll_est_sum,dnll_est_logit\n", f);
  close_checked(prompt_rows_, partial_ / "summary.prompts");
  {
    std::FILE* in = std::fopen((partial_ / "summary.prompts").c_str(), "rb");
    if (!in) fail<InputError>((partial_ / "summary.prompts").string(), ": cannot reopen");
    char buf[1 << 16];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, in)) > 0;) std::fwrite(buf, 1, n, f);
    std::fclose(in);
    fs::remove(partial_ / "summary.prompts");
  }
  for (const auto& [task, sums] : per_task_)
    for (int p = 0; p < P; ++p)
      for (int b = 0; b < B; ++b) write_summary_row(f, "task", task, p, b, sums[static_cast<std::size_t>(p) * B + b]);
  for (int p = 0; p < P; ++p)
    for (int b = 0; b < B; ++b) write_summary_row(f, "all", "all", p, b, overall_[static_cast<std::size_t>(p) * B + b]);
  close_checked(f, partial_ / "summary.csv");
  if (!kept_per_head_.empty()) {
    std::FILE* k = open_write(partial_ / "kept.csv");
    std::fputs("policy,budget,layer,kv_head,n_prompts,kept_mean\n", k);
    const auto& labels = replay_.options().budgets.labels();
    for (const auto& [key, v] : kept_per_head_) {
      const std::string row = "\"" + replay_.policies()[key[0]]->spec() + "\"," + labels[key[1]] + "," +
                              std::to_string(key[2]) + "," + std::to_string(key[3]) + "," + std::to_string(v.second) +
                              "," + fmt(static_cast<double>(v.first) / v.second) + "\n";
      std::fputs(row.c_str(), k);
    }
    close_checked(k, partial_ / "kept.csv");
  }
  {
    std::ofstream m(partial_ / "manifest.json");
    m << manifest.dump(2) << "\n";
    if (!m) fail<InputError>((partial_ / "manifest.json").string(), ": write failed");
  }
  fs::remove_all(dir_);
  fs::rename(partial_, dir_);
  if (!dump_.empty()) fs::rename(dump_partial_, dump_);
  finished_ = true;
}

std::string RunOutput::comparison_table() const {
  const int P = static_cast<int>(replay_.policies().size()), B = replay_.options().budgets.size();
  const auto& labels = replay_.options().budgets.labels();
  std::size_t w = 6;
  // Rows are labelled with the specs as the user wrote them (the canonical spec, every
  // parameter written out, is in the CSVs and the manifest).
  const auto& names = replay_.options().policies;
  for (const auto& n : names) w = std::max(w, n.size() + 1);
  w = std::min<std::size_t>(std::max<std::size_t>(w, 16), 60);
  std::string out;
  char buf[128];
  auto pad = [&](const std::string& s) { return s.size() >= w ? s.substr(0, w) : s + std::string(w - s.size(), ' '); };
  out += pad("policy \\ budget");
  for (const auto& l : labels) std::snprintf(buf, sizeof buf, " %10s", l.c_str()), out += buf;
  out += "\n";
  bool uneven = false;
  for (int p = 0; p < P; ++p) {
    out += pad(names[p]);
    for (int b = 0; b < B; ++b) {
      const Sums& s = overall_[static_cast<std::size_t>(p) * B + b];
      std::snprintf(buf, sizeof buf, " %10.4f", s.out_err / std::max(1, s.n));
      out += buf;
      if (replay_.policies()[p]->respects_budget() && s.kept_per_head + 1e-9 < s.budget_tokens) uneven = true;
    }
    out += "\n";
  }
  if (uneven) {
    out += "\nmean kept tokens per KV head (where a policy keeps less than the budget):\n";
    for (int p = 0; p < P; ++p) {
      out += pad(names[p]);
      for (int b = 0; b < B; ++b) {
        const Sums& s = overall_[static_cast<std::size_t>(p) * B + b];
        std::snprintf(buf, sizeof buf, " %10.1f", s.kept_per_head / std::max(1, s.n));
        out += buf;
      }
      out += "\n";
    }
  }
  return out;
}

}  // namespace kvsim
