#pragma once
// The ranks of an MPI job (docs/scale-out.md). kvsim runs as one process, or as N processes
// started by an MPI launcher (`mpirun -np N kvsim …`, Slurm's `srun`): then every rank runs the
// same command on the same inputs, the work items (prompts) are handed out one at a time to
// whichever rank asks (dynamic load balancing), and rank 0 receives every result, in item
// order, and writes the outputs. Results travel as bytes (core/bytes.hpp) and are consumed on
// rank 0 by the very code a single process runs, so the outputs are the same bytes at any N.
//
// MPI is optional at build time (KVSIM_MPI, ON where Open MPI or another MPI is found) and at
// run time: init() starts MPI only when a launcher started this process (its environment says
// so); otherwise, and in a build without MPI, the job is a world of one and nothing here calls
// MPI. Only the main thread calls MPI (MPI_THREAD_FUNNELED).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace kvsim::dist {

// A rank failed (its error, or the launcher stopped the job): the message names the rank and
// the work item.
class RankError : public Error {
 public:
  explicit RankError(const std::string& what, bool reported = false) : Error(what), reported_(reported) {}
  // True when rank 0 already printed it (before waiting for its own item in flight).
  bool reported() const { return reported_; }

 private:
  bool reported_ = false;
};

// True when this binary was built with MPI.
bool built_with_mpi();
// True when this process was started by an MPI launcher (Open MPI, PMIx, PMI, Slurm's srun with
// an MPI plugin): the environment variables those set.
bool launched_by_mpi();
// Starts MPI when launched_by_mpi() (a build without MPI then refuses with a clear message:
// it would run the whole job N times). Call once, first thing in main().
void init(int* argc, char*** argv);
// Ends MPI (a no-op without it). After the command returned normally.
void finalize();
// Ends the whole job with `code` (MPI_Abort) after this rank failed; every rank's destructors
// have run on this rank only. Without MPI: std::exit(code).
[[noreturn]] void abort_job(int code);

int rank();
int size();
// Ranks on this node (MPI_Comm_split_type shared memory): `--threads 0` gives each rank its
// share of the node's cores.
int local_size();
bool is_root();  // rank() == 0
// "" in a world of one, else "[rank R/N] " for messages.
std::string rank_prefix();

// Collectives: every rank calls them, in the same order.
void barrier();
// Rank 0's `bytes` on every rank.
std::string broadcast(const std::string& bytes);
// Rank 0: every rank's bytes in rank order; others: empty.
std::vector<std::string> gather(const std::string& bytes);

// Collective: fails (RankError on every rank, naming the ranks that differ from rank 0) unless
// every rank computed the same `fingerprint` of `what` — e.g. ranks that see other files under
// the same paths (node-local copies, a stale cache), whose outputs would not be one process's.
void require_same(const std::string& what, std::uint64_t fingerprint);

// A list of work items handed out to the ranks.
struct Job {
  std::size_t items = 0;
  // Item k's result as bytes; runs on whichever rank (and, on rank 0, a worker thread of its
  // own) receives k. May throw: the job then fails with a RankError naming the rank and label(k).
  std::function<std::string(std::size_t)> compute;
  // Rank 0 only, on the calling thread: item k's result, for k = 0, 1, …, items − 1 in order.
  std::function<void(std::size_t, std::string&&)> deliver;
  // "trace.h5 prompt 000004": how messages name item k.
  std::function<std::string(std::size_t)> label;
  // Optional, MPI only: item k is this rank's next one, to be computed after the current one
  // (which is then running on this thread): start reading it (on a thread of its own), so
  // that compute(k) finds it read. At most one item ahead per rank.
  std::function<void(std::size_t)> prefetch;
  // Optional: item k's relative cost (e.g. its prompt length). With it, rank 0 hands out the
  // costliest of the next few not yet handed out (a window of 4 per rank) instead of the next
  // in order: long prompts start early and the job does not end on one (longest-processing-
  // time first, locally). Results still come in order.
  std::function<double(std::size_t)> cost;
};
// Every rank calls it with the same job size. Rank 0 hands out items in index order (or by cost,
// within a window: Job::cost) as ranks finish their previous one, each rank holding two (the one it computes and the next, for
// prefetch); rank 0 computes too, on a thread of its own, while its calling thread serves the
// other ranks. Results arriving out of order wait on rank 0 until their turn. In a world of one: compute(k) then deliver(k) for each k, on the calling thread.
void run_job(const Job& job);

// What the last run_job moved (rank 0; zeros in a world of one): the communication volume the
// scale-out model of docs/scale-out.md is built on.
struct JobTraffic {
  std::size_t items_from_others = 0;   // results received from ranks 1..N-1
  std::size_t result_bytes = 0;        // their payload bytes
  std::size_t largest_result = 0;      // bytes of the largest one
  double deliver_seconds = 0;          // rank 0's time in deliver() (decoding, writing outputs): the serial part
};
JobTraffic last_job_traffic();

}  // namespace kvsim::dist
