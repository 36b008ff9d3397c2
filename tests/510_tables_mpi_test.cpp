// kvsim compile / diff / transfer as MPI jobs (docs/scale-out.md, "Compile, diff and transfer
// across ranks"): the table, the CSVs, the report on stdout and the exit code are the same at
// 1, 2 and 3 ranks; only rank 0 writes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

#include "policies/decision_table.hpp"
#include "support/mpi.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "tables/eval_set.hpp"

using namespace kvsim;

namespace {

// `args` run in `dir` by one process (ranks 1) or an N-rank job; stdout to dir/out.txt, so the
// result's output is stderr (mpirun's notes included).
test::CliResult run_in(const std::filesystem::path& dir, int ranks, const std::string& args, const std::string& out = "out.txt") {
  std::filesystem::create_directories(dir);
  const std::string kvsim = ranks == 1 ? std::string(KVSIM_BINARY) : test::mpirun_kvsim(ranks);
  // The braces: run_command's 2>&1 applies to the group, so stderr alone comes back.
  return test::run_command("cd " + dir.string() + " && { " + kvsim + " " + args + " > " + out + "; }");
}

// Every file below dir, relative, sorted.
std::set<std::string> files_below(const std::filesystem::path& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.insert(std::filesystem::relative(e.path(), dir).string());
  return out;
}

}  // namespace

TEST_CASE("tables: prompts assigned to ranks longest first, deterministic", "[tables]") {
  // Costs 10x apart: the long ones spread first, each to the least loaded rank (ties: lowest).
  const std::vector<double> cost = {40, 400, 40, 128, 400, 40, 128};
  CHECK(assign_prompts(cost, 1) == std::vector<int>(7, 0));
  // 400 -> 0, 400 -> 1, 128 -> 2, 128 -> 2 (256), 40 -> 2 (296), 40 -> 2 (336), 40 -> 2 (376).
  CHECK(assign_prompts(cost, 3) == std::vector<int>{2, 0, 2, 2, 1, 2, 2});
  // More ranks than prompts: some ranks own nothing.
  CHECK(assign_prompts({5, 7}, 4) == std::vector<int>{1, 0});
}

TEST_CASE("kvsim compile diff transfer under mpirun: same bytes at 1 2 and 3 ranks", "[mpi][shared]") {
  KVSIM_REQUIRE_MPI_AND_STORIES();
  const auto model = test::shared_path("models/stories260K/stories260K.bin");
  const auto text = test::shared_path("data/tinystories_valid_subset/tinystories_val.txt");
  test::TempDir tmp;
  // Two traces of prompts 3x apart in length (T = 128 and 40): the ranks get unequal counts.
  const std::string a = (tmp / "a.h5").string(), b = (tmp / "b.h5").string(), traces = a + " " + b;
  for (const auto& [out, len, n] : {std::tuple{a, 128, 6}, std::tuple{b, 40, 5}}) {
    const auto t = test::run_cli("trace --model " + model.string() + " --input " + text.string() + " --prompt-len " +
                                 std::to_string(len) + " --cont-len 16 --window 32 --limit " + std::to_string(n) + " --out " + out);
    INFO(t.output);
    REQUIRE(t.status == 0);
  }
  // Relative --out: the command line recorded in the table is the same in every directory.
  const std::string compile = "compile " + traces + " --budget 16,32 --window 8 --max-rounds 2 --out t.json";
  const std::string ucb = "compile " + traces + " --budget 16 --window 8 --max-rounds 1 --learner ucb --pulls 6 --out u.json";
  REQUIRE(run_in(tmp / "r1", 1, compile).status == 0);
  REQUIRE(run_in(tmp / "r1", 1, ucb, "ucb.txt").status == 0);
  // OLD = the table, NEW = the table with every coverage threshold 1 (the window only): worse.
  DecisionTable damaged = read_table(tmp / "r1" / "t.json");
  for (float& x : damaged.gate) x = 1.0f;
  write_table(damaged, tmp / "damaged.json");
  const std::string table = (tmp / "r1" / "t.json").string(), worse = (tmp / "damaged.json").string();
  const std::string diff_default = "diff default " + table + " --traces " + traces + " --budget 16,32 --csv d.csv --out dd";
  const std::string diff_worse = "diff " + table + " " + worse + " --traces " + traces + " --budget 16,32 --csv w.csv";
  const std::string transfer = "transfer " + table + " " + worse + " --traces " + traces + " --out tr";
  const auto d1 = run_in(tmp / "r1", 1, diff_default, "d.txt");
  REQUIRE((d1.status == 0 || d1.status == 3));
  REQUIRE(run_in(tmp / "r1", 1, diff_worse, "w.txt").status == 3);
  REQUIRE(run_in(tmp / "r1", 1, transfer, "tr.txt").status == 0);
  const std::vector<std::string> same = {"t.json", "u.json", "d.csv", "dd/diff.csv", "d.txt", "w.csv", "w.txt",
                                         "tr/diff.csv", "tr/correlations.csv", "tr.txt"};
  for (int ranks : {2, 3}) {
    const auto dir = tmp / ("r" + std::to_string(ranks));
    INFO(ranks << " ranks");
    const auto c = run_in(dir, ranks, compile);
    INFO(c.output);
    REQUIRE(c.status == 0);
    CHECK(test::slurp(dir / "out.txt").find("on " + std::to_string(ranks) + " MPI ranks") != std::string::npos);
    CHECK(test::count_occurrences(c.output, "round 1 gate") == 1);  // progress from rank 0 only
    // ucb runs on rank 0 alone (its pulls depend on the previous rewards of the context).
    CHECK(run_in(dir, ranks, ucb, "ucb.txt").status == 0);
    CHECK(run_in(dir, ranks, diff_default, "d.txt").status == d1.status);
    // Every rank exits 3 (the verdict is sent from rank 0), after rank 0 wrote its CSV.
    CHECK(run_in(dir, ranks, diff_worse, "w.txt").status == 3);
    CHECK(run_in(dir, ranks, transfer, "tr.txt").status == 0);
    for (const auto& f : same) {
      INFO(f);
      CHECK(test::slurp(dir / f) == test::slurp(tmp / "r1" / f));
    }
    // Only rank 0 creates files: the same files as one process (the manifests aside, the same bytes).
    CHECK(files_below(dir) == files_below(tmp / "r1"));
  }
}
