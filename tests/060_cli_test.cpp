// The kvsim executable end to end: trace → read back, resume, h5py, and the error paths
// (one clear message, non-zero exit, no output file).
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <fstream>

#include <hdf5.h>

#include "core/rng.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "traces/trace_reader.hpp"
#include "traces/trace_writer.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/recorder.hpp"

using namespace kvsim;

TEST_CASE("trace: keys/values read back equal the forward pass's cache within fp16 rounding", "[cli][trace]") {
  ModelConfig c;
  c.n_layers = 3, c.n_heads = 6, c.n_kv_heads = 2, c.head_dim = 16, c.hidden = 48, c.ffn_hidden = 64, c.vocab = 97;
  const Model m = random_model(c, 5);
  Rng rng(3);
  std::vector<int> tokens(200);
  for (auto& t : tokens) t = static_cast<int>(rng.below(c.vocab));
  const int T = 170, M = 30;
  test::TempDir tmp;
  PromptSpec prompt;
  prompt.tokens = tokens, prompt.n_prompt = T, prompt.truncated_from = T;
  test::TraceSpec spec;
  spec.W = 16, spec.topk = 8;
  test::write_prompt_trace(tmp / "t.h5", m, {prompt}, spec);
  CpuForward fwd(m);
  KvCache cache(c, 200);
  fwd.forward(tokens, cache);
  TraceReader r(tmp / "t.h5");
  REQUIRE(r.prompts().size() == 1);
  for (int l = 0; l < 3; ++l) {
    const LayerRecord rec = r.read_layer(0, l);
    REQUIRE(rec.keys.size() == 2u * 200 * 16);
    for (std::size_t i = 0; i < rec.keys.size(); ++i) {
      // binary16 round to nearest: |error| <= 2^-11 |x| (plus the subnormal step 2^-24).
      REQUIRE(std::abs(rec.keys[i] - cache.keys(l)[i]) <= std::abs(cache.keys(l)[i]) * 0x1p-11f + 0x1p-24f);
      REQUIRE(std::abs(rec.values[i] - cache.values(l)[i]) <= std::abs(cache.values(l)[i]) * 0x1p-11f + 0x1p-24f);
    }
    CHECK(rec.q_window.size() == 6u * 16 * 16);
    CHECK(rec.attn_colsum.size() == 6u * T);
  }
  const PromptOutputs out = r.read_outputs(0);
  CHECK(out.cont_topk_ids.size() == static_cast<std::size_t>(M) * 8);
  // The continuation token's log-prob is bounded by the top-1 logit minus logsumexp.
  for (int j = 0; j < M; ++j) CHECK(out.cont_logprob[j] <= out.cont_topk_logits[j * 8] - out.cont_logsumexp[j] + 1e-5f);
}

TEST_CASE("kvsim trace on stories260K: trace, inspect, h5py, resume", "[cli][shared]") {
  const auto model = test::shared_path("models/stories260K/stories260K.bin");
  const auto text = test::shared_path("data/tinystories_valid_subset/tinystories_val.txt");
  KVSIM_REQUIRE_SHARED(model);
  test::TempDir tmp;
  const std::string out = (tmp / "s.h5").string();
  const std::string base = "trace --model " + model.string() + " --input " + text.string() +
                           " --prompt-len 128 --cont-len 16 --window 16 --threads 2 --out " + out;
  test::CliResult r = test::run_cli(base + " --limit 2");
  INFO(r.output);
  REQUIRE(r.status == 0);
  REQUIRE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".partial"));
  r = test::run_cli("inspect " + out);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("5 layers, 8 heads, 4 KV heads"));
  CHECK_THAT(r.output, Catch::Contains("keys [4, 144, 8] f16"));
  // Every dataset, the optional ones included.
  CHECK_THAT(r.output, Catch::Contains("/model/classifier [512, 64] f32"));
  CHECK_THAT(r.output, Catch::Contains("cont_residual [16, 64] f32"));
  // -q, as for run and validate: no progress lines, nothing printed.
  const std::string quiet_out = (tmp / "q.h5").string();
  const test::CliResult quiet = test::run_cli("trace -q --model " + model.string() + " --input " + text.string() +
                                              " --prompt-len 128 --cont-len 16 --window 16 --threads 2 --limit 1"
                                              " --out " + quiet_out);
  CHECK(quiet.status == 0);
  CHECK(quiet.output.empty());
  CHECK(std::filesystem::exists(quiet_out));
  CHECK_THAT(r.output, Catch::Contains("(kvsim-trace v3)") && Catch::Contains("checksums: metadata and data"));
  // --storage fp32 and bf16: format v3 too, inspect names the storage.
  for (const char* storage : {"fp32", "bf16"}) {
    const std::string other = (tmp / (std::string(storage) + ".h5")).string();
    test::CliResult s = test::run_cli("trace --model " + model.string() + " --input " + text.string() +
                                      " --prompt-len 128 --cont-len 16 --window 16 --threads 2 --limit 1 --storage " +
                                      storage + " --out " + other);
    INFO(s.output);
    REQUIRE(s.status == 0);
    s = test::run_cli("inspect " + other);
    CHECK_THAT(s.output, Catch::Contains("(kvsim-trace v3)") &&
                             Catch::Contains(std::string("keys [4, 144, 8] ") + (storage[0] == 'f' ? "f32" : "bf16")));
  }
  // An interrupted run leaves OUT.partial; the next run resumes without redoing its prompts.
  std::filesystem::rename(out, out + ".partial");
  r = test::run_cli(base + " --limit 4");
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("2 prompts traced (2 resumed"));
  TraceReader reader(out);
  CHECK(reader.prompts().size() == 4);
  // The documented h5py one-liner (docs/trace-format.md) opens a trace kvsim wrote.
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0) {
    WARN("SKIPPED: python3-h5py is not installed");
    return;
  }
  const std::string py = "/usr/bin/python3 -c \"import h5py; f = h5py.File('" + out +
                         "', 'r'); k = f['prompts/000003/layers/4/keys']; print(f.attrs['format'].decode(), k.dtype, k.shape)\"";
  FILE* p = ::popen(py.c_str(), "r");
  std::array<char, 256> buf{};
  std::string line = std::fgets(buf.data(), buf.size(), p) ? buf.data() : "";
  ::pclose(p);
  CHECK(line == "kvsim-trace float16 (4, 144, 8)\n");
}

TEST_CASE("kvsim trace: bad inputs give one clear error, a non-zero exit and no output", "[cli][errors]") {
  test::TempDir tmp;
  const std::string out = (tmp / "o.h5").string();
  std::ofstream(tmp / "in.txt") << "Once upon a time there was a cat.";
  const std::string in = (tmp / "in.txt").string();
  auto expect_error = [&](const std::string& args, const std::string& needle) {
    const test::CliResult r = test::run_cli(args);
    INFO(args << "\n" << r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Contains(needle));
    CHECK(test::count_occurrences(r.output, "error") == 1);
    CHECK_FALSE(std::filesystem::exists(out));
    CHECK_FALSE(std::filesystem::exists(out + ".partial"));
  };
  expect_error("trace --model " + (tmp / "none.bin").string() + " --input " + in + " --out " + out,
               "none.bin: no such file");
  // A checkpoint cut short.
  const auto model = test::shared_path("models/stories260K/stories260K.bin");
  if (std::filesystem::exists(model)) {
    std::ifstream src(model, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(src)), {});
    std::ofstream(tmp / "cut.bin", std::ios::binary).write(bytes.data(), 100000);
    expect_error("trace --model " + (tmp / "cut.bin").string() + " --input " + in + " --out " + out, "truncated");
    // A HF checkpoint without tokenizer.json (stories260K-hf ships none).
    expect_error("trace --model " + test::shared_path("models/stories260K-hf").string() + " --input " + in +
                     " --out " + out,
                 "no tokenizer found");
    std::ofstream(tmp / "empty.txt") << "";
    expect_error("trace --model " + model.string() + " --input " + (tmp / "empty.txt").string() + " --out " + out,
                 "empty prompt");
  }
  // Refused before the model is even opened.
  for (const char* bad : {"fp8", "FP32", "float32", ""})
    expect_error("trace --model " + (tmp / "none.bin").string() + " --input " + in + " --out " + out +
                     " --storage '" + bad + "'",
                 std::string("--storage must be fp16, fp32 or bf16, got '") + bad + "'");
  const test::CliResult unknown = test::run_cli("trace --model x --input y --out z --bogus 3");
  CHECK(unknown.status == 2);
  CHECK_THAT(unknown.output, Catch::Contains("bogus"));
}

TEST_CASE("kvsim inspect: a trace of another format version is refused", "[cli][errors]") {
  test::TempDir tmp;
  ModelInfo info;
  info.arch = "llama", info.n_layers = 1, info.n_heads = 1, info.n_kv_heads = 1, info.head_dim = 2;
  info.hidden = 2, info.vocab = 4, info.rope_style = "rotate_half";
  {
    TraceWriter w(tmp / "v.h5", info, TraceProducer{"t", "t", "cpu", ""}, std::vector<float>(4, 0.5f),
                  std::vector<float>(2, 1.0f));
    w.finish();
  }
  test::CliResult r = test::run_cli("inspect " + (tmp / "v.h5").string());
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("prompts  0"));
  {  // A future format version: the reader must refuse it, not misread it.
    hid_t f = H5Fopen((tmp / "v.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int version = 7;
    REQUIRE(H5Awrite(a, H5T_NATIVE_INT, &version) >= 0);
    H5Aclose(a);
    H5Fclose(f);
  }
  r = test::run_cli("inspect " + (tmp / "v.h5").string());
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("v.h5: format_version 7 is not supported (this kvsim reads 1 to 3)"));
  std::ofstream(tmp / "junk.h5") << "not an hdf5 file";
  r = test::run_cli("inspect " + (tmp / "junk.h5").string());
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("junk.h5"));
}
