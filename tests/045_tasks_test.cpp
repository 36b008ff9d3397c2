// kvsim tasks: RULER-style synthetic tasks (tracer/synthetic_tasks.hpp) — determinism, that
// each task's gold answer is what its input says, the length bound with a real tokenizer, and
// the gold answers' way into a trace (inputs -> PromptMeta -> TraceWriter -> TraceReader).
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "support/byte_tokenizer.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "traces/trace_reader.hpp"
#include "tracer/inputs.hpp"
#include "tracer/synthetic_tasks.hpp"

using namespace kvsim;
using test::ByteTokenizer;

namespace {

// A small essay haystack: distinct sentences, so a needle is never mistaken for filler.
std::string test_essays() {
  std::string text;
  for (int i = 0; i < 400; ++i)
    text += "Essay sentence " + std::to_string(i) + " talks about startups and taste" + (i % 3 ? ". " : "? ");
  return text;
}

TaskOptions options(int length, int n = 3, std::uint64_t seed = 7) {
  TaskOptions o;
  o.length = length, o.n = n, o.seed = seed, o.essays = test_essays();
  return o;
}

std::string all_json(const std::vector<TaskSample>& samples) {
  std::string out;
  for (const auto& s : samples) out += task_sample_json(s) + "\n";
  return out;
}

// Word counts of the part of `text` after the last occurrence of `after`.
std::map<std::string, int> word_counts(const std::string& text, const std::string& after, const std::string& until) {
  const std::size_t b = text.rfind(after);
  const std::size_t e = text.find(until, b);
  std::istringstream in(text.substr(b + after.size(), e - b - after.size()));
  std::map<std::string, int> counts;
  for (std::string w; in >> w;)
    if (!std::isdigit(static_cast<unsigned char>(w[0]))) ++counts[w];  // "12." list numbers skipped
  return counts;
}

// Every count of a gold word exceeds every count of another word.
void check_most_frequent(const std::map<std::string, int>& counts, const std::vector<std::string>& gold,
                         const std::set<std::string>& ignore = {}) {
  const std::set<std::string> g(gold.begin(), gold.end());
  int least_gold = 1 << 30, most_other = 0;
  for (const auto& [w, c] : counts) {
    if (ignore.contains(w)) continue;
    if (g.contains(w)) least_gold = std::min(least_gold, c);
    else most_other = std::max(most_other, c);
  }
  for (const std::string& w : gold) CHECK(counts.contains(w));
  CHECK(least_gold > most_other);
}

}  // namespace

TEST_CASE("tasks: the same seed gives the same bytes, another seed other samples", "[tasks]") {
  ByteTokenizer tok;
  for (const std::string name : {"niah_single_1", "niah_multikey_1", "vt", "cwe", "fwe"}) {
    CAPTURE(name);
    const TaskSpec spec = parse_task_spec(name);
    const std::string a = all_json(generate_task_samples(spec, tok, options(3000)));
    CHECK(a == all_json(generate_task_samples(spec, tok, options(3000))));
    CHECK(a != all_json(generate_task_samples(spec, tok, options(3000, 3, 8))));
  }
  // A sample does not depend on how many follow it.
  const TaskSpec spec = parse_task_spec("niah_single_2");
  CHECK(task_sample_json(generate_task_samples(spec, tok, options(3000, 1))[0]) ==
        task_sample_json(generate_task_samples(spec, tok, options(3000, 3))[0]));
}

TEST_CASE("tasks: niah gold values are in the input, under the asked keys", "[tasks]") {
  ByteTokenizer tok;
  for (const std::string name : {"niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                                 "niah_multikey_3", "niah_multivalue", "niah_multiquery",
                                 "niah_multikey_1:haystack=noise:num_k=2"}) {
    CAPTURE(name);
    const TaskSpec spec = parse_task_spec(name);
    for (const TaskSample& s : generate_task_samples(spec, tok, options(4000))) {
      CHECK(s.task == name);
      CHECK(s.length <= 4000);
      REQUIRE(s.outputs.size() == static_cast<std::size_t>(spec.num_v * spec.num_q));
      for (const std::string& value : s.outputs) {
        // The needle "... for KEY is: VALUE." is there, and KEY is named in the question.
        const std::size_t at = s.input.find(" is: " + value + ".");
        REQUIRE(at != std::string::npos);
        const std::size_t key_at = s.input.rfind(" for ", at) + 5;
        const std::string key = s.input.substr(key_at, at - key_at);
        CHECK(s.answer_prefix.find(key) != std::string::npos);
      }
      CHECK(s.answer_prefix.rfind("The special magic ", 0) == 0);
    }
  }
}

TEST_CASE("tasks: a vt chain resolves to the gold variables", "[tasks]") {
  ByteTokenizer tok;
  for (const std::string name : {"vt", "vt:chains=2:hops=3", "vt:haystack=essay", "vt:fewshot=0"}) {
    CAPTURE(name);
    for (const TaskSample& s : generate_task_samples(parse_task_spec(name), tok, options(4000))) {
      // The task's own text follows the solved example: its question is the last one.
      const std::string task_text = s.input.substr(s.input.rfind("Keep track of"));
      std::map<std::string, std::string> assigned;  // variable -> value or variable
      const std::regex stmt(R"(VAR ([A-Z]{5}) = (VAR ([A-Z]{5})|(\d+)))");
      for (std::sregex_iterator it(task_text.begin(), task_text.end(), stmt), end; it != end; ++it)
        assigned[(*it)[1]] = (*it)[3].matched ? std::string((*it)[3]) : std::string((*it)[4]);
      std::smatch q;
      REQUIRE(std::regex_search(s.answer_prefix, q, std::regex(R"(value (\d+))")));
      std::set<std::string> holders;
      for (const auto& [var, rhs] : assigned) {
        std::string v = rhs;
        for (int hop = 0; hop < 100 && assigned.contains(v); ++hop) v = assigned[v];
        if (v == q[1]) holders.insert(var);
      }
      CHECK(holders == std::set<std::string>(s.outputs.begin(), s.outputs.end()));
    }
  }
}

TEST_CASE("tasks: cwe and fwe gold words are the most frequent", "[tasks]") {
  ByteTokenizer tok;
  for (const int length : {3000, 6000}) {  // RULER's short (< 4096) and long repeat counts
    for (const TaskSample& s : generate_task_samples(parse_task_spec("cwe"), tok, options(length))) {
      CHECK(s.outputs.size() == 10);
      check_most_frequent(word_counts(s.input, "Remember the ones that occur most often.\n", "\nQuestion:"), s.outputs);
    }
  }
  for (const TaskSample& s : generate_task_samples(parse_task_spec("fwe"), tok, options(3000))) {
    CHECK(s.outputs.size() == 3);
    check_most_frequent(word_counts(s.input, "occur most often. ", "\nQuestion:"), s.outputs, {"..."});
  }
}

TEST_CASE("tasks: prompts fill the length of a real tokenizer without passing it", "[tasks]") {
  const auto path = test::shared_path("models/smollm2-135m-tokenizer/tokenizer.json");
  KVSIM_REQUIRE_SHARED(path);
  const auto tok = load_tokenizer(path);
  TaskOptions o = options(2048, 2);
  o.chat = ChatFormat{"You are a helpful AI assistant named SmolLM, trained by Hugging Face"};
  for (const std::string& name : task_names()) {
    CAPTURE(name);
    for (const TaskSample& s : generate_task_samples(parse_task_spec(name), *tok, o)) {
      const int n = static_cast<int>(tok->encode(prompt_text(s.input, s.answer_prefix, o.chat), true).size());
      CHECK(s.length == n);
      CHECK(n <= 2048);
      CHECK(n >= 2048 * 95 / 100);  // within one haystack unit (a line of distractor uuids is ~60 tokens)
    }
  }
}

TEST_CASE("tasks: answer prefix and gold answers survive into a trace", "[tasks][trace]") {
  test::TempDir tmp;
  ByteTokenizer tok;
  TaskOptions o = options(1500, 2);
  o.chat = ChatFormat{"sys"};
  std::vector<TaskSample> samples = generate_task_samples(parse_task_spec("niah_multivalue:haystack=noise"), tok, o);
  write_task_samples(tmp / "t.jsonl", samples);
  CHECK_FALSE(std::filesystem::exists(tmp / "t.jsonl.tmp"));
  InputOptions io;
  io.chat = o.chat;
  const std::vector<PromptSpec> prompts = load_prompts(tmp / "t.jsonl", tok, io);
  REQUIRE(prompts.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    const PromptSpec& p = prompts[i];
    const std::string prompt = tok.decode(std::span(p.tokens).first(p.n_prompt));
    CHECK(prompt == io.chat->wrap(samples[i].input) + samples[i].answer_prefix);  // prefix after the chat wrap
    CHECK(p.n_prompt == samples[i].length);
    CHECK(p.answers == samples[i].outputs);
    CHECK(p.task == "niah_multivalue:haystack=noise");  // the line's task field
    std::string joined;
    for (const auto& a : samples[i].outputs) joined += (joined.empty() ? " " : ", ") + a;
    CHECK(tok.decode(std::span(p.tokens).subspan(p.n_prompt)) == joined);  // the continuation as before
  }
  // Without chat the prefix follows the input after one space; "scorer" is carried along.
  std::ofstream(tmp / "r.jsonl") << R"({"input": "Q?", "outputs": ["a", "b"], "answer_prefix": "A:", "scorer": "all"})"
                                 << "\n";
  const PromptSpec r = load_prompts(tmp / "r.jsonl", tok, InputOptions{})[0];
  CHECK(tok.decode(std::span(r.tokens).first(r.n_prompt)) == "Q? A:");
  CHECK(r.scorer == "all");

  // PromptMeta round trip; a trace without the attributes (older kvsim) reads them empty.
  const Model m = random_model(test::small_config(), 3);
  test::TraceSpec with;
  with.n_prompts = 1;
  with.answers = {"7042816", "ünïcode, \"quoted\""};
  with.scorer = "string_match_all";
  test::write_model_trace(tmp / "with.h5", m, with);
  test::TraceSpec without;
  without.n_prompts = 1;
  test::write_model_trace(tmp / "without.h5", m, without);
  const TraceReader a(tmp / "with.h5");
  CHECK(a.prompts()[0].answers == with.answers);
  CHECK(a.prompts()[0].scorer == "string_match_all");
  const TraceReader b(tmp / "without.h5");
  CHECK(b.prompts()[0].answers.empty());
  CHECK(b.prompts()[0].scorer.empty());
}

TEST_CASE("tasks: bad input is one clear InputError", "[tasks][errors]") {
  ByteTokenizer tok;
  CHECK_THROWS_AS(parse_task_spec("niah_single_9"), InputError);
  CHECK_THROWS_WITH(parse_task_spec("niah_single_9"),
                    Catch::Contains("unknown task 'niah_single_9'") && Catch::Contains("niah_single_1"));
  CHECK_THROWS_WITH(parse_task_spec("vt:num_k=2"), Catch::Contains("unknown parameter 'num_k'"));
  CHECK_THROWS_WITH(parse_task_spec("niah_single_1:num_v=0"), Catch::Contains("num_v=0"));
  CHECK_THROWS_WITH(parse_task_spec("fwe:alpha=1"), Catch::Contains("alpha must be > 1"));
  const TaskSpec spec = parse_task_spec("niah_single_1");
  CHECK_THROWS_AS(generate_task_samples(spec, tok, options(100)), InputError);
  CHECK_THROWS_WITH(generate_task_samples(spec, tok, options(100)),
                    Catch::Contains("length 100 is too small") && Catch::Contains("niah_single_1"));
  CHECK_THROWS_AS(generate_task_samples(spec, tok, options(3000, 0)), InputError);
  CHECK_THROWS_WITH(generate_task_samples(spec, tok, options(3000, 0)), Catch::Contains("must be positive, got 0"));
  TaskOptions no_essays = options(3000);
  no_essays.essays.clear();
  CHECK_THROWS_WITH(generate_task_samples(parse_task_spec("niah_single_2"), tok, no_essays),
                    Catch::Contains("needs an essay haystack"));

  // The CLI checks tasks and counts before it loads anything, and writes nothing.
  test::TempDir tmp;
  const std::string out = (tmp / "t.jsonl").string();
  for (const std::string bad : {"--tasks nope --n 2", "--tasks niah_single_1 --n 0"}) {
    CAPTURE(bad);
    const auto r = test::run_cli("tasks --model /nonexistent.gguf " + bad + " --out " + out);
    CHECK(r.status == 1);
    CHECK(test::count_occurrences(r.output, "error") == 1);
    CHECK_FALSE(std::filesystem::exists(out));
  }
}

TEST_CASE("tasks: the CLI writes the same file twice with a real tokenizer", "[tasks]") {
  const auto path = test::shared_path("models/smollm2-135m-tokenizer/tokenizer.json");
  KVSIM_REQUIRE_SHARED(path);
  test::TempDir tmp;
  const std::string args = "tasks --model none --tokenizer " + path.string() +
                           " --tasks niah_single_1,vt,cwe:num_cw=5,fwe --length 1024 --n 2 --seed 3 --out ";
  const auto a = test::run_cli(args + (tmp / "a.jsonl").string());
  REQUIRE(a.status == 0);
  REQUIRE(test::run_cli(args + (tmp / "b.jsonl").string()).status == 0);
  const std::string text = test::slurp(tmp / "a.jsonl");
  CHECK(text == test::slurp(tmp / "b.jsonl"));
  CHECK(test::count_occurrences(text, "\n") == 8);
  std::istringstream lines(text);
  std::string first;
  std::getline(lines, first);
  const auto j = nlohmann::json::parse(first);
  for (const char* key : {"input", "outputs", "task", "answer_prefix", "length", "seed", "index"}) CHECK(j.contains(key));
  CHECK(j["task"] == "niah_single_1");
  CHECK(j["seed"] == 3);
}
