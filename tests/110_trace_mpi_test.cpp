// `mpirun -np N kvsim trace` (docs/trace-format.md, "Index file and parts"): each rank records
// the prompts it is handed into a part file of its own, rank 0 writes OUT as the index of the
// parts. The index reads like a single trace, with the same prompts holding the same bits as a
// single process's trace, and replays to the same bytes; a rank killed mid-run leaves no OUT,
// and the same command run again completes the trace from the parts' .partial files. The index
// writer itself is tested without MPI (fast).
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "core/hash.hpp"
#include "core/error.hpp"
#include "support/mpi.hpp"
#include "support/shared.hpp"
#include "traces/trace_index.hpp"
#include "traces/trace_reader.hpp"
#include "tracer/trace_output.hpp"

using namespace kvsim;
namespace fs = std::filesystem;

namespace {

// 8 TinyStories chunks through stories260K, small: the whole file traces in about a second.
// `quiet`: no progress lines (else the last one tells how many prompts were resumed).
std::string trace_args(const fs::path& out, bool quiet = true) {
  return std::string(quiet ? "trace -q" : "trace") + " --threads 1 --model " + test::shared_path("models/stories260K/stories260K.bin").string() +
         " --input " + test::shared_path("data/tinystories_valid_subset/tinystories_val.txt").string() +
         " --prompt-len 128 --cont-len 16 --window 32 --topk 8 --limit 8 --out " + out.string();
}

// a.*field == b.*field for each field (INFO: its position in the list when one differs).
template <typename T, typename... F>
void check_same_fields(const T& a, const T& b, F T::*... fields) {
  int k = 0;
  auto one = [&](auto field) {
    INFO("field " << k++ << " of the list");
    CHECK(a.*field == b.*field);
  };
  (one(fields), ...);
}

// Every prompt of `a` and `b` the same, bit for bit, as TraceReader reads them.
void check_same_trace(const fs::path& a, const fs::path& b) {
  const TraceReader ra(a), rb(b);
  REQUIRE(ra.prompts().size() == rb.prompts().size());
  CHECK(ra.model().source == rb.model().source);
  CHECK(ra.storage() == rb.storage());
  CHECK(ra.has_classifier() == rb.has_classifier());
  CHECK(ra.read_final_norm() == rb.read_final_norm());
  for (int l = 0; l < ra.model().n_layers; ++l) CHECK(ra.read_w_o(l) == rb.read_w_o(l));
  for (std::size_t i = 0; i < ra.prompts().size(); ++i) {
    const PromptMeta &pa = ra.prompts()[i], &pb = rb.prompts()[i];
    INFO("prompt " << pa.id);
    REQUIRE(pa.id == pb.id);
    CHECK(pa.sample_id == pb.sample_id);
    CHECK(pa.n_prompt == pb.n_prompt);
    CHECK(pa.n_cont == pb.n_cont);
    CHECK(pa.window == pb.window);
    using O = PromptOutputs;
    check_same_fields(ra.read_outputs(i), rb.read_outputs(i), &O::tokens, &O::prompt_logprob, &O::cont_logprob,
                      &O::cont_topk_ids, &O::cont_topk_logits, &O::cont_logsumexp, &O::cont_residual);
    for (int l = 0; l < ra.model().n_layers; ++l) {
      INFO("layer " << l);
      using L = LayerRecord;
      check_same_fields(ra.read_layer(i, l), rb.read_layer(i, l), &L::keys, &L::values, &L::q_window, &L::q_cont,
                        &L::attn_colsum, &L::value_wo_l1);
    }
  }
}

// layers.csv + summary.csv of `kvsim run` on `trace` (run from another directory than the
// trace's: the index's links resolve against the index's own directory).
std::string replay(const fs::path& trace, const fs::path& out) {
  const test::CliResult r = test::run_cli("run " + trace.string() +
                                          " --policies full,snapkv:window=16,h2o,streamingllm --budget 32,64 --threads 1 -q --out " +
                                          out.string());
  INFO(r.output);
  REQUIRE(r.status == 0);
  return test::slurp(out / "layers.csv") + test::slurp(out / "summary.csv");
}

}  // namespace

TEST_CASE("mpi trace: parts and index hold the same prompts, bit for bit, and replay to the same bytes", "[mpi][shared]") {
  KVSIM_REQUIRE_MPI_AND_STORIES();
  test::TempDir tmp;
  const fs::path single = tmp / "single" / "t.h5";
  fs::create_directories(single.parent_path());
  test::CliResult r = test::run_cli(trace_args(single));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_FALSE(fs::exists(trace_parts_dir(single)));  // a world of one writes one file, as before
  REQUIRE(TraceReader(single).prompts().size() == 8);
  REQUIRE(TraceReader(single).parts().empty());
  const std::string expected = replay(single, tmp / "run-single");

  for (int ranks : {2, 3}) {
    INFO(ranks << " ranks");
    const fs::path dir = tmp / ("np" + std::to_string(ranks));
    const fs::path out = dir / "t.h5";
    fs::create_directories(dir);
    r = test::run_mpi(ranks, trace_args(out));
    INFO(r.output);
    REQUIRE(r.status == 0);
    REQUIRE(fs::exists(out));
    CHECK_FALSE(fs::exists(out.string() + ".partial"));
    std::string hash;
    {
      // Closed before the move below: HDF5 would take a reopened file for the one still open.
      const TraceReader index(out);
      REQUIRE(index.parts().size() == static_cast<std::size_t>(ranks));
      for (int k = 0; k < ranks; ++k) {
        CHECK(index.parts()[k] == "t.h5.parts/" + trace_part_name(k, ranks));
        CHECK(fs::exists(index.part_paths()[k]));  // finished: no .partial left
        CHECK_FALSE(fs::exists(index.part_paths()[k].string() + ".partial"));
      }
      // The manifests' hash covers the parts: it differs from the index file's own.
      hash = trace_content_hash(index);
      CHECK(hash != hex64(hash_file(out)));
    }
    check_same_trace(single, out);
    CHECK(replay(out, dir / "run") == expected);
    r = test::run_cli("inspect " + out.string());
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("parts    " + std::to_string(ranks)) &&
                             Catch::Contains("t.h5.parts/" + trace_part_name(ranks - 1, ranks)));
    // The pair moves together: links are relative to the index's directory.
    const fs::path moved = tmp / ("moved" + std::to_string(ranks));
    fs::rename(dir, moved);
    check_same_trace(single, moved / "t.h5");
    CHECK(trace_content_hash(TraceReader(moved / "t.h5")) == hash);
    // Another number of ranks than the parts on disk: one clear error, naming both.
    fs::rename(moved / "t.h5", moved / "old.h5");
    r = test::run_mpi(ranks == 2 ? 3 : 2, trace_args(moved / "t.h5"));
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Contains((moved / "t.h5.parts").string()) &&
                             Catch::Contains("on " + std::to_string(ranks) + " ranks"));
    CHECK_FALSE(fs::exists(moved / "t.h5"));
  }
}

TEST_CASE("mpi trace: a rank killed mid-run leaves no OUT, and the rerun completes the same trace", "[mpi][shared]") {
  KVSIM_REQUIRE_MPI_AND_STORIES();
  test::TempDir tmp;
  const fs::path single = tmp / "single.h5";
  test::CliResult r = test::run_cli(trace_args(single));
  REQUIRE(r.status == 0);

  const fs::path out = tmp / "t.h5";
  r = test::run_command("KVSIM_FAULT_KILL=1:2 " + test::mpirun_kvsim(3) + " " + trace_args(out));
  INFO(r.output);
  CHECK(r.status != 0);
  CHECK_THAT(r.output, Catch::Contains("rank 1"));
  CHECK_FALSE(fs::exists(out));
  CHECK(fs::exists(trace_parts_dir(out) / (trace_part_name(1, 3) + ".partial")));

  r = test::run_mpi(3, trace_args(out, /*quiet=*/false));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("resumed from " + trace_parts_dir(out).string()));
  check_same_trace(single, out);
}

TEST_CASE("trace index: a part read through an index is the part, and parts that do not belong are refused", "[trace]") {
  test::TempDir tmp;
  fs::create_directories(tmp / "p");
  const fs::path a = tmp / "p" / "a.h5", index = tmp / "i.h5";
  test::write_model_trace(a, random_model(test::small_config(), 3), test::TraceSpec{});
  write_trace_index(index, {a});
  CHECK_FALSE(fs::exists(index.string() + ".partial"));
  // The part open directly and through the index at once: HDF5 shares one open file only when
  // both opens are evict-on-close (TraceReader's link access properties).
  check_same_trace(a, index);
  {
    const TraceReader r(index), part(a);
    CHECK(r.parts() == std::vector<std::string>{"p/a.h5"});
    CHECK(r.part_paths() == std::vector<fs::path>{a});
    CHECK(part.parts().empty());
    // Every root attribute of the part, as stored.
    CHECK(r.format_version() == part.format_version());
    CHECK(r.producer().created_utc == part.producer().created_utc);
    CHECK(r.producer().git_sha == part.producer().git_sha);
    CHECK(trace_content_hash(part) == hex64(hash_file(a)));
    CHECK(trace_content_hash(r) != hex64(hash_file(index)));
  }
  CHECK(trace_file_kind(index) == TraceFileKind::kIndex);
  CHECK(trace_file_kind(a) == TraceFileKind::kTrace);
  CHECK(trace_file_kind(tmp / "absent.h5") == TraceFileKind::kUnreadable);

  auto refused = [&](const std::vector<fs::path>& parts, const std::string& needle) {
    const fs::path out = tmp / "bad.h5";
    try {
      write_trace_index(out, parts);
      FAIL("no error");
    } catch (const TraceError& e) {
      CHECK_THAT(e.what(), Catch::Contains(needle));
    }
    CHECK_FALSE(fs::exists(out));
  };
  // The same prompt ids in two parts.
  fs::copy_file(a, tmp / "b.h5");
  refused({a, tmp / "b.h5"}, "/prompts/000000 is also in " + a.string());
  // Another model.
  ModelConfig other = test::small_config();
  other.n_layers = 2;
  test::write_model_trace(tmp / "c.h5", random_model(other, 3), test::TraceSpec{});
  refused({a, tmp / "c.h5"}, (tmp / "c.h5").string() + ": does not belong with " + a.string() + " (/model n_layers is 2 there, 3 in part 0)");
  refused({index}, "is itself an index file");
}
