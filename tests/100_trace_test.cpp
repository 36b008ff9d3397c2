// Tests of traces/: the HDF5 trace format (docs/trace-format.md) written by TraceWriter (v3)
// and read back by TraceReader (v1 to v3), resume after an interruption, the errors a user
// sees, and corrupted files (checksums).
#include <catch2/catch.hpp>
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "support/skip.hpp"
#include "traces/hdf5_io.hpp"
#include "traces/trace_reader.hpp"
#include "traces/trace_writer.hpp"

using namespace kvsim;
namespace fs = std::filesystem;

namespace {

// A unique path under the temp directory, removed (with its .partial) at scope exit unless
// KVSIM_KEEP_TEST_TRACES is set (to inspect them with h5dump or h5py).
struct TempTrace {
  fs::path path;
  explicit TempTrace(const std::string& name) {
    path = fs::temp_directory_path() / ("kvsim_test_" + std::to_string(::getpid()) + "_" + name + ".h5");
    remove_all();
  }
  ~TempTrace() {
    if (std::getenv("KVSIM_KEEP_TEST_TRACES") == nullptr) remove_all();
  }
  fs::path partial() const { return fs::path(path.string() + ".partial"); }
  void remove_all() const {
    std::error_code ec;
    fs::remove(path, ec);
    fs::remove(partial(), ec);
  }
};

ModelInfo small_model() {
  ModelInfo m;
  m.arch = "llama";
  m.n_layers = 3;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.head_dim = 8;
  m.hidden = 16;
  m.vocab = 100;
  m.rope_theta = 500000.0;
  m.rope_style = "rotate_half";
  m.norm_eps = 1e-5;
  m.source = "test-model sha256:abc";
  return m;
}

TraceProducer test_producer() { return {"0.1.0", "deadbeef", "cpu", "2024-01-02T03:04:05Z"}; }

std::vector<float> random_floats(std::mt19937& rng, std::size_t n, float scale = 2.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct PromptData {
  PromptMeta meta;
  std::vector<std::int32_t> tokens;  // [T+M]
  std::vector<LayerRecord> layers;   // [L]
  PromptOutputs outputs;
};

PromptData random_prompt(std::mt19937& rng, const ModelInfo& m, const std::string& id, int T, int M, int W, int K) {
  PromptData p;
  p.meta = {id, T, M, W, K, "unit", "inline", id, T + 5, {}, {}};
  std::uniform_int_distribution<std::int32_t> tok(0, m.vocab - 1);
  for (int i = 0; i < T + M; ++i) p.tokens.push_back(tok(rng));
  auto G = static_cast<std::size_t>(m.n_kv_heads), H = static_cast<std::size_t>(m.n_heads);
  auto d = static_cast<std::size_t>(m.head_dim);
  for (int l = 0; l < m.n_layers; ++l) {
    LayerRecord r;
    r.keys = random_floats(rng, G * (T + M) * d);
    r.values = random_floats(rng, G * (T + M) * d);
    r.q_window = random_floats(rng, H * W * d);
    r.q_cont = random_floats(rng, H * M * d);
    r.attn_colsum = random_floats(rng, H * T, 10.0f);
    p.layers.push_back(std::move(r));
  }
  p.outputs.tokens = p.tokens;
  p.outputs.prompt_logprob = random_floats(rng, T);
  p.outputs.cont_logprob = random_floats(rng, M);
  for (int i = 0; i < M * K; ++i) p.outputs.cont_topk_ids.push_back(tok(rng));
  p.outputs.cont_topk_logits = random_floats(rng, static_cast<std::size_t>(M * K), 5.0f);
  p.outputs.cont_logsumexp = random_floats(rng, M);
  return p;
}

LayerView view_of(const LayerRecord& r) { return {r.keys, r.values, r.q_window, r.q_cont, r.attn_colsum, {}}; }

void write_prompt(TraceWriter& w, const PromptData& p) {
  w.begin_prompt(p.meta, p.tokens);
  for (int l = static_cast<int>(p.layers.size()) - 1; l >= 0; --l)  // any order is allowed
    w.write_layer(l, view_of(p.layers[static_cast<std::size_t>(l)]));
  w.end_prompt(p.outputs);
}

struct Fixture {
  ModelInfo model = small_model();
  std::mt19937 rng{1234};
  std::vector<float> w_o;         // [L, hidden, n_heads*head_dim]
  std::vector<float> final_norm;  // [hidden]
  std::vector<PromptData> prompts;
  Fixture() {
    w_o = random_floats(rng, static_cast<std::size_t>(model.n_layers * model.hidden * model.n_heads * model.head_dim));
    final_norm = random_floats(rng, static_cast<std::size_t>(model.hidden));
    prompts.push_back(random_prompt(rng, model, "000000", 10, 3, 4, 5));
    prompts.push_back(random_prompt(rng, model, "000001", 7, 0, 7, 5));  // M = 0: empty datasets
  }
  void write_all(const fs::path& path, WriterOptions options = {}) {
    TraceWriter w(path, model, test_producer(), w_o, final_norm, options);
    for (const PromptData& p : prompts) write_prompt(w, p);
    w.finish();
  }
};

// binary16 keeps 11 significant bits: round to nearest is within 2^-11 relative (+ subnormals).
void require_half_close(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    REQUIRE(std::abs(got[i] - want[i]) <= std::ldexp(std::abs(want[i]), -11) + 1e-7f);
}

// Within the rounding of `storage`: fp32 exact, fp16 11 significant bits, bf16 8 (its range is
// fp32's, so no subnormal slack beyond fp32's).
void require_stored_close(const std::vector<float>& got, const std::vector<float>& want, KvStorage storage) {
  if (storage == KvStorage::kFp16) return require_half_close(got, want);
  REQUIRE(got.size() == want.size());
  if (storage == KvStorage::kFp32) {
    REQUIRE(got == want);
    return;
  }
  for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= std::ldexp(std::abs(want[i]), -8));
}

// stdout + stderr of a shell command, and its exit status.
std::pair<int, std::string> run_command(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  return {::pclose(pipe), output};
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const TraceError& e) {
    return e.what();
  }
  return "(no TraceError thrown)";
}

// Replaces dataset `object` by a float32 dataset of shape `dims` filled with `value`, stored as
// the writer stores it (chunked with Fletcher-32 unless empty): a writer's mistake, not a corruption.
void rewrite_dataset(const fs::path& file, const std::string& object, const std::vector<hsize_t>& dims, float value) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  REQUIRE(H5Ldelete(f, object.c_str(), H5P_DEFAULT) >= 0);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  std::size_t n = 1;
  for (hsize_t d : dims) n *= d;
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (n > 0) REQUIRE((H5Pset_chunk(dcpl, static_cast<int>(dims.size()), dims.data()) >= 0 && H5Pset_fletcher32(dcpl) >= 0));
  hid_t ds = H5Dcreate2(f, object.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  REQUIRE(ds >= 0);
  std::vector<float> data(n, value);
  REQUIRE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) >= 0);
  H5Dclose(ds);
  H5Sclose(space);
  H5Fclose(f);
}

}  // namespace

TEST_CASE("trace: round trip of a small random trace", "[trace]") {
  TempTrace tmp("roundtrip");
  Fixture fx;
  fx.write_all(tmp.path);
  REQUIRE(fs::exists(tmp.path));
  REQUIRE_FALSE(fs::exists(tmp.partial()));

  TraceReader r(tmp.path);
  CHECK(r.model().arch == fx.model.arch);
  CHECK(r.model().n_layers == 3);
  CHECK(r.model().n_heads == 4);
  CHECK(r.model().n_kv_heads == 2);
  CHECK(r.model().head_dim == 8);
  CHECK(r.model().hidden == 16);
  CHECK(r.model().vocab == 100);
  CHECK(r.model().rope_theta == 500000.0);
  CHECK(r.model().rope_style == "rotate_half");
  CHECK(r.model().norm_eps == 1e-5);
  CHECK(r.model().source == fx.model.source);
  CHECK(r.producer().git_sha == "deadbeef");
  CHECK(r.producer().backend == "cpu");
  CHECK(r.producer().created_utc == "2024-01-02T03:04:05Z");

  REQUIRE(r.prompts().size() == 2);
  for (std::size_t p = 0; p < 2; ++p) {
    const PromptData& want = fx.prompts[p];
    const PromptMeta& meta = r.prompts()[p];
    CHECK(meta.id == want.meta.id);
    CHECK(meta.n_prompt == want.meta.n_prompt);
    CHECK(meta.n_cont == want.meta.n_cont);
    CHECK(meta.window == want.meta.window);
    CHECK(meta.topk == want.meta.topk);
    CHECK(meta.task == "unit");
    CHECK(meta.sample_id == want.meta.id);
    CHECK(meta.truncated_from == want.meta.truncated_from);

    PromptOutputs out = r.read_outputs(p);
    CHECK(out.tokens == want.outputs.tokens);
    CHECK(out.prompt_logprob == want.outputs.prompt_logprob);  // fp32: exact
    CHECK(out.cont_logprob == want.outputs.cont_logprob);
    CHECK(out.cont_topk_ids == want.outputs.cont_topk_ids);
    CHECK(out.cont_topk_logits == want.outputs.cont_topk_logits);
    CHECK(out.cont_logsumexp == want.outputs.cont_logsumexp);

    for (int l = 0; l < 3; ++l) {
      LayerRecord rec = r.read_layer(p, l);
      const LayerRecord& w = want.layers[static_cast<std::size_t>(l)];
      require_half_close(rec.keys, w.keys);
      require_half_close(rec.values, w.values);
      require_half_close(rec.q_window, w.q_window);
      require_half_close(rec.q_cont, w.q_cont);
      CHECK(rec.attn_colsum == w.attn_colsum);
    }
    CHECK(r.has_dataset(p, "layers/2/q_cont"));
    CHECK(r.has_dataset(p, "cont_logprob"));
    CHECK_FALSE(r.has_dataset(p, "layers/3/keys"));
    CHECK_FALSE(r.has_dataset(p, "layers"));  // a group, not a dataset
    CHECK_FALSE(r.has_dataset(p, "nope"));
  }
  CHECK(r.prompts()[1].n_cont == 0);
  CHECK(r.read_layer(1, 0).q_cont.empty());

  std::size_t per_layer = 16 * 4 * 8;
  for (int l = 0; l < 3; ++l) {
    std::vector<float> w = r.read_w_o(l);
    std::vector<float> want(fx.w_o.begin() + l * per_layer, fx.w_o.begin() + (l + 1) * per_layer);
    CHECK(w == want);
  }
  CHECK(r.read_final_norm() == fx.final_norm);
  CHECK_THROWS_AS(r.read_layer(2, 0), TraceError);
  CHECK_THROWS_AS(r.read_layer(0, 3), TraceError);
}

TEST_CASE("trace: storage fp16 / fp32 / bf16 round trip, format_version and the storage attribute", "[trace]") {
  for (KvStorage storage : {KvStorage::kFp16, KvStorage::kFp32, KvStorage::kBf16}) {
    INFO(storage_name(storage));
    TempTrace tmp(std::string("storage_") + storage_name(storage));
    Fixture fx;
    fx.write_all(tmp.path, WriterOptions{.storage = storage});
    {  // raw HDF5, before a TraceReader opens the file with other access properties
      hid_t f = H5Fopen(tmp.path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
      REQUIRE(f >= 0);
      CHECK(H5Aexists(f, "storage") > 0);  // version 3 names every storage, fp16 too
      hid_t d = H5Dopen2(f, "/prompts/000000/layers/0/keys", H5P_DEFAULT);
      hid_t t = H5Dget_type(d);
      CHECK(H5Tget_size(t) == (storage == KvStorage::kFp32 ? 4u : 2u));
      H5Tclose(t);
      H5Dclose(d);
      H5Fclose(f);
    }
    TraceReader r(tmp.path);
    CHECK(r.storage() == storage);
    CHECK(r.format_version() == 3);
    CHECK(r.has_checksums());
    for (std::size_t p = 0; p < 2; ++p)
      for (int l = 0; l < 3; ++l) {
        const LayerRecord rec = r.read_layer(p, l);
        const LayerRecord& w = fx.prompts[p].layers[static_cast<std::size_t>(l)];
        require_stored_close(rec.keys, w.keys, storage);
        require_stored_close(rec.values, w.values, storage);
        require_stored_close(rec.q_window, w.q_window, storage);
        require_stored_close(rec.q_cont, w.q_cont, storage);
        CHECK(rec.attn_colsum == w.attn_colsum);
      }
  }
  // bf16 keeps fp32's range: 1e6 is fine (fp16 refuses it), FLT_MAX rounds to Inf and is refused.
  TempTrace big("storage_range");
  Fixture fx;
  TraceWriter w(big.path, fx.model, test_producer(), fx.w_o, fx.final_norm, WriterOptions{.storage = KvStorage::kBf16});
  PromptData p = fx.prompts[0];
  w.begin_prompt(p.meta, p.tokens);
  LayerRecord bad = p.layers[0];
  bad.values[5] = 3.4e38f;
  CHECK_THAT(message_of([&] { w.write_layer(0, view_of(bad)); }),
             Catch::Contains("/prompts/000000/layers/0/values: value") && Catch::Contains("not finite in bf16"));
  bad.values[5] = std::nanf("");
  CHECK_THAT(message_of([&] { w.write_layer(0, view_of(bad)); }), Catch::Contains("not finite in bf16"));
  bad.values[5] = 1e6f;
  CHECK_NOTHROW(w.write_layer(0, view_of(bad)));
}

TEST_CASE("trace: a dataset in another precision than the trace's storage is refused", "[trace]") {
  TempTrace tmp("storage_mismatch");
  Fixture fx;
  fx.write_all(tmp.path, WriterOptions{.storage = KvStorage::kBf16});
  rewrite_dataset(tmp.path, "/prompts/000000/layers/1/keys", {2, 13, 8}, 0.5f);  // float32
  TraceReader r(tmp.path);
  CHECK(message_of([&] { r.read_layer(0, 1); }) ==
        tmp.path.string() + ": /prompts/000000/layers/1/keys is stored as fp32, but the trace's storage is bf16");
  CHECK_NOTHROW(r.read_layer(0, 0));
  // A .partial written with one storage is not resumed with another.
  TempTrace part("storage_resume");
  { TraceWriter w(part.path, fx.model, test_producer(), fx.w_o, fx.final_norm, WriterOptions{.storage = KvStorage::kFp32}); }
  CHECK_THAT(message_of([&] {
               TraceWriter w(part.path, fx.model, test_producer(), fx.w_o, fx.final_norm,
                             WriterOptions{.storage = KvStorage::kBf16});
             }),
             Catch::Contains("written with storage fp32, not bf16"));
  CHECK_THAT(message_of([&] { TraceWriter w(part.path, fx.model, test_producer(), fx.w_o, fx.final_norm); }),
             Catch::Contains("written with storage fp32, not fp16"));
  TraceWriter resumed(part.path, fx.model, test_producer(), fx.w_o, fx.final_norm,
                      WriterOptions{.storage = KvStorage::kFp32});
  CHECK(resumed.resumed());
}

TEST_CASE("trace: one reader used from several threads", "[trace]") {
  TempTrace tmp("threads");
  Fixture fx;
  fx.write_all(tmp.path);
  TraceReader r(tmp.path);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        std::size_t p = static_cast<std::size_t>((t + rep) % 2);
        int l = (t + rep) % 3;
        LayerRecord rec = r.read_layer(p, l);
        if (rec.attn_colsum != fx.prompts[p].layers[static_cast<std::size_t>(l)].attn_colsum) return;
      }
      ok[static_cast<std::size_t>(t)] = 1;
    });
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>(4, 1));
}

TEST_CASE("trace: resume after an interruption", "[trace]") {
  TempTrace tmp("resume");
  Fixture fx;
  {
    TraceWriter w(tmp.path, fx.model, test_producer(), fx.w_o, fx.final_norm);
    CHECK_FALSE(w.resumed());
    write_prompt(w, fx.prompts[0]);
    // Prompt 1 is cut off after one layer; the writer is destroyed without finish().
    w.begin_prompt(fx.prompts[1].meta, fx.prompts[1].tokens);
    w.write_layer(0, view_of(fx.prompts[1].layers[0]));
  }
  REQUIRE(fs::exists(tmp.partial()));
  REQUIRE_FALSE(fs::exists(tmp.path));
  // A .partial is not a finished trace, but a reader would only list the complete prompt.
  CHECK(TraceReader(tmp.partial()).prompts().size() == 1);
  {
    TraceWriter w(tmp.path, fx.model, test_producer(), fx.w_o, fx.final_norm);
    CHECK(w.resumed());
    CHECK(w.has_prompt("000000"));
    CHECK_FALSE(w.has_prompt("000001"));
    CHECK_THROWS_AS(w.begin_prompt(fx.prompts[0].meta, fx.prompts[0].tokens), TraceError);  // already complete
    write_prompt(w, fx.prompts[1]);
    w.finish();
  }
  REQUIRE_FALSE(fs::exists(tmp.partial()));
  TraceReader r(tmp.path);
  REQUIRE(r.prompts().size() == 2);
  CHECK(r.read_outputs(1).prompt_logprob == fx.prompts[1].outputs.prompt_logprob);
  require_half_close(r.read_layer(1, 2).keys, fx.prompts[1].layers[2].keys);
  require_half_close(r.read_layer(0, 1).values, fx.prompts[0].layers[1].values);
}

TEST_CASE("trace: a .partial of another model is not resumed", "[trace]") {
  TempTrace tmp("othermodel");
  Fixture fx;
  { TraceWriter w(tmp.path, fx.model, test_producer(), fx.w_o, fx.final_norm); }
  ModelInfo other = fx.model;
  other.source = "another checkpoint";
  std::string msg = message_of([&] { TraceWriter w(tmp.path, other, test_producer(), fx.w_o, fx.final_norm); });
  CHECK_THAT(msg, Catch::Contains(tmp.partial().string()) && Catch::Contains("another model") &&
                      Catch::Contains("delete it"));
  TraceWriter w(tmp.path, other, test_producer(), fx.w_o, fx.final_norm, WriterOptions{.overwrite = true});
  CHECK_FALSE(w.resumed());

  // A .partial that is not HDF5 at all.
  TempTrace junk("junkpartial");
  std::ofstream(junk.partial()) << "not hdf5";
  msg = message_of([&] { TraceWriter j(junk.path, fx.model, test_producer(), fx.w_o, fx.final_norm); });
  CHECK_THAT(msg, Catch::Contains(junk.partial().string()) && Catch::Contains("delete it"));
}

TEST_CASE("trace: writer rejects bad input before writing", "[trace]") {
  TempTrace tmp("badinput");
  Fixture fx;
  TraceWriter w(tmp.path, fx.model, test_producer(), fx.w_o, fx.final_norm);
  PromptData p = fx.prompts[0];
  w.begin_prompt(p.meta, p.tokens);
  LayerRecord bad = p.layers[0];
  bad.keys.pop_back();
  CHECK_THAT(message_of([&] { w.write_layer(0, view_of(bad)); }),
             Catch::Contains("/prompts/000000/layers/0/keys") && Catch::Contains("expected [2,13,8]"));
  bad = p.layers[0];
  bad.values[5] = 1e6f;  // beyond fp16 range
  CHECK_THAT(message_of([&] { w.write_layer(0, view_of(bad)); }), Catch::Contains("not finite in fp16"));
  CHECK_THAT(message_of([&] { w.end_prompt(p.outputs); }), Catch::Contains("before layer 0"));
}

TEST_CASE("trace: unsupported format_version", "[trace]") {
  TempTrace tmp("version");
  Fixture fx;
  fx.write_all(tmp.path);
  {
    hid_t f = H5Fopen(tmp.path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int version = 4;
    REQUIRE(H5Awrite(a, H5T_NATIVE_INT, &version) >= 0);
    H5Aclose(a);
    H5Fclose(f);
  }
  CHECK_THAT(message_of([&] { TraceReader r(tmp.path); }),
             Catch::Contains(tmp.path.string() + ": format_version 4 is not supported (this kvsim reads 1 to 3)"));
}

TEST_CASE("trace: truncated, missing and non-HDF5 files", "[trace]") {
  TempTrace tmp("whole");
  TempTrace cut("truncated");
  Fixture fx;
  fx.write_all(tmp.path);
  fs::copy_file(tmp.path, cut.path);
  fs::resize_file(cut.path, fs::file_size(cut.path) / 2);
  CHECK_THAT(message_of([&] { TraceReader r(cut.path); }), Catch::Contains(cut.path.string()));

  TempTrace missing("missing");
  CHECK_THAT(message_of([&] { TraceReader r(missing.path); }),
             Catch::Contains(missing.path.string()) && Catch::Contains("no such trace file"));

  TempTrace text("text");
  std::ofstream(text.path) << "hello";
  CHECK_THAT(message_of([&] { TraceReader r(text.path); }),
             Catch::Contains(text.path.string()) && Catch::Contains("not an HDF5 file"));
}

TEST_CASE("trace: shape mismatch and NaN are reported with the dataset path", "[trace]") {
  TempTrace tmp("shape");
  Fixture fx;
  fx.write_all(tmp.path);
  rewrite_dataset(tmp.path, "/prompts/000000/layers/1/keys", {2, 12, 8}, 0.5f);
  rewrite_dataset(tmp.path, "/prompts/000001/cont_logsumexp", {0}, 0.0f);  // still valid: M = 0
  rewrite_dataset(tmp.path, "/prompts/000000/cont_logprob", {3}, std::nanf(""));
  TraceReader r(tmp.path);
  CHECK(message_of([&] { r.read_layer(0, 1); }) ==
        tmp.path.string() + ": /prompts/000000/layers/1/keys has shape [2,12,8], expected [2,13,8]");
  CHECK_NOTHROW(r.read_layer(0, 0));
  CHECK_NOTHROW(r.read_outputs(1));
  CHECK_THAT(message_of([&] { r.read_outputs(0); }),
             Catch::Contains("/prompts/000000/cont_logprob holds a non-finite value"));
}

TEST_CASE("trace: chunks stay whole up to 256 MiB, then split along the first axes", "[trace]") {
  using h5::Dims;
  CHECK(h5::chunk_dims({8, 4096, 128}, 2) == Dims{8, 4096, 128});     // 8 MiB: one chunk
  CHECK(h5::chunk_dims({8, 300000, 128}, 2) == Dims{3, 300000, 128});  // 586 MiB: 3 heads per chunk
  CHECK(h5::chunk_dims({1, 1 << 20, 256}, 4) == Dims{1, 1 << 18, 256});  // 1 GiB in one head
  for (const Dims& dims : {Dims{8, 300000, 128}, Dims{1, 1 << 20, 256}, Dims{64, 70000, 128}})
    CHECK(h5::element_count(h5::chunk_dims(dims, 2)) * 2 <= h5::kMaxChunkBytes);
}

TEST_CASE("trace: h5py reads K/V as float16", "[trace]") {
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0)
    KVSIM_SKIP("/usr/bin/python3 cannot import h5py");
  TempTrace tmp("h5py");
  Fixture fx;
  fx.write_all(tmp.path);
  // The one-liner documented in docs/trace-format.md ("Read it from Python").
  std::string command =
      "/usr/bin/python3 -c \"import h5py,sys; d=h5py.File(sys.argv[1],'r')['prompts/000000/layers/0/keys']; "
      "print(d.dtype, d.shape)\" '" + tmp.path.string() + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  int status = ::pclose(pipe);
  INFO(output);
  REQUIRE(status == 0);
  CHECK(output == "float16 (2, 13, 8)\n");

  // Storage layout: one chunk per (prompt, layer) dataset and one per layer of W_o.
  command = "/usr/bin/python3 -c \"import h5py,sys; f=h5py.File(sys.argv[1],'r'); "
            "print(f['prompts/000000/layers/0/keys'].chunks, f['model/w_o'].chunks, f['model/w_o'].compression, "
            "f['prompts/000000/layers/0/keys'].fletcher32)\" '" +
            tmp.path.string() + "' 2>&1";
  pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  output.clear();
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  REQUIRE(::pclose(pipe) == 0);
  CHECK(output == "(2, 13, 8) (1, 16, 32) gzip True\n");

  // fp32 and bf16 traces: numpy reads both as float32 (HDF5 widens bf16 exactly), values equal
  // to kvsim's reader, and the root attribute names the storage.
  for (KvStorage storage : {KvStorage::kFp32, KvStorage::kBf16}) {
    INFO(storage_name(storage));
    TempTrace st(std::string("h5py_") + storage_name(storage));
    fx.write_all(st.path, WriterOptions{.storage = storage});
    const auto [status2, text] = run_command(
        "/usr/bin/python3 -c \"import h5py,sys; f=h5py.File(sys.argv[1],'r'); d=f['prompts/000000/layers/0/keys']; "
        "k=d[()]; print(f.attrs['format_version'], f.attrs['storage'].decode(), d.dtype, k.shape, repr(float(k[1,12,7])))\" '" +
        st.path.string() + "'");
    INFO(text);
    REQUIRE(status2 == 0);
    const float want = TraceReader(st.path).read_layer(0, 0).keys[(1 * 13 + 12) * 8 + 7];
    const std::string head = std::string("3 ") + storage_name(storage) + " float32 (2, 13, 8) ";
    REQUIRE(text.rfind(head, 0) == 0);
    CHECK(std::stof(text.substr(head.size())) == want);
  }
}

namespace {

std::vector<char> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put_file_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void flip_byte(const fs::path& path, std::size_t offset, char mask = 0x5A) {
  std::vector<char> bytes = file_bytes(path);
  REQUIRE(offset < bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ mask);
  put_file_bytes(path, bytes);
}

// File offset and size of the (first) chunk of a dataset, as stored.
std::pair<std::size_t, std::size_t> chunk_location(const fs::path& path, const std::string& object) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, object.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  std::vector<hsize_t> offset(3, 0);
  unsigned filter_mask = 0;
  haddr_t addr = HADDR_UNDEF;
  hsize_t size = 0;
  hid_t space = H5Dget_space(d);
  const herr_t status = H5Dget_chunk_info(d, space, 0, offset.data(), &filter_mask, &addr, &size);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  REQUIRE(status >= 0);
  REQUIRE(addr != HADDR_UNDEF);
  return {static_cast<std::size_t>(addr), static_cast<std::size_t>(size)};
}

// Address of an object's header.
std::size_t header_address(const fs::path& path, const std::string& object) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  H5O_info_t info;
  const herr_t status = H5Oget_info_by_name(f, object.c_str(), &info, H5P_DEFAULT);
  H5Fclose(f);
  REQUIRE(status >= 0);
  return static_cast<std::size_t>(info.addr);
}

// Everything a reader hands the simulator, as read from `path`.
struct TraceContents {
  ModelInfo model;
  TraceProducer producer;
  std::vector<PromptMeta> prompts;
  std::vector<PromptOutputs> outputs;
  std::vector<LayerRecord> layers;  // [prompt][layer], flattened
  std::vector<std::vector<float>> w_o;
  std::vector<float> final_norm;
};

TraceContents read_everything(const fs::path& path) {
  TraceReader r(path);
  TraceContents c{r.model(), r.producer(), r.prompts(), {}, {}, {}, r.read_final_norm()};
  for (std::size_t p = 0; p < r.prompts().size(); ++p) {
    c.outputs.push_back(r.read_outputs(p));
    for (int l = 0; l < r.model().n_layers; ++l) c.layers.push_back(r.read_layer(p, l));
  }
  for (int l = 0; l < r.model().n_layers; ++l) c.w_o.push_back(r.read_w_o(l));
  return c;
}

// Bit-identical floats (NaN-safe, -0 != +0).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// "" when equal, else what differs first.
std::string difference(const TraceContents& a, const TraceContents& b) {
  const ModelInfo &ma = a.model, &mb = b.model;
  if (ma.arch != mb.arch || ma.n_layers != mb.n_layers || ma.n_heads != mb.n_heads || ma.n_kv_heads != mb.n_kv_heads ||
      ma.head_dim != mb.head_dim || ma.hidden != mb.hidden || ma.vocab != mb.vocab || ma.rope_theta != mb.rope_theta ||
      ma.rope_style != mb.rope_style || ma.norm_eps != mb.norm_eps || ma.source != mb.source)
    return "model";
  if (a.producer.version != b.producer.version || a.producer.git_sha != b.producer.git_sha ||
      a.producer.backend != b.producer.backend || a.producer.created_utc != b.producer.created_utc)
    return "producer";
  if (a.prompts.size() != b.prompts.size()) return "prompt count";
  for (std::size_t p = 0; p < a.prompts.size(); ++p) {
    const PromptMeta &x = a.prompts[p], &y = b.prompts[p];
    if (x.id != y.id || x.n_prompt != y.n_prompt || x.n_cont != y.n_cont || x.window != y.window ||
        x.topk != y.topk || x.task != y.task || x.source != y.source || x.sample_id != y.sample_id ||
        x.truncated_from != y.truncated_from || x.answers != y.answers || x.scorer != y.scorer)
      return "prompt meta " + std::to_string(p);
    const PromptOutputs &o = a.outputs[p], &q = b.outputs[p];
    if (o.tokens != q.tokens || o.cont_topk_ids != q.cont_topk_ids || !same_bits(o.prompt_logprob, q.prompt_logprob) ||
        !same_bits(o.cont_logprob, q.cont_logprob) || !same_bits(o.cont_topk_logits, q.cont_topk_logits) ||
        !same_bits(o.cont_logsumexp, q.cont_logsumexp) || !same_bits(o.cont_residual, q.cont_residual))
      return "outputs " + std::to_string(p);
  }
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    const LayerRecord &x = a.layers[i], &y = b.layers[i];
    if (!same_bits(x.keys, y.keys) || !same_bits(x.values, y.values) || !same_bits(x.q_window, y.q_window) ||
        !same_bits(x.q_cont, y.q_cont) || !same_bits(x.attn_colsum, y.attn_colsum))
      return "layer record " + std::to_string(i);
  }
  for (std::size_t l = 0; l < a.w_o.size(); ++l)
    if (!same_bits(a.w_o[l], b.w_o[l])) return "w_o " + std::to_string(l);
  if (!same_bits(a.final_norm, b.final_norm)) return "final_norm";
  return "";
}

fs::path legacy_trace(const char* name) { return fs::path(KVSIM_SOURCE_DIR) / "tests" / "data" / name; }

}  // namespace

TEST_CASE("trace: a flipped byte in a dataset's data is a checksum error naming the dataset", "[trace]") {
  for (int level : {0, 4}) {  // uncompressed and deflate: Fletcher-32 covers the bytes as stored
    INFO("compression " << level);
    TempTrace tmp("flip_data_" + std::to_string(level));
    Fixture fx;
    fx.write_all(tmp.path, WriterOptions{.compression_level = level});
    const std::string object = "/prompts/000000/layers/1/values";
    const auto [addr, size] = chunk_location(tmp.path, object);
    REQUIRE(size > 8);
    flip_byte(tmp.path, addr + size / 2);
    TraceReader r(tmp.path);  // metadata intact: opens
    const std::string msg = message_of([&] { r.read_layer(0, 1); });
    CHECK_THAT(msg, Catch::StartsWith(tmp.path.string() + ": " + object + ": cannot read dataset") &&
                        Catch::Contains("checksum", Catch::CaseSensitive::No));
    CHECK_NOTHROW(r.read_layer(0, 0));  // the other datasets still read
    CHECK_NOTHROW(r.read_outputs(0));
  }
}

TEST_CASE("trace: a flipped byte in an object header or the attributes is a clear error", "[trace]") {
  Fixture fx;
  // The root group's header holds the root attributes (format, version, producer, ...).
  for (const char* object : {"/", "/model", "/prompts/000000", "/prompts/000000/layers/2", "/prompts/000001/tokens",
                             "/prompts/000000/layers/0/keys"}) {
    INFO(object);
    TempTrace tmp("flip_header");
    fx.write_all(tmp.path);
    const std::size_t addr = header_address(tmp.path, object);
    flip_byte(tmp.path, addr + 24);  // past the signature, version, flags and sizes: a message
    const std::string msg = message_of([&] { read_everything(tmp.path); });
    INFO(msg);
    CHECK_THAT(msg, Catch::StartsWith(tmp.path.string() + ": ") &&
                        (Catch::Contains("checksum", Catch::CaseSensitive::No) || Catch::Contains("corrupt")));
  }
}

TEST_CASE("trace: byte-flip sweep: every flip is an error or reads back bit-identical", "[trace]") {
  for (int level : {0, 4}) {
    INFO("compression " << level);
    TempTrace tmp("sweep_" + std::to_string(level));
    TempTrace flipped("sweep_flipped");
    Fixture fx;
    fx.write_all(tmp.path, WriterOptions{.compression_level = level});
    const TraceContents clean = read_everything(tmp.path);
    const std::vector<char> bytes = file_bytes(tmp.path);
    // About 250 flips spread over the whole file, a different bit pattern at each.
    const std::size_t step = std::max<std::size_t>(1, bytes.size() / 250);
    int errors = 0, identical = 0;
    for (std::size_t at = 3; at < bytes.size(); at += step) {
      std::vector<char> bad = bytes;
      bad[at] = static_cast<char>(bad[at] ^ (1 << (at % 8)));
      put_file_bytes(flipped.path, bad);
      std::string msg;
      try {
        const std::string diff = difference(read_everything(flipped.path), clean);
        INFO("flip at byte " << at << " of " << bytes.size());
        CHECK(diff == "");  // read without error: must be the same data
        ++identical;
        continue;
      } catch (const TraceError& e) {
        msg = e.what();
      }
      INFO("flip at byte " << at << ": " << msg);
      CHECK_THAT(msg, Catch::StartsWith(flipped.path.string() + ": "));
      ++errors;
    }
    WARN("compression " << level << ": " << bytes.size() << " bytes, " << errors + identical << " flips: " << errors
                        << " errors, " << identical << " harmless (unused bytes)");
    CHECK(errors > 0);
  }
}

TEST_CASE("trace: traces of older kvsim (format 1 and 2, no checksums) still read", "[trace]") {
  // tests/data/trace_v1_fp16.h5 and trace_v2_bf16.h5 were written by kvsim 8dbdc17 (before
  // format 3) from this file's Fixture: `fx.write_all(path)` and `fx.write_all(path,
  // WriterOptions{.storage = KvStorage::kBf16})`, variable-length strings and all.
  for (const auto& [name, storage, version] :
       {std::tuple{"trace_v1_fp16.h5", KvStorage::kFp16, 1}, std::tuple{"trace_v2_bf16.h5", KvStorage::kBf16, 2}}) {
    INFO(name);
    Fixture fx;
    TraceReader r(legacy_trace(name));
    CHECK(r.format_version() == version);
    CHECK_FALSE(r.has_checksums());
    CHECK(r.storage() == storage);
    CHECK(r.model().source == fx.model.source);
    CHECK(r.producer().created_utc == "2024-01-02T03:04:05Z");
    REQUIRE(r.prompts().size() == 2);
    CHECK(r.prompts()[0].task == "unit");
    for (std::size_t p = 0; p < 2; ++p) {
      CHECK(r.read_outputs(p).cont_logprob == fx.prompts[p].outputs.cont_logprob);
      for (int l = 0; l < 3; ++l) {
        const LayerRecord rec = r.read_layer(p, l);
        const LayerRecord& w = fx.prompts[p].layers[static_cast<std::size_t>(l)];
        require_stored_close(rec.keys, w.keys, storage);
        require_stored_close(rec.q_window, w.q_window, storage);
        // The files were written by a release build; this build's fixture may round its fp32
        // arithmetic differently (FMA contraction at -O3, none at -O1): close, not equal.
        REQUIRE(rec.attn_colsum.size() == w.attn_colsum.size());
        for (std::size_t k = 0; k < w.attn_colsum.size(); ++k)
          CHECK(rec.attn_colsum[k] == Approx(w.attn_colsum[k]).epsilon(1e-5).margin(1e-5));
      }
    }
    const std::vector<float> norm = r.read_final_norm();
    REQUIRE(norm.size() == fx.final_norm.size());
    for (std::size_t k = 0; k < norm.size(); ++k) CHECK(norm[k] == Approx(fx.final_norm[k]).epsilon(1e-5).margin(1e-5));
  }
  // kvsim inspect says so.
  const auto [status, text] = run_command(std::string(KVSIM_BINARY) + " inspect '" +
                                          legacy_trace("trace_v1_fp16.h5").string() + "'");
  INFO(text);
  CHECK(status == 0);
  CHECK_THAT(text, Catch::Contains("(kvsim-trace v1)") && Catch::Contains("no checksums (format v1/v2)"));
  // A .partial left by an older kvsim is refused clearly, not continued in a mixed form.
  TempTrace tmp("legacy_partial");
  fs::copy_file(legacy_trace("trace_v1_fp16.h5"), tmp.partial());
  Fixture fx;
  CHECK_THAT(message_of([&] { TraceWriter w(tmp.path, fx.model, test_producer(), fx.w_o, fx.final_norm); }),
             Catch::Contains(tmp.partial().string() + ": was started by an older kvsim (format_version 1, without "
                                                      "checksums)") &&
                 Catch::Contains("delete it (or use overwrite)"));
  TraceWriter w(tmp.path, fx.model, test_producer(), fx.w_o, fx.final_norm, WriterOptions{.overwrite = true});
  CHECK_FALSE(w.resumed());
}

TEST_CASE("trace: value_wo_l1 is ‖W_O^h v_i‖₁ of the values as stored, optional, refused when negative", "[trace][criticalkv]") {
  Fixture fx;
  const ModelInfo& m = fx.model;
  const int H = m.n_heads, G = H / m.n_kv_heads, d = m.head_dim, D = m.hidden, Hd = H * d;
  for (KvStorage storage : {KvStorage::kFp16, KvStorage::kBf16, KvStorage::kFp32}) {
    TempTrace tmp("vn");
    fx.write_all(tmp.path, WriterOptions{.storage = storage});
    const TraceReader r(tmp.path);
    for (std::size_t p = 0; p < fx.prompts.size(); ++p)
      for (int l = 0; l < m.n_layers; ++l) {
        const LayerRecord rec = r.read_layer(p, l);
        const int T = r.prompts()[p].n_prompt, N = T + r.prompts()[p].n_cont;
        REQUIRE(rec.value_wo_l1.size() == static_cast<std::size_t>(H) * T);
        // In double from the values read back (the stored precision) and the writer's W_O.
        const float* w = fx.w_o.data() + static_cast<std::size_t>(l) * D * Hd;
        for (int h = 0; h < H; ++h)
          for (int i = 0; i < T; ++i) {
            double l1 = 0, scale = 0;
            for (int j = 0; j < D; ++j) {
              double x = 0;
              for (int e = 0; e < d; ++e) {
                const double term = static_cast<double>(w[static_cast<std::size_t>(j) * Hd + h * d + e]) *
                                    rec.values[(static_cast<std::size_t>(h / G) * N + i) * d + e];
                x += term, scale += std::abs(term);
              }
              l1 += std::abs(x);
            }
            INFO("storage " << storage_name(storage) << " prompt " << p << " layer " << l << " head " << h << " token " << i);
            REQUIRE(std::abs(rec.value_wo_l1[static_cast<std::size_t>(h) * T + i] - l1) <= 1e-6 * scale + 1e-30);
          }
      }
  }
  TempTrace off("off");
  fx.write_all(off.path, WriterOptions{.value_norms = false});
  CHECK(TraceReader(off.path).read_layer(0, 0).value_wo_l1.empty());
  CHECK_FALSE(TraceReader(off.path).has_dataset(0, "layers/0/value_wo_l1"));
  // A producer may supply the norms; a negative one is refused before anything is written.
  TempTrace neg("neg");
  TraceWriter w(neg.path, m, test_producer(), fx.w_o, fx.final_norm);
  const PromptData& p = fx.prompts[0];
  w.begin_prompt(p.meta, p.tokens);
  LayerView v = view_of(p.layers[0]);
  std::vector<float> norms(static_cast<std::size_t>(H) * p.meta.n_prompt, 1.0f);
  norms[3] = -0.5f;
  v.value_wo_l1 = norms;
  CHECK_THROWS_WITH(w.write_layer(0, v), Catch::Contains("/layers/0/value_wo_l1") && Catch::Contains("negative"));
}
