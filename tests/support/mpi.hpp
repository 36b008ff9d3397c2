#pragma once
// MPI jobs in tests (tag [mpi]): `mpirun -np N kvsim …` on this machine, oversubscribed (CI
// machines have 2 cores) and allowed as root (CI runs as root). Tests skip when this kvsim was
// built without MPI or mpirun is not installed.
#include <string>

#include "core/dist.hpp"
#include "trace_fixture.hpp"

namespace kvsim::test {

// "" when MPI jobs can run here, else why not (the skip message).
inline std::string mpi_unavailable() {
  if (!dist::built_with_mpi()) return "this kvsim was built without MPI (KVSIM_MPI=OFF or no libopenmpi-dev)";
  if (run_command("command -v mpirun").status != 0) return "mpirun is not installed (Debian: openmpi-bin)";
  return "";
}

// The command line of an N-rank kvsim job, up to its arguments.
// Under `timeout`: a launcher that hangs (Open MPI 4.1's mpirun has races in its teardown after a
// rank dies) fails the test after 5 minutes instead of holding the suite.
inline std::string mpirun_kvsim(int ranks) {
  return "timeout -k 10 300 mpirun --oversubscribe --allow-run-as-root -np " + std::to_string(ranks) + " " +
         std::string(KVSIM_BINARY);
}

// Returns from the test, skipped, when MPI jobs cannot run here or ../shared lacks what every
// [mpi] test traces: stories260K and the TinyStories text.
#define KVSIM_REQUIRE_MPI_AND_STORIES()                                                         \
  do {                                                                                          \
    if (const std::string why = kvsim::test::mpi_unavailable(); !why.empty()) KVSIM_SKIP(why);  \
    KVSIM_REQUIRE_SHARED(kvsim::test::shared_path("models/stories260K/stories260K.bin"));       \
    KVSIM_REQUIRE_SHARED(kvsim::test::shared_path("data/tinystories_valid_subset/tinystories_val.txt")); \
  } while (0)

inline CliResult run_mpi(int ranks, const std::string& args) { return run_command(mpirun_kvsim(ranks) + " " + args); }

}  // namespace kvsim::test
