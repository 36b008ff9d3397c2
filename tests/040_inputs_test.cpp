// Prompt construction from text and JSONL inputs, with a byte-level stand-in tokenizer so the
// expected tokens can be written down by hand.
#include <catch2/catch.hpp>

#include <fstream>

#include "core/error.hpp"
#include "support/byte_tokenizer.hpp"
#include "support/shared.hpp"
#include "tracer/inputs.hpp"

using namespace kvsim;

using test::ByteTokenizer;

TEST_CASE("inputs: text files become consecutive non-overlapping chunks", "[inputs]") {
  test::TempDir tmp;
  std::ofstream(tmp / "story.txt") << "abcdefghijklmnopqrstuvwxyz";  // 26 tokens
  ByteTokenizer tok;
  InputOptions o;
  o.prompt_len = 5;  // BOS + 4 text tokens
  o.cont_len = 3;
  const auto p = load_prompts(tmp / "story.txt", tok, o);
  // Each chunk holds 7 text tokens: 26 / 7 = 3 full chunks.
  REQUIRE(p.size() == 3);
  CHECK(p[0].tokens == std::vector<int>{1, 'a' + 3, 'b' + 3, 'c' + 3, 'd' + 3, 'e' + 3, 'f' + 3, 'g' + 3});
  CHECK(p[0].n_prompt == 5);
  CHECK(tok.decode(p[1].tokens) == "hijklmn");
  CHECK(tok.decode(p[2].tokens) == "opqrstu");
  CHECK(p[2].sample_id == "chunk2");
  CHECK(p[0].task == "story");
  o.limit = 2;
  CHECK(load_prompts(tmp / "story.txt", tok, o).size() == 2);
}

TEST_CASE("inputs: a text shorter than one chunk keeps its continuation", "[inputs]") {
  test::TempDir tmp;
  std::ofstream(tmp / "short.txt") << "hello";
  ByteTokenizer tok;
  InputOptions o;
  o.prompt_len = 100;
  o.cont_len = 2;
  const auto p = load_prompts(tmp / "short.txt", tok, o);
  REQUIRE(p.size() == 1);
  CHECK(p[0].n_prompt == 4);  // BOS h e l | l o
  CHECK(p[0].tokens.size() == 6);
}

TEST_CASE("inputs: RULER and LongBench JSONL", "[inputs]") {
  test::TempDir tmp;
  std::ofstream(tmp / "ruler.jsonl") << R"({"index": 7, "input": "The key is", "outputs": ["42"], "length": 3})" << "\n";
  std::ofstream(tmp / "lb.jsonl") << R"({"context": "ctx", "input": "q?", "answers": ["yes", "y"], "_id": "a1"})" << "\n\n";
  ByteTokenizer tok;
  InputOptions o;
  const auto r = load_prompts(tmp / "ruler.jsonl", tok, o);
  REQUIRE(r.size() == 1);
  CHECK(tok.decode(std::span(r[0].tokens).first(r[0].n_prompt)) == "The key is");
  CHECK(tok.decode(std::span(r[0].tokens).subspan(r[0].n_prompt)) == " 42");  // a space joins answer to prompt
  CHECK(r[0].sample_id == "7");
  CHECK(r[0].tokens[0] == 1);
  o.longbench_template = "[{context}|{input}]";
  const auto lb = load_prompts(tmp / "lb.jsonl", tok, o);
  REQUIRE(lb.size() == 1);
  CHECK(tok.decode(std::span(lb[0].tokens).first(lb[0].n_prompt)) == "[ctx|q?]");
  CHECK(tok.decode(std::span(lb[0].tokens).subspan(lb[0].n_prompt)) == " yes");
}

TEST_CASE("inputs: long prompts are truncated in the middle, BOS kept", "[inputs]") {
  CHECK(truncate_middle({1, 2, 3, 4, 5, 6, 7}, 4) == std::vector<int>{1, 2, 6, 7});
  CHECK(truncate_middle({1, 2, 3, 4, 5, 6, 7}, 5) == std::vector<int>{1, 2, 5, 6, 7});
  CHECK(truncate_middle({1, 2, 3}, 5) == std::vector<int>{1, 2, 3});
  test::TempDir tmp;
  std::ofstream(tmp / "r.jsonl") << R"({"input": "abcdefghij", "outputs": ["Z"]})" << "\n";
  ByteTokenizer tok;
  InputOptions o;
  o.max_len = 5;  // BOS + 2 head + 2 tail
  const auto p = load_prompts(tmp / "r.jsonl", tok, o);
  REQUIRE(p.size() == 1);
  CHECK(p[0].truncated_from == 11);
  CHECK(p[0].n_prompt == 5);
  CHECK(p[0].tokens[0] == 1);
  CHECK(tok.decode(std::span(p[0].tokens).first(5)) == "abij");
  CHECK(tok.decode(std::span(p[0].tokens).subspan(5)) == " Z");
}

TEST_CASE("inputs: bad files give one clear error naming the file", "[inputs][errors]") {
  test::TempDir tmp;
  ByteTokenizer tok;
  InputOptions o;
  CHECK_THROWS_WITH(load_prompts(tmp / "missing.txt", tok, o), Catch::Contains("missing.txt"));
  std::ofstream(tmp / "empty.txt") << "";
  CHECK_THROWS_WITH(load_prompts(tmp / "empty.txt", tok, o), Catch::Contains("empty.txt") && Catch::Contains("empty prompt"));
  std::ofstream(tmp / "bad.jsonl") << "{\"input\": \"x\", \"outputs\": [\"y\"]}\n{not json\n";
  CHECK_THROWS_WITH(load_prompts(tmp / "bad.jsonl", tok, o), Catch::Contains("bad.jsonl:2") && Catch::Contains("JSON"));
  std::ofstream(tmp / "fields.jsonl") << R"({"question": "x"})" << "\n";
  CHECK_THROWS_WITH(load_prompts(tmp / "fields.jsonl", tok, o), Catch::Contains("fields.jsonl:1"));
  std::ofstream(tmp / "emptyprompt.jsonl") << R"({"input": "", "outputs": ["y"]})" << "\n";
  CHECK_THROWS_WITH(load_prompts(tmp / "emptyprompt.jsonl", tok, o), Catch::Contains("empty prompt"));
}

TEST_CASE("inputs: chat formatting wraps JSONL prompts as a ChatML user turn", "[inputs][chat]") {
  // The default system turn is read from the template; SmolLM2's writes the newline as a
  // character, other templates as the Jinja escape \n.
  const std::string smol =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
      "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
      "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
  const ChatFormat f = chat_format_from_template(smol, "smol.gguf");
  CHECK(f.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  CHECK(f.wrap("Hi") ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const std::string escaped = R"({{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{{ '<|im_start|>' + m['role'] }})";
  CHECK(chat_format_from_template(escaped, "q.gguf").system == "You are a helpful assistant.");
  const ChatFormat bare = chat_format_from_template("{{ '<|im_start|>' + m['role'] + '<|im_end|>' }}", "b.gguf");
  CHECK(bare.system.empty());
  CHECK(bare.wrap("x") == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
  CHECK_THROWS_WITH(chat_format_from_template("", "none.gguf"),
                    Catch::Contains("none.gguf") && Catch::Contains("no chat template"));
  CHECK_THROWS_WITH(chat_format_from_template("[INST] {{ m }} [/INST]", "llama.gguf"),
                    Catch::Contains("llama.gguf") && Catch::Contains("not ChatML"));

  test::TempDir tmp;
  std::ofstream(tmp / "ruler.jsonl") << R"({"index": 0, "input": "Q?", "outputs": ["A"]})" << "\n";
  std::ofstream(tmp / "story.txt") << "abcdefghijklmnopqrstuvwxyz";
  ByteTokenizer tok;
  InputOptions o;
  o.chat = ChatFormat{"S"};
  const auto p = load_prompts(tmp / "ruler.jsonl", tok, o);
  REQUIRE(p.size() == 1);
  const std::string prompt = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n";
  CHECK(p[0].n_prompt == 1 + static_cast<int>(prompt.size()));
  CHECK(tok.decode(p[0].tokens) == prompt + "A");  // after the newline, no space before the answer
  CHECK_THROWS_AS(load_prompts(tmp / "story.txt", tok, o), InputError);
  CHECK_THROWS_WITH(load_prompts(tmp / "story.txt", tok, o),
                    Catch::Contains("story.txt") && Catch::Contains("chat formatting applies to JSONL"));
}
