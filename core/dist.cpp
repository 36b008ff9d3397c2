#include "core/dist.hpp"

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include "core/bytes.hpp"

#ifdef KVSIM_HAVE_MPI
// The C API only (Open MPI and MPICH otherwise pull in their deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace kvsim::dist {

namespace {

int g_rank = 0, g_size = 1, g_local_size = 1;
[[maybe_unused]] bool g_mpi = false;  // MPI started by init() (never without KVSIM_HAVE_MPI)

// Set by SIGTERM on rank 0 while run_job serves the other ranks: the launcher is stopping the
// job (another rank died), and rank 0 says which items were in flight before it goes.
std::atomic<int> g_stop_signal{0};
JobTraffic g_traffic;
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// The fault-injection hook of the tests (docs/scale-out.md, "Failures"): KVSIM_FAULT_KILL=R:K
// kills rank R with SIGKILL as it begins its K-th item (counting from 1), as a crash would.
void maybe_fault(int items_begun) {
  static const char* spec = env("KVSIM_FAULT_KILL");
  if (!spec) return;
  int r = -1, k = -1;
  if (std::sscanf(spec, "%d:%d", &r, &k) == 2 && r == g_rank && k == items_begun) std::raise(SIGKILL);
}

// True when process `pid` (on this node) has ended: gone, or a zombie its parent (the launcher)
// has not reaped yet.
[[maybe_unused]] bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%ld/stat", static_cast<long>(pid));
  std::FILE* f = std::fopen(path, "r");
  if (!f) return false;
  char line[512] = {};
  const bool read = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  // "pid (comm) S …": the state follows the last ')'.
  const char* close = read ? std::strrchr(line, ')') : nullptr;
  return close && close[1] == ' ' && close[2] == 'Z';
}

#ifdef KVSIM_HAVE_MPI
enum Tag : int { kReady = 1, kResult = 2, kError = 3, kAssign = 4, kNever = 5 };
constexpr std::uint64_t kStop = ~std::uint64_t{0};

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail<RankError>("MPI ", what, " failed (error ", rc, ")");
}

int message_count(std::size_t bytes, const std::string& label) {
  if (bytes > static_cast<std::size_t>(INT32_MAX))
    fail<RankError>(label, ": a result of ", bytes, " bytes is larger than one MPI message can carry (2 GiB)");
  return static_cast<int>(bytes);
}

void send(const std::string& bytes, int dest, int tag, const std::string& label) {
  check_mpi(MPI_Send(bytes.data(), message_count(bytes.size(), label), MPI_BYTE, dest, tag, MPI_COMM_WORLD), "send");
}

std::string item_message(std::uint64_t k, const std::string& payload) {
  std::string m(sizeof k, '\0');
  std::memcpy(m.data(), &k, sizeof k);
  return m + payload;
}

std::uint64_t item_of(const std::string& m) {
  std::uint64_t k = 0;
  KVSIM_CHECK(m.size() >= sizeof k, "dist: short message");
  std::memcpy(&k, m.data(), sizeof k);
  return k;
}
#endif

}  // namespace

bool built_with_mpi() {
#ifdef KVSIM_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  if (const char* v = env("KVSIM_MPI")) return std::strcmp(v, "0") != 0;  // explicit override
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_SIZE") || env("PMI_RANK") ||
         env("MPI_LOCALNRANKS");
}

void init(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
#ifdef KVSIM_HAVE_MPI
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "kvsim: error: MPI_Init_thread failed\n");
    std::exit(1);
  }
  g_mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  // Errors come back as codes (check_mpi), so that a failure is reported with its context.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm node;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &g_local_size);
    MPI_Comm_free(&node);
  }
#else
  (void)argc, (void)argv;
  // Without MPI every rank would run the whole job and write the same outputs.
  const char* n = env("OMPI_COMM_WORLD_SIZE") ? env("OMPI_COMM_WORLD_SIZE") : env("PMI_SIZE");
  if (!n || std::strcmp(n, "1") != 0) {
    std::fprintf(stderr,
                 "kvsim: error: started by an MPI launcher, but this kvsim was built without MPI "
                 "(install libopenmpi-dev and rebuild: docs/scale-out.md)\n");
    std::exit(1);
  }
#endif
}

void finalize() {
#ifdef KVSIM_HAVE_MPI
  if (g_mpi) {
    MPI_Finalize();
    g_mpi = false;
  }
#endif
}

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef KVSIM_HAVE_MPI
  // When the launcher is already stopping the job (its SIGTERM reached rank 0: another rank
  // died), this rank just goes: an MPI_Abort racing that teardown can leave Open MPI 4.1's
  // mpirun deadlocked with its children unreaped (seen here under load).
  if (g_mpi && g_size > 1 && g_stop_signal.load() == 0) MPI_Abort(MPI_COMM_WORLD, code);
  if (g_stop_signal.load() != 0) std::_Exit(code);
#endif
  std::exit(code);
}

int rank() { return g_rank; }
int size() { return g_size; }
int local_size() { return g_local_size; }
bool is_root() { return g_rank == 0; }

std::string rank_prefix() {
  if (g_size <= 1) return "";
  return "[rank " + std::to_string(g_rank) + "/" + std::to_string(g_size) + "] ";
}

void barrier() {
#ifdef KVSIM_HAVE_MPI
  if (g_mpi) check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier");
#endif
}

std::string broadcast(const std::string& bytes) {
#ifdef KVSIM_HAVE_MPI
  if (g_mpi && g_size > 1) {
    std::uint64_t n = bytes.size();
    check_mpi(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), "broadcast");
    std::string out = g_rank == 0 ? bytes : std::string(n, '\0');
    check_mpi(MPI_Bcast(out.data(), message_count(n, "broadcast"), MPI_BYTE, 0, MPI_COMM_WORLD), "broadcast");
    return out;
  }
#endif
  return bytes;
}

std::vector<std::string> gather(const std::string& bytes) {
#ifdef KVSIM_HAVE_MPI
  if (g_mpi && g_size > 1) {
    const int mine = message_count(bytes.size(), "gather");
    std::vector<int> counts(g_rank == 0 ? g_size : 0), offsets(counts.size());
    check_mpi(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "gather");
    std::string all;
    if (g_rank == 0) {
      std::size_t total = 0;
      for (int r = 0; r < g_size; ++r) offsets[r] = static_cast<int>(total), total += counts[r];
      message_count(total, "gather");
      all.resize(total);
    }
    check_mpi(MPI_Gatherv(bytes.data(), mine, MPI_BYTE, all.data(), counts.data(), offsets.data(), MPI_BYTE, 0,
                          MPI_COMM_WORLD),
              "gather");
    std::vector<std::string> out;
    for (int r = 0; r < static_cast<int>(counts.size()); ++r) out.push_back(all.substr(offsets[r], counts[r]));
    return out;
  }
#endif
  return {bytes};
}

void require_same(const std::string& what, std::uint64_t fingerprint) {
  if (g_size <= 1) return;
  ByteWriter w;
  w.put(fingerprint);
  const std::vector<std::string> all = gather(w.take());
  std::string differ;
  for (int r = 1; r < static_cast<int>(all.size()); ++r)
    if (ByteReader(all[r]).get<std::uint64_t>() != fingerprint) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  const std::string verdict = broadcast(differ);
  if (!verdict.empty())
    fail<RankError>("rank(s) ", verdict, " see another ", what, " than rank 0 (other files under the same paths? every ",
                    "rank must read the same files: docs/scale-out.md)");
}

namespace {

void run_local(const Job& job) {
  for (std::size_t k = 0; k < job.items; ++k) {
    maybe_fault(static_cast<int>(k) + 1);
    job.deliver(k, job.compute(k));
  }
}

#ifdef KVSIM_HAVE_MPI
// Each rank holds up to kDepth items: the one it computes and the next, whose reading
// (Job::prefetch) overlaps the computation, as a single process reads one prompt ahead.
constexpr std::size_t kDepth = 2;

// Ranks 1..N-1: ask, then compute the items handed out, sending each result (which asks for the
// next) until told to stop. Rank 0 answers the request with kDepth hand-outs and each result
// with one: an item or kStop.
void run_worker(const Job& job) {
  // Rank 0 names a rank that died by checking whether its process is gone (on its own node):
  // this rank tells it where it runs, and outlives the launcher's SIGTERM (its SIGKILL follows)
  // so that only the dead rank is gone when rank 0 looks.
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGTERM, &ignore, nullptr);
  send(std::string(host) + "\n" + std::to_string(getpid()), 0, kReady, "ready");
  std::deque<std::uint64_t> queue;
  auto receive = [&] {
    std::uint64_t k = 0;
    check_mpi(MPI_Recv(&k, 1, MPI_UINT64_T, 0, kAssign, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive");
    queue.push_back(k);
  };
  for (std::size_t i = 0; i < kDepth; ++i) receive();
  for (int begun = 1;; ++begun) {
    const std::uint64_t k = queue.front();
    if (k == kStop) return;
    if (job.prefetch && queue[1] != kStop) job.prefetch(queue[1]);
    maybe_fault(begun);
    std::string result;
    try {
      result = job.compute(k);
    } catch (const std::exception& e) {
      // Rank 0 reports it and ends the job; this rank waits for that end (on a tag never sent).
      send(item_message(k, e.what()), 0, kError, job.label(k));
      std::uint64_t never = 0;
      MPI_Recv(&never, 1, MPI_UINT64_T, 0, kNever, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      fail<RankError>("rank ", g_rank, ": ", job.label(k), ": ", e.what());
    }
    send(item_message(k, result), 0, kResult, job.label(k));
    queue.pop_front();
    receive();  // the next item is known before this rank starts the one after (prefetch)
  }
}

// Rank 0: a thread computes items like any other rank while this one hands items out, collects
// results and delivers them in order.
void run_root(const Job& job) {
  std::mutex mu;
  std::size_t next = 0;                       // lowest item not handed out yet
  std::vector<bool> taken(job.items, false);
  const std::size_t window = job.cost ? 4 * static_cast<std::size_t>(g_size) : 1;
  std::map<std::size_t, std::string> ready;   // results waiting for their turn
  std::exception_ptr local_error;
  std::optional<std::size_t> local_error_item, local_item;
  bool cancel = false;
  // The next item to hand out: the costliest of the first `window` not yet handed out (the
  // lowest index among equals), or simply the next one without costs.
  auto take = [&]() -> std::optional<std::size_t> {
    std::lock_guard lock(mu);
    while (next < job.items && taken[next]) ++next;
    if (cancel || next >= job.items) return std::nullopt;
    std::size_t pick = next;
    double best = -1;
    for (std::size_t k = next, seen = 0; k < job.items && seen < window; ++k) {
      if (taken[k]) continue;
      ++seen;
      const double c = job.cost ? job.cost(k) : 0.0;
      if (c > best) best = c, pick = k;
    }
    taken[pick] = true;
    return pick;
  };
  std::thread local([&] {
    std::deque<std::size_t> queue;
    for (int begun = 1;; ++begun) {
      while (queue.size() < kDepth)
        if (std::optional<std::size_t> k = take()) queue.push_back(*k);
        else break;
      if (queue.empty()) return;
      const std::size_t k = queue.front();
      if (job.prefetch && queue.size() > 1) job.prefetch(queue[1]);
      maybe_fault(begun);
      { std::lock_guard lock(mu); local_item = k; }
      try {
        std::string r = job.compute(k);
        std::lock_guard lock(mu);
        ready.emplace(k, std::move(r));
        local_item.reset();
      } catch (...) {
        std::lock_guard lock(mu);
        local_error = std::current_exception(), local_error_item = k, cancel = true;
        return;
      }
      queue.pop_front();
    }
  });
  std::vector<std::deque<std::size_t>> in_flight(g_size);   // per rank: handed out, no result yet
  std::vector<bool> told_to_stop(g_size, false);
  std::vector<std::pair<std::string, long>> where(g_size);  // per rank: host, pid
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::size_t delivered = 0;
  struct sigaction old_term {};
  struct sigaction on_term {};
  on_term.sa_handler = on_stop_signal;
  sigemptyset(&on_term.sa_mask);
  sigaction(SIGTERM, &on_term, &old_term);
  auto on_rank = [&](int r) {
    return in_flight[r].empty() ? std::string() : " while on " + job.label(in_flight[r].front());
  };
  auto in_flight_text = [&] {
    std::string s;
    std::lock_guard lock(mu);
    if (local_item) s += "rank 0: " + job.label(*local_item);
    for (int r = 1; r < g_size; ++r)
      if (!in_flight[r].empty()) s += (s.empty() ? "" : "; ") + ("rank " + std::to_string(r) + ": " + job.label(in_flight[r].front()));
    return s.empty() ? std::string("none") : s;
  };
  // One hand-out to rank r: the next item, or kStop when none is left.
  auto hand_out = [&](int r) {
    const std::optional<std::size_t> k = take();
    const std::uint64_t assign = k ? *k : kStop;
    if (k) in_flight[r].push_back(*k);
    else told_to_stop[r] = true;
    check_mpi(MPI_Send(&assign, 1, MPI_UINT64_T, r, kAssign, MPI_COMM_WORLD), "send");
  };
  auto workers_done = [&] {
    for (int r = 1; r < g_size; ++r)
      if (!told_to_stop[r] || !in_flight[r].empty()) return false;
    return true;
  };
  std::string failure;
  try {
    while (delivered < job.items || !workers_done()) {
      bool busy = false;
      int flag = 0;
      MPI_Status st;
      check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st), "probe");
      if (flag) {
        busy = true;
        int count = 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        std::string m(static_cast<std::size_t>(count), '\0');
        check_mpi(MPI_Recv(m.data(), count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                  "receive");
        const int r = st.MPI_SOURCE;
        if (st.MPI_TAG == kError) {
          const std::uint64_t k = item_of(m);
          fail<RankError>("rank ", r, " failed on ", job.label(k), ": ", m.substr(sizeof k));
        }
        if (st.MPI_TAG == kReady) {
          const std::size_t nl = m.find('\n');
          if (nl != std::string::npos) where[r] = {m.substr(0, nl), std::atol(m.c_str() + nl + 1)};
          for (std::size_t i = 0; i < kDepth; ++i) hand_out(r);
        }
        if (st.MPI_TAG == kResult) {
          const std::uint64_t k = item_of(m);
          ++g_traffic.items_from_others;
          g_traffic.result_bytes += m.size() - sizeof k;
          g_traffic.largest_result = std::max(g_traffic.largest_result, m.size() - sizeof k);
          KVSIM_CHECK(!in_flight[r].empty() && in_flight[r].front() == k, "dist: rank ", r, " sent an unexpected result");
          in_flight[r].pop_front();
          {
            std::lock_guard lock(mu);
            ready.emplace(k, m.substr(sizeof k));
          }
          hand_out(r);
        }
      }
      for (;;) {
        std::string r;
        {
          std::lock_guard lock(mu);
          if (local_error) std::rethrow_exception(local_error);
          auto it = ready.find(delivered);
          if (it == ready.end()) break;
          r = std::move(it->second);
          ready.erase(it);
        }
        busy = true;
        const auto t0 = std::chrono::steady_clock::now();
        job.deliver(delivered, std::move(r));
        g_traffic.deliver_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++delivered;
      }
      if (const int sig = g_stop_signal.load()) {
        // The ranks on this node whose process is gone: the ones that died.
        std::string dead;
        for (int r = 1; r < g_size; ++r)
          if (where[r].first == host && where[r].second > 0 && process_gone(static_cast<pid_t>(where[r].second)))
            dead += (dead.empty() ? "" : "; ") + ("rank " + std::to_string(r) + " (pid " + std::to_string(where[r].second) +
                                                   ") died" + on_rank(r));
        if (!dead.empty()) fail<RankError>(dead, "; the job stops (signal ", sig, " from the launcher)");
        fail<RankError>("stopped by the launcher (signal ", sig, "): a rank on another node ended (the launcher's message ",
                        "names it); in flight: ", in_flight_text());
      }
      if (!busy) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  } catch (const std::exception& e) {
    failure = e.what();
    if (local_error_item) failure = "rank 0 failed on " + job.label(*local_error_item) + ": " + failure;
  }
  { std::lock_guard lock(mu); cancel = true; }
  if (!failure.empty()) {
    // Said now: the launcher may kill this rank before the item in flight here is done.
    std::fprintf(stderr, "kvsim: error: %s\n", failure.c_str());
    std::fflush(stderr);
  }
  local.join();
  sigaction(SIGTERM, &old_term, nullptr);
  if (!failure.empty()) throw RankError(failure, /*reported=*/true);
}
#endif

}  // namespace

JobTraffic last_job_traffic() { return g_traffic; }

void run_job(const Job& job) {
  g_traffic = {};
#ifdef KVSIM_HAVE_MPI
  if (g_mpi && g_size > 1) {
    if (g_rank == 0) run_root(job);
    else run_worker(job);
    return;
  }
#endif
  run_local(job);
}

}  // namespace kvsim::dist
