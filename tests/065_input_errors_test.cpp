// Every input is checked before it is trusted (issue 15, §3): a bad option value, a prompt
// beyond the model's context, a broken config.json / tokenizer.json / decision table, a path
// that is a directory or under a file. Each gives one clear error naming the option or file,
// the field, what was expected and what was found; exit 1; nothing written.
#include <catch2/catch.hpp>

#include <fstream>
#include <functional>
#include <set>

#include <nlohmann/json.hpp>

#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "sim/synthetic.hpp"
#include "policies/decision_table.hpp"

using namespace kvsim;

namespace {

std::set<std::string> listing(const std::filesystem::path& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) out.insert(e.path().string());
  return out;
}

// Runs `kvsim ARGS` in a directory holding only the test's inputs: exit 1, `needle` in the one
// error line, and no file added (no output, no OUT.partial).
void expect_error(const test::TempDir& tmp, const std::string& args, const std::string& needle) {
  const auto before = listing(tmp.path());
  const test::CliResult r = test::run_cli(args);
  INFO(args << "\n" << r.output);
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains(needle));
  CHECK(test::count_occurrences(r.output, "error") == 1);
  CHECK_THAT(r.output, !Catch::Contains("internal error"));
  CHECK(listing(tmp.path()) == before);
}

std::string write(const test::TempDir& tmp, const std::string& name, const std::string& text) {
  std::ofstream(tmp / name) << text;
  return (tmp / name).string();
}

}  // namespace

TEST_CASE("option values: one shared range check for every integer option, finite numbers, budget lists",
          "[errors][cli]") {
  test::TempDir tmp;
  const std::string in = write(tmp, "in.txt", "Once upon a time there was a cat.");
  const std::string none = (tmp / "none.h5").string(), out = (tmp / "out").string();
  const std::string table = (tmp / "t.json").string();
  write_table(DecisionTable::defaults(ModelShape{2, 4, 2, 16, 64}, {8, 16}, 16), table);
  const std::string diff = "diff " + table + " default --traces " + none + " -b 8,16 ";
  expect_error(tmp, diff + "--tolerance nan", "--tolerance must be a finite number, got nan");
  expect_error(tmp, diff + "--bootstrap 0", "--bootstrap must be positive, got 0");
  expect_error(tmp, diff + "--cache-mb -1", "--cache-mb must be >= 0, got -1");
  expect_error(tmp, "diff " + table + " default --traces " + none + " -b 8,,16",
               "--budget: empty entry in '8,,16' (expected a comma-separated list, e.g. 64,128)");
  expect_error(tmp, "transfer " + table + " " + table + " --bootstrap 0", "--bootstrap must be positive, got 0");
  expect_error(tmp, "run " + none + " -p full -b 8,,16 -o " + out, "--budget: empty entry in '8,,16'");
  expect_error(tmp, "run " + none + " -p full -b 8, -o " + out, "--budget: empty entry in '8,'");
  expect_error(tmp, "run " + none + " -p full -r 0.5,,0.8 -o " + out, "--ratio: empty entry in '0.5,,0.8'");
  expect_error(tmp, "validate " + none + " -m none.bin -p full -b 8 --bootstrap 0 -o " + out,
               "--bootstrap must be positive, got 0");
  expect_error(tmp, "compile " + none + " -b 8 --learner ucb --pulls -3 -o " + (tmp / "c.json").string(),
               "--pulls must be >= 0, got -3");
  expect_error(tmp, "compile " + none + " -b 8 --cache-mb -5 -o " + (tmp / "c.json").string(),
               "--cache-mb must be >= 0, got -5");
  expect_error(tmp, "generate -m none.bin -n -1", "--steps must be positive, got -1");
  const std::string trace = "trace -m none.bin -i " + in + " -o " + (tmp / "o.h5").string();
  expect_error(tmp, trace + " --limit -1", "--limit must be >= 0, got -1");
  expect_error(tmp, trace + " --max-len -7", "--max-len must be >= 0, got -7");
  expect_error(tmp, trace + " --template 'Question: {input}'",
               "--template 'Question: {input}' has no {context} placeholder");
  // A prompt file that is a directory is refused, not read as an empty prompt.
  expect_error(tmp, "generate -m none.bin --prompt-file " + tmp.path().string(),
               tmp.path().string() + ": is a directory, expected a prompt file");
}

TEST_CASE("synth: T and M bounded before anything is allocated (no signed overflow, no hang)", "[errors][cli]") {
  test::TempDir tmp;
  const std::string out = " --shape tiny -o " + (tmp / "s.h5").string();
  expect_error(tmp, "synth -T 2147483647" + out, "prompt length T must be in [1, 1048576], got 2147483647");
  expect_error(tmp, "synth -M 1000000000" + out, "continuation length M must be in [0, 65536], got 1000000000");
  expect_error(tmp, "synth -n 0" + out, "number of prompts must be in [1, 1048576], got 0");
  // One layer's buffers checked in 64 bits: llama3-8b at the largest T and M is 9 GiB, allowed;
  // the bound is the per-dimension limits above, so a sane request still passes the check.
  SyntheticSpec spec;
  spec.model = synthetic_shape("tiny");
  spec.T = 64, spec.M = 8;
  CHECK_NOTHROW(check_synthetic_spec(spec));
}

TEST_CASE("stories260K (context 512): prompts and --max-len beyond the context are refused, -n capped",
          "[errors][cli][shared]") {
  const auto model = test::shared_path("models/stories260K/stories260K.bin");
  const auto text = test::shared_path("data/tinystories_valid_subset/tinystories_val.txt");
  KVSIM_REQUIRE_SHARED(model);
  test::TempDir tmp;
  const std::string out = (tmp / "o.h5").string();
  const std::string trace = "trace -m " + model.string() + " -i " + text.string() + " --limit 1 -o " + out;
  expect_error(tmp, trace + " --prompt-len 600",
               text.string() + ": prompt chunk0 has 600 tokens, more than the context of " + model.string() +
                   " (512 tokens); shorten it (--prompt-len, --max-len) or pass --allow-beyond-context");
  expect_error(tmp, trace + " --max-len 1000",
               "--max-len 1000 is larger than the context of " + model.string() + " (512 tokens)");
  // A JSONL prompt of thousands of tokens, without --max-len.
  std::string context;
  for (int i = 0; i < 400; ++i) context += "The cat sat on the mat and looked at the dog. ";
  const std::string jsonl =
      write(tmp, "long.jsonl", nlohmann::json{{"context", context}, {"input", "Where?"}, {"answers", {"mat"}}}.dump() + "\n");
  expect_error(tmp, "trace -m " + model.string() + " -i " + jsonl + " -o " + out, "long.jsonl: prompt line1 has ");
  // The explicit option lets both through; the continuation may run past the context (a note).
  test::CliResult r = test::run_cli(trace + " --prompt-len 600 --cont-len 8 --allow-beyond-context -q");
  CHECK(r.status == 0);
  std::filesystem::remove(out);
  r = test::run_cli(trace + " --prompt-len 500 --cont-len 32");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("1 prompts' continuations run past the model's context (512 tokens)"));
  // generate: -n beyond the context is refused (llama2.c caps it; kvsim says so instead).
  expect_error(tmp, "generate -m " + model.string() + " -n 1000000000 -p hi",
               "--steps 1000000000 exceeds the context of " + model.string() + " (512 tokens)");
}

TEST_CASE("HF config.json: wrong types, absurd sizes, bad rope_theta and torch_dtype name the file and key",
          "[errors][cli]") {
  test::TempDir tmp;
  const std::string in = write(tmp, "in.txt", "Once upon a time.");
  const nlohmann::json good = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 128},
                               {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                               {"vocab_size", 100}, {"max_position_embeddings", 512}, {"rope_theta", 10000.0},
                               {"torch_dtype", "float32"}};
  std::filesystem::create_directories(tmp / "hf");
  const std::string config = (tmp / "hf" / "config.json").string();
  auto expect = [&](const char* key, const nlohmann::json& value, const std::string& needle) {
    nlohmann::json j = good;
    j[key] = value;
    std::ofstream(config) << j.dump();
    expect_error(tmp, "trace -m " + (tmp / "hf").string() + " -i " + in + " -o " + (tmp / "o.h5").string(),
                 config + ": field " + needle);
  };
  expect("num_hidden_layers", true, "num_hidden_layers must be an integer, got true");
  expect("num_hidden_layers", 2.5, "num_hidden_layers must be an integer, got 2.5");
  expect("num_hidden_layers", 0, "num_hidden_layers must be in [1, 65536], got 0");
  expect("num_attention_heads", 2000000, "num_attention_heads must be in [1, 65536], got 2000000");
  expect("hidden_size", -64, "hidden_size must be in [1, 1048576], got -64");
  expect("vocab_size", 1e12, "vocab_size must be an integer, got 1000000000000.0");
  expect("rope_theta", nullptr, "rope_theta must be a positive number, got null");
  expect("rope_theta", -1.0, "rope_theta must be a positive number, got -1.0");
  expect("rope_theta", "1e4", "rope_theta must be a positive number, got \"1e4\"");
  expect("torch_dtype", "float8_e4m3", "torch_dtype 'float8_e4m3' is not supported (float32, float16 or bfloat16)");
  expect("tie_word_embeddings", 1, "tie_word_embeddings must be a boolean, got 1");
}

TEST_CASE("tokenizer.json: an id far beyond the vocabulary is refused before the id table is allocated",
          "[errors][cli]") {
  test::TempDir tmp;
  nlohmann::json tok = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", nlohmann::json::array()}}},
                        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                        {"added_tokens", {{{"id", 1000000000}, {"content", "<x>"}, {"special", true}}}}};
  const std::string path = write(tmp, "tok.json", tok.dump());
  const std::string tasks = "tasks -m none.bin --tokenizer " + path + " --tasks niah_single_1 -o " + (tmp / "t.jsonl").string();
  expect_error(tmp, tasks, path + ": added token \"<x>\" has id 1000000000 (expected an integer in [0, 16777215])");
  tok["added_tokens"][0]["id"] = 100000;
  write(tmp, "tok.json", tok.dump());
  expect_error(tmp, tasks, path + ": token id 100000 is far beyond the 3 tokens of the vocabulary (ids must be below 65542)");
  tok["added_tokens"][0]["id"] = 2.5;
  write(tmp, "tok.json", tok.dump());
  expect_error(tmp, tasks, path + ": added token \"<x>\" has id 2.5 (expected an integer");
}

TEST_CASE("decision tables: format_version, policy, arm grids, sizes and provenance are checked on read",
          "[errors][cli]") {
  test::TempDir tmp;
  const std::string good_path = (tmp / "good.json").string();
  write_table(DecisionTable::defaults(ModelShape{2, 4, 2, 16, 64}, {8, 16}, 16), good_path);
  nlohmann::json good;
  std::ifstream(good_path) >> good;
  const std::string bad = (tmp / "bad.json").string();
  auto expect = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& needle) {
    nlohmann::json j = good;
    edit(j);
    std::ofstream(bad) << j.dump();
    expect_error(tmp, "transfer " + bad + " " + good_path, bad + ": " + needle);
  };
  expect([](auto& j) { j["format_version"] = 2.5; }, "field 'format_version' must be an integer, got 2.5");
  expect([](auto& j) { j["format_version"] = "2"; }, "field 'format_version' must be an integer, got \"2\"");
  expect([](auto& j) { j.erase("policy"); }, "field 'policy' is missing");
  expect([](auto& j) { j["policy"] = "snapkv"; }, "field 'policy' must be \"compilerkv\", got \"snapkv\"");
  expect([](auto& j) { j.erase("model"); }, "field 'model' is missing or not an object");
  expect([](auto& j) { j["model"]["n_layers"] = true; }, "model: field 'n_layers' must be an integer, got true");
  expect([](auto& j) { j["model"]["n_heads"] = 10000000; }, "model: field 'n_heads' must be in [1, 65536], got 10000000");
  expect([](auto& j) { j["gate_arms"] = {{"scale", "log"}, {"lo", 1e-4}, {"hi", 0.2}, {"count", 0}}; },
         "gate_arms: a log-scale arm grid needs count >= 1, got 0");
  expect([](auto& j) { j["gate_arms"] = {{"scale", "log"}, {"lo", 1e-4}, {"hi", 0.2}, {"count", 1e9}}; },
         "gate_arms: field 'count' must be an integer, got 1000000000.0");
  expect([](auto& j) { j["head_arms"] = {{"scale", "linear"}, {"lo", 0.8}, {"hi", 1.5}, {"step", 0}}; },
         "head_arms: arm grid step must be > 0, got 0");
  expect([](auto& j) { j["head_arms"] = {{"scale", "linear"}, {"lo", 1.5}, {"hi", 0.8}, {"step", 0.025}}; },
         "head_arms: arm grid needs finite lo <= hi, got lo 1.5, hi 0.8");
  expect([](auto& j) { j["head_arms"] = {{"scale", "linear"}, {"lo", 0.0}, {"hi", 1e9}, {"step", 1e-3}}; },
         "head_arms: arm grid of more than 1000 arms");
  expect([](auto& j) { j["head_arms"]["count"] = 7; }, "head_arms: count 7 does not match lo 0.8, hi 1.5, step 0.025 (29 arms)");
  expect([](auto& j) { j["gate_mode"] = "coverage"; j["gate"][0][0][0][0] = 1.5; },
         "coverage gate thresholds (the share of utility mass dropped) must lie in [0, 1], got 1.5");
  expect([](auto& j) { j["provenance"] = "me"; }, "field 'provenance' must be an object, got string");
  expect([](auto& j) { j["bins"]["entropy_edges"][0] = true; }, "bins: entropy_edges entries must be numbers or \"inf\", got true");
  // Without provenance the table still loads (hand-made tables have none); the CLI notes it.
  nlohmann::json j = good;
  j.erase("provenance");
  std::ofstream(bad) << j.dump();
  const test::CliResult r = test::run_cli("transfer " + bad + " " + good_path);
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("note: " + bad + " has no provenance"));
}

TEST_CASE("filesystem failures are one user error with exit 1, not an internal error", "[errors][cli]") {
  test::TempDir tmp;
  const std::string table = (tmp / "t.json").string();
  write_table(DecisionTable::defaults(ModelShape{2, 4, 2, 16, 64}, {8, 16}, 16), table);
  const std::string file = write(tmp, "file.txt", "x");
  const std::string dir = tmp.path().string();
  // A table path that is a directory.
  expect_error(tmp, "transfer " + dir + " " + table, dir + ": is a directory, expected a decision table (JSON)");
  // --csv naming a directory: refused before any work.
  expect_error(tmp, "diff " + table + " default --traces none.h5 -b 8 --csv " + dir,
               "--csv " + dir + ": is a directory, expected a file name");
  expect_error(tmp, "diff " + table + " default --traces none.h5 -b 8 --csv " + file + "/x.csv",
               "--csv " + file + "/x.csv: directory " + file + " does not exist");
  // An output directory that cannot be created (under a regular file: root ignores a read-only
  // mode, a file in the path refuses everyone).
  SyntheticSpec spec;
  spec.model = synthetic_shape("tiny");
  spec.T = 32, spec.M = 4, spec.W = 8, spec.topk = 4;
  write_synthetic_trace(tmp / "s.h5", spec);
  expect_error(tmp, "run " + (tmp / "s.h5").string() + " -p full -b 8 -q -o " + file + "/out",
               file + "/out.partial: cannot create the output directory (Not a directory)");
  expect_error(tmp, "compile " + (tmp / "s.h5").string() + " -b 8 -o " + dir,
               "--out " + dir + ": is a directory, expected a file name");
  expect_error(tmp, "run " + (tmp / "s.h5").string() + " -p full -b 8 -q -o " + (tmp / "r").string() + " --dump-kept " + dir,
               "--dump-kept " + dir + ": is a directory, expected a file name");
  expect_error(tmp, "synth --shape tiny -T 32 -o " + dir, "--out " + dir + ": is a directory, expected a file name");
  expect_error(tmp, "trace -m none.bin -i " + file + " -o " + dir, "--out " + dir + ": is a directory, expected a file name");
}
