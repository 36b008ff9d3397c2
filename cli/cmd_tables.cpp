// kvsim compile / diff / transfer: CompilerKV decision tables (docs/tables.md).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/version.hpp"
#include "sim/budget.hpp"
#include "sim/output_files.hpp"
#include "tables/analysis.hpp"
#include "tables/compiler.hpp"
#include "tracer/cpu_forward.hpp"

namespace kvsim::cli {

namespace {

std::vector<int> parse_budgets(const std::string& text) {
  const BudgetSweep sweep = BudgetSweep::parse(text, "");
  std::vector<int> out;
  for (const auto& label : sweep.labels()) out.push_back(std::stoi(label));
  return out;
}

std::vector<std::filesystem::path> paths_of(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

void stderr_line(const std::string& label, const std::string& line) { std::fprintf(stderr, "[%s] %s\n", label.c_str(), line.c_str()); }

std::string num(double x, const char* f = "%.6f") {
  if (std::isnan(x)) return "n/a";
  char b[48];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

std::string diff_table_text(const DiffReport& rep, const std::string& old_name, const std::string& new_name) {
  std::ostringstream o;
  char line[256];
  std::snprintf(line, sizeof line, "%-7s %-24s %6s %5s %12s %12s %12s %25s %s\n", "scope", "task", "budget", "n",
                "reward_old", "reward_new", "new-old", "95% CI (bootstrap)", "verdict");
  o << "OLD " << old_name << "\nNEW " << new_name << "\nreward = -estimated delta-NLL (higher is better)\n\n" << line;
  for (const auto& r : rep.rows) {
    const std::string ci = "[" + num(r.ci_lo) + ", " + num(r.ci_hi) + "]";
    std::snprintf(line, sizeof line, "%-7s %-24s %6s %5d %12s %12s %12s %25s %s\n", r.scope.c_str(),
                  r.task.empty() ? "-" : r.task.c_str(), r.budget ? std::to_string(r.budget).c_str() : "all", r.n,
                  num(r.mean_old).c_str(), num(r.mean_new).c_str(), num(r.mean_diff).c_str(), ci.c_str(),
                  r.regression ? "WORSE" : "ok");
    o << line;
  }
  return o.str();
}

// Written as PATH.partial and renamed when complete: a failed run leaves no half-written CSV.
void write_diff_csv(const DiffReport& rep, const std::string& path) {
  const std::filesystem::path tmp = path + ".partial";
  std::FILE* f = open_write(tmp);
  std::fputs("scope,task,budget,n,reward_old,reward_new,diff,ci_lo,ci_hi,regression\n", f);
  for (const auto& r : rep.rows)
    std::fprintf(f, "%s,%s,%d,%d,%s,%s,%s,%s,%s,%d\n", r.scope.c_str(), r.task.c_str(), r.budget, r.n,
                 fmt_g9(r.mean_old).c_str(), fmt_g9(r.mean_new).c_str(), fmt_g9(r.mean_diff).c_str(),
                 fmt_g9(r.ci_lo).c_str(), fmt_g9(r.ci_hi).c_str(), r.regression ? 1 : 0);
  close_checked(f, tmp);
  std::filesystem::rename(tmp, path);
}

// A table named on the command line, for a manifest: path, XXH3 of the file and the table's own
// provenance (its compile command, calibration traces); "default" is the built-in default table.
nlohmann::json table_provenance(const std::string& name, const DecisionTable& t) {
  if (name == "default") return {{"path", "default"}};
  return {{"path", name}, {"xxh3", hex64(hash_file(name))}, {"provenance", t.provenance}};
}

void write_correlations_csv(const std::vector<TransferCorrelation>& rows, const std::filesystem::path& path) {
  std::FILE* f = open_write(path);
  std::fputs("part,layer,n,rho\n", f);
  for (const auto& c : rows)
    std::fprintf(f, "%s,%s,%d,%s\n", c.part.c_str(), c.layer < 0 ? "all" : std::to_string(c.layer).c_str(), c.n,
                 fmt_g9(c.rho).c_str());
  close_checked(f, path);
}

void write_manifest(const nlohmann::json& m, const std::filesystem::path& path) {
  std::ofstream f(path);
  f << m.dump(2) << "\n";
  if (!f) fail<InputError>(path.string(), ": write failed");
}

// The command line as recorded in a table: without -t/--threads, which does not change it.
std::vector<std::string> without_threads_option(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-t" || a == "--threads") {
      ++i;
      continue;
    }
    if (a.rfind("--threads=", 0) == 0 || (a.size() > 2 && a.rfind("-t", 0) == 0)) continue;
    out.push_back(a);
  }
  return out;
}

// A table named on the command line; a note on stderr when it carries no provenance (hand-made:
// nothing says which traces, model or command it came from; docs/tables.md). Once per job:
// every rank of an MPI job reads the table.
DecisionTable read_table_noted(const std::string& path) {
  DecisionTable t = read_table(path);
  if (t.provenance.empty() && dist::is_root())
    std::fprintf(stderr, "note: %s has no provenance (not written by kvsim compile?)\n", path.c_str());
  return t;
}

// Two tables named on the command line; "default" for one of them is the default table
// (weights 1.0, thresholds 0.8) of the other's model, budgets and window.
std::pair<DecisionTable, DecisionTable> read_table_pair(const std::string& a, const std::string& b) {
  if (a == "default" && b == "default") fail<InputError>("at most one of the two tables may be 'default'");
  if (a == "default") {
    DecisionTable tb = read_table_noted(b);
    return {DecisionTable::defaults(tb.model, tb.budgets, tb.window), std::move(tb)};
  }
  DecisionTable ta = read_table_noted(a);
  if (b == "default") {
    DecisionTable tb = DecisionTable::defaults(ta.model, ta.budgets, ta.window);
    return {std::move(ta), std::move(tb)};
  }
  return {std::move(ta), read_table_noted(b)};
}

// transfer's report up to the transfer cost: both tables, the depth mapping, the correlations.
void print_transfer_header(const std::vector<std::string>& tables, const DecisionTable& a, const DecisionTable& b,
                           const std::vector<TransferCorrelation>& correlations) {
  std::printf("A %s: L=%d H=%d, budgets", tables[0].c_str(), a.model.n_layers, a.model.n_heads);
  for (int x : a.budgets) std::printf(" %d", x);
  std::printf("\nB %s: L=%d H=%d, budgets", tables[1].c_str(), b.model.n_layers, b.model.n_heads);
  for (int x : b.budgets) std::printf(" %d", x);
  std::printf("\n");
  if (a.model.n_layers != b.model.n_layers) {
    std::printf("depth mapping A -> B (relative depth l/(L-1), linear interpolation):\n");
    for (int l = 0; l < b.model.n_layers; ++l) {
      const double x = b.model.n_layers == 1 ? 0.0 : static_cast<double>(l) * (a.model.n_layers - 1) / (b.model.n_layers - 1);
      std::printf("  B layer %d <- A layer %.3f\n", l, x);
    }
  }
  std::printf("\nSpearman rank correlation (A mapped to B's depth vs B):\n%-5s %-7s %6s %8s\n", "part", "layer", "n", "rho");
  for (const auto& c : correlations)
    std::printf("%-5s %-7s %6d %8s\n", c.part.c_str(), c.layer < 0 ? "overall" : std::to_string(c.layer).c_str(), c.n,
                num(c.rho, "%.3f").c_str());
}

}  // namespace

int cmd_compile(const std::vector<std::string>& args) {
  std::vector<std::string> traces;
  std::string budgets, out, learner, reward, model_path, gate, gate_arms;
  int window, sink, max_rounds, pulls, threads;
  double lambda;
  std::uint64_t seed;
  long long cache_mb;
  bool overwrite = false;
  po::options_description opts("compile options");
  opts.add_options()("traces", po::value(&traces)->multitoken()->required(), "calibration trace files (.h5)")
      ("budget,b", po::value(&budgets)->required(), "budgets (tokens per KV head) to compile, e.g. 16,32,64,128")
      ("out,o", po::value(&out)->required(), "output table (JSON, docs/tables.md)")
      ("learner", po::value(&learner)->default_value("cql"), "cql (exhaustive sweep + conservative Q) | ucb | thompson")
      ("lambda", po::value(&lambda)->default_value(0.75), "cql: conservative weight")
      ("max-rounds", po::value(&max_rounds)->default_value(6), "alternating head/gate rounds at most")
      ("pulls", po::value(&pulls)->default_value(0), "ucb/thompson: evaluations per context (0 = 2 x arms)")
      ("reward", po::value(&reward)->default_value("estimate"),
       "estimate (-estimated delta-NLL, logit-space) | exact (-exact delta-NLL: teacher-forced re-decode, needs --model)")
      ("model,m", po::value(&model_path), "--reward exact: the checkpoint the traces were recorded with (llama2.c .bin, .gguf or HF directory)")
      ("window", po::value(&window)->default_value(32), "compilerkv window the table is for")
      ("gate", po::value(&gate)->default_value("coverage"),
       "gate rule the thresholds are learned for: coverage (tau = share of the utility mass dropped; arms 1e-4..0.2 log) "
       "| absolute (published: keep s >= tau; arms 0.8..1.0 step 0.01)")
      ("sink", po::value(&sink)->default_value(0), "compilerkv sink tokens the table is for (protected first tokens)")
      ("gate-arms", po::value(&gate_arms), "gate arm grid lo:hi:step or lo:hi:count:log (default: the gate rule's)")
      ("seed", po::value(&seed)->default_value(0), "seed (ucb/thompson prompt orders and draws)")
      ("cache-mb", po::value(&cache_mb)->default_value(4096), "memory for cached prompt tensors (and exact decoders); beyond it prompts are re-read")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores); the table does not depend on it")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing OUT");
  po::positional_options_description pos;
  pos.add("traces", -1);
  if (!parse("compile", "Compiles CompilerKV decision tables with an offline contextual bandit over simulator rewards.",
             opts, args, &pos))
    return 0;
  auto tbb_limit = limit_threads(threads);
  require_at_least("--pulls", pulls, 0);
  require_at_least("--max-rounds", max_rounds, 1);
  require_at_least("--window", window, 1);
  require_at_least("--sink", sink, 0);
  require_finite("--lambda", lambda);
  cache_bytes(cache_mb);
  check_output_file(out, "--out", overwrite);
  CompileOptions co;
  co.budgets = parse_budgets(budgets);
  co.learner = learner, co.cql_lambda = lambda, co.max_rounds = max_rounds, co.pulls = pulls, co.seed = seed;
  if (dist::is_root()) co.progress = [](const std::string& line) { stderr_line("compile", line); };
  co.gate_mode = parse_gate_mode(gate, "--gate");
  if (!gate_arms.empty()) co.gate_arms = ArmGrid::parse(gate_arms, "--gate-arms");
  if (learner != "cql" && learner != "ucb" && learner != "thompson")
    fail<InputError>("unknown learner '", learner, "' (cql|ucb|thompson)");
  if (reward != "estimate" && reward != "exact") fail<InputError>("unknown --reward '", reward, "' (estimate|exact)");
  if (reward == "exact" && model_path.empty())
    fail<InputError>("--reward exact needs --model: the checkpoint the traces were recorded with");
  if (reward == "estimate" && !model_path.empty()) fail<InputError>("--model is used by --reward exact only");
  // MPI (docs/scale-out.md): cql spreads the calibration prompts over the ranks (each measures
  // its own, rank 0 fits and writes); ucb/thompson choose each pull from the previous rewards
  // of its context, on any prompt, so they run on rank 0 alone while the others end here.
  const bool spread = learner == "cql";
  if (!spread && !dist::is_root()) return 0;
  const auto t0 = std::chrono::steady_clock::now();
  // Exact rewards re-decode with the model's weights; EvalSet checks it is every trace's model.
  std::optional<Model> model;
  std::optional<CpuForward> fwd;
  if (reward == "exact") {
    model.emplace(load_model(model_path));
    fwd.emplace(*model);
  }
  const EvalSet set(paths_of(traces), window, cache_bytes(cache_mb), co.progress, fwd ? &*fwd : nullptr, sink,
                    spread ? Placement::kBalanced : Placement::kEveryRank);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CompileStats st;
  DecisionTable table = compile_table(set, co, &st);
  if (!dist::is_root()) return 0;  // rank 0 writes the table and prints
  table.provenance["model"] = {{"n_layers", set.model().n_layers}, {"n_heads", set.model().n_heads},
                               {"n_kv_heads", set.model().n_kv_heads}, {"head_dim", set.model().head_dim},
                               {"hidden", set.model().hidden}};
  if (model) table.provenance["reward_model"] = model->source;
  table.provenance["tool"] = {{"name", "kvsim"}, {"version", kToolVersion}, {"git_sha", kGitSha}};
  // No clock time or thread count in the file: the same inputs give the same bytes.
  table.provenance["command"] = without_threads_option(args);
  write_table(table, out);
  std::printf("compiled %s: %zu prompts, budgets %s, learner %s, %d rounds (%s)\n", out.c_str(), set.size(),
              budgets.c_str(), learner.c_str(), st.rounds, st.converged ? "converged" : "max rounds reached");
  std::printf("%llu rewards (%llu distinct kept sets measured, %llu task rewards computed) in %.1f s: %.0f rewards/s, "
              "%.0f task rewards/s; loading %.1f s%s\n",
              static_cast<unsigned long long>(st.counters.decisions), static_cast<unsigned long long>(st.counters.measurements),
              static_cast<unsigned long long>(st.counters.task_rewards), st.seconds,
              st.seconds > 0 ? static_cast<double>(st.counters.decisions) / st.seconds : 0.0,
              st.seconds > 0 ? static_cast<double>(st.counters.task_rewards) / st.seconds : 0.0, load_s,
              ranks_note().c_str());
  std::printf("rewards: %s\n", set.reward_description().c_str());
  return 0;
}

int cmd_diff(const std::vector<std::string>& args) {
  std::vector<std::string> tables, traces;
  std::string budgets, csv, out_dir;
  double tolerance;
  int bootstrap, threads;
  std::uint64_t seed;
  long long cache_mb;
  bool overwrite = false;
  po::options_description opts("diff options");
  opts.add_options()("tables", po::value(&tables)->multitoken()->required(), "OLD NEW table files ('default' for one: the default table of the other's shape)")
      ("traces", po::value(&traces)->multitoken()->required(), "evaluation trace files")
      ("budget,b", po::value(&budgets)->required(), "budgets (tokens per KV head)")
      ("tolerance", po::value(&tolerance)->default_value(0.0), "NEW may be worse by this much reward (nats/token)")
      ("bootstrap", po::value(&bootstrap)->default_value(1000), "bootstrap resamples for the 95% CI")
      ("seed", po::value(&seed)->default_value(0), "bootstrap seed")
      ("csv", po::value(&csv), "also write the summary rows to this CSV")
      ("out,o", po::value(&out_dir), "also write a results directory: diff.csv and manifest.json (provenance, verdict; kvsim report)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing --out directory")
      ("cache-mb", po::value(&cache_mb)->default_value(4096), "memory for cached prompt tensors")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores)");
  po::positional_options_description pos;
  pos.add("tables", 2);
  if (!parse("diff",
             "Compares two decision tables on traces, paired per prompt, by reward = -estimated delta-NLL (the estimate "
             "only: compile's --reward exact is not offered here). Exit 0: NEW not worse; exit 3: NEW worse than OLD "
             "beyond --tolerance (95% CI upper end below -tolerance); 1/2: errors.",
             opts, args, &pos))
    return 0;
  if (tables.size() != 2) fail<InputError>("diff takes two tables: OLD NEW");
  auto tbb_limit = limit_threads(threads);
  require_finite("--tolerance", tolerance);
  require_at_least("--bootstrap", bootstrap, 1);
  cache_bytes(cache_mb);
  if (!csv.empty()) check_output_file(csv, "--csv", true);
  const std::vector<int> budget_list = parse_budgets(budgets);
  const auto [old_t, new_t] = read_table_pair(tables[0], tables[1]);
  if (old_t.window != new_t.window) fail<InputError>("the tables were compiled with different windows (", old_t.window, ", ", new_t.window, ")");
  if (old_t.sink != new_t.sink) fail<InputError>("the tables were compiled with different sinks (", old_t.sink, ", ", new_t.sink, ")");
  // In an MPI job every rank measures its share of the prompts; rank 0 alone writes and prints,
  // and every rank exits with the verdict.
  std::optional<PartialDir> dir;  // created before the work, committed after it: complete or absent
  if (!out_dir.empty() && dist::is_root()) dir.emplace(out_dir, overwrite);
  const EvalSet set(paths_of(traces), old_t.window, cache_bytes(cache_mb), {}, nullptr, old_t.sink, Placement::kOnDemand);
  const DiffReport rep = diff_tables(set, old_t, new_t, budget_list, tolerance, bootstrap, seed);
  if (!dist::is_root()) {
    // mpirun ends the job as soon as one rank exits non-zero (3 here): wait until rank 0 has
    // written and printed.
    dist::barrier();
    return rep.regression ? 3 : 0;
  }
  std::printf("%s", diff_table_text(rep, tables[0], tables[1]).c_str());
  if (!csv.empty()) write_diff_csv(rep, csv);
  if (dir) {
    write_diff_csv(rep, (*dir / "diff.csv").string());
    nlohmann::json m = results_manifest("diff", args);
    m["tables"] = {{"old", table_provenance(tables[0], old_t)}, {"new", table_provenance(tables[1], new_t)}};
    m["traces"] = trace_provenance(set.trace_set());  // the hashes the set took, the files not reopened
    m["budgets"] = budget_list;
    m["reward"] = "-estimated delta-NLL (nats/token)";
    m["tolerance"] = tolerance, m["bootstrap"] = bootstrap, m["seed"] = seed;
    m["verdict"] = rep.regression ? "WORSE" : "not worse";
    write_manifest(m, *dir / "manifest.json");
    dir->commit();
  }
  std::printf("\n%s\n", rep.regression ? "NEW is worse than OLD beyond the tolerance (exit 3)" : "NEW is not worse than OLD");
  std::fflush(stdout);
  dist::barrier();  // the other ranks' exit waits for this
  return rep.regression ? 3 : 0;
}

int cmd_transfer(const std::vector<std::string>& args) {
  std::vector<std::string> tables, traces;
  std::string budgets, out_dir;
  int bootstrap, threads;
  std::uint64_t seed;
  long long cache_mb;
  bool overwrite = false;
  po::options_description opts("transfer options");
  opts.add_options()("tables", po::value(&tables)->multitoken()->required(), "A B: source and target tables")
      ("traces", po::value(&traces)->multitoken(), "target traces: reward (-estimated delta-NLL) with A's table (mapped) vs B's own")
      ("budget,b", po::value(&budgets), "budgets for --traces (default: B's budgets)")
      ("bootstrap", po::value(&bootstrap)->default_value(1000), "bootstrap resamples for the 95% CI")
      ("seed", po::value(&seed)->default_value(0), "bootstrap seed")
      ("out,o", po::value(&out_dir), "also write a results directory: correlations.csv, diff.csv (with --traces), manifest.json")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing --out directory")
      ("cache-mb", po::value(&cache_mb)->default_value(4096), "memory for cached prompt tensors")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores)");
  po::positional_options_description pos;
  pos.add("tables", 2);
  if (!parse("transfer", "Spearman correlation of two tables (per layer, overall), relative-depth mapping, transfer cost.",
             opts, args, &pos))
    return 0;
  if (tables.size() != 2) fail<InputError>("transfer takes two tables: A B");
  auto tbb_limit = limit_threads(threads);
  require_at_least("--bootstrap", bootstrap, 1);
  cache_bytes(cache_mb);
  const std::vector<int> budget_list = budgets.empty() ? std::vector<int>{} : parse_budgets(budgets);
  const DecisionTable a = read_table_noted(tables[0]), b = read_table_noted(tables[1]);
  // In an MPI job every rank measures its share of --traces; rank 0 alone writes and prints.
  const bool root = dist::is_root();
  std::optional<PartialDir> dir;
  if (!out_dir.empty() && root) dir.emplace(out_dir, overwrite);
  const std::vector<TransferCorrelation> correlations = table_correlations(a, b);
  if (root) print_transfer_header(tables, a, b, correlations);
  nlohmann::json traces_prov = nlohmann::json::array();
  if (!traces.empty()) {
    const EvalSet set(paths_of(traces), b.window, cache_bytes(cache_mb), {}, nullptr, b.sink, Placement::kOnDemand);
    const std::vector<int> bs = budgets.empty() ? b.budgets : budget_list;
    const DiffReport rep = diff_tables(set, b, a, bs, 0.0, bootstrap, seed);
    if (!root) return 0;
    std::printf("\ntransfer cost on %zu target prompts (OLD = B's own table, NEW = A's table mapped):\n\n%s", set.size(),
                diff_table_text(rep, tables[1], tables[0]).c_str());
    if (dir) write_diff_csv(rep, (*dir / "diff.csv").string());
    traces_prov = trace_provenance(set.trace_set());  // the hashes the set took, the files not reopened
  }
  if (!root) return 0;
  if (dir) {
    write_correlations_csv(correlations, *dir / "correlations.csv");
    nlohmann::json m = results_manifest("transfer", args);
    m["tables"] = {{"a", table_provenance(tables[0], a)}, {"b", table_provenance(tables[1], b)}};
    m["traces"] = traces_prov;
    write_manifest(m, *dir / "manifest.json");
    dir->commit();
  }
  return 0;
}

}  // namespace kvsim::cli
