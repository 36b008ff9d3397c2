// kvsim: the command-line entry point. Subcommands live in cli/cmd_*.cpp; this file only
// dispatches and turns errors into one line on stderr and a non-zero exit: 1 for kvsim errors
// (input, trace, model) and for filesystem failures (a read-only or missing directory, a
// directory where a file was expected: the user's paths, not a kvsim bug), 2 for usage, 4 for
// internal errors; 3 is reserved for `kvsim diff`'s verdict "NEW is worse than OLD".
#include <boost/program_options/errors.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ios>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/version.hpp"

namespace {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* summary;
  bool ranks = false;  // splits its work across the ranks of an MPI job (docs/scale-out.md)
};

const Command kCommands[] = {
    {"trace", kvsim::cli::cmd_trace, "record a model's prefill over prompts into an HDF5 trace", true},
    {"inspect", kvsim::cli::cmd_inspect, "print a trace's model, prompts and dataset shapes"},
    {"run", kvsim::cli::cmd_run, "replay traces against retention policies x budgets; write metrics", true},
    {"validate", kvsim::cli::cmd_validate, "estimated vs exact (re-decoded) delta-NLL: correlations, policy rankings", true},
    {"policies", kvsim::cli::cmd_policies, "list every retention policy with its parameters and defaults"},
    {"synth", kvsim::cli::cmd_synth, "write a synthetic trace at a real model's shape (benchmarks, tests)"},
    {"compile", kvsim::cli::cmd_compile, "compile CompilerKV decision tables from traces (offline contextual bandit)", true},
    {"diff", kvsim::cli::cmd_diff, "compare two decision tables on traces; exit 3 when NEW is worse", true},
    {"transfer", kvsim::cli::cmd_transfer, "rank correlation and transfer cost between two decision tables", true},
    {"tasks", kvsim::cli::cmd_tasks, "write RULER-style synthetic long-context tasks (JSONL) sized in a model's tokens"},
    {"report", kvsim::cli::cmd_report, "one self-contained HTML report (plots) of run/validate/compile/diff/transfer outputs"},
    {"generate", kvsim::cli::cmd_generate, "greedy decoding from a prompt (checks a model loads and runs)"},
};

void usage(std::FILE* out) {
  std::fprintf(out, "kvsim %s: offline KV-cache retention simulator\n\nusage: kvsim <command> [options]\n\ncommands:\n",
               kvsim::kToolVersion);
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'kvsim <command> --help' lists a command's options.\n");
}

}  // namespace

namespace {

// Runs one command; errors become one line on stderr (prefixed by the rank in an MPI job) and
// the exit code above.
int run_command(const Command& c, const std::vector<std::string>& args) {
  const std::string who = kvsim::dist::rank_prefix() + "kvsim " + c.name;
  // In an MPI job an error every rank meets (a bad option, an existing output) is said once:
  // the other ranks wait a second before saying theirs, and rank 0's abort ends them first.
  auto say = [&](const std::string& line) {
    if (kvsim::dist::size() > 1 && !kvsim::dist::is_root()) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::fprintf(stderr, "%s%s\n", who.c_str(), line.c_str());
  };
  try {
    return c.run(args);
  } catch (const kvsim::dist::RankError& e) {
    if (!e.reported()) say(std::string(": error: ") + e.what());
    return 1;
  } catch (const kvsim::Error& e) {
    say(std::string(": error: ") + e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // "filesystem error: cannot create directories: Permission denied [out.partial]"
    std::string what = e.what();
    if (what.rfind("filesystem error: ", 0) == 0) what.erase(0, 18);
    say(": error: " + what);
    return 1;
  } catch (const std::ios_base::failure& e) {
    // A stream read or write failed (e.g. a directory read as a file).
    say(std::string(": error: file read or write failed: ") + e.what());
    return 1;
  } catch (const boost::program_options::error& e) {
    say(std::string(": ") + e.what() + " (see 'kvsim " + c.name + " --help')");
    return 2;
  } catch (const std::exception& e) {
    say(std::string(": internal error: ") + e.what());
    return 4;  // 3 is `kvsim diff`'s verdict "NEW is worse", not an error
  }
}

}  // namespace

int main(int argc, char** argv) {
  // MPI starts here when an MPI launcher started this process (core/dist.hpp).
  kvsim::dist::init(&argc, &argv);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--version" || name == "version") {
    // Whether `mpirun -np N kvsim …` can split the work (docs/scale-out.md).
    std::printf("kvsim %s (%s), MPI %s\n", kvsim::kToolVersion, kvsim::kGitSha,
                kvsim::dist::built_with_mpi() ? "built in" : "not built in (KVSIM_MPI=OFF or no MPI found)");
    return 0;
  }
  if (name == "--help" || name == "-h" || name == "help") {
    usage(stdout);
    return 0;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    // Every rank would run it whole and write the same files.
    if (kvsim::dist::size() > 1 && !c.ranks) {
      if (kvsim::dist::is_root())
        std::fprintf(stderr, "kvsim %s: error: runs as one process; start it without mpirun (docs/scale-out.md)\n", c.name);
      kvsim::dist::finalize();
      return 2;
    }
    const int code = run_command(c, args);
    // A failed rank ends the whole job (the other ranks may be waiting for it); `kvsim diff`'s
    // verdict (3) is not a failure: every rank returns it.
    if (code != 0 && code != 3 && kvsim::dist::size() > 1) kvsim::dist::abort_job(code);
    kvsim::dist::finalize();
    return code;
  }
  std::fprintf(stderr, "kvsim: unknown command '%s'\n\n", name.c_str());
  usage(stderr);
  return 2;
}
