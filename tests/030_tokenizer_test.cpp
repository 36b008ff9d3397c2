// Tests of the tokenizers against the real files in ../shared/models (skipped when absent):
// llama2.c tokenizer.bin (stories260K, Llama 2 32k) and SmolLM2's HF tokenizer.json.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "support/shared.hpp"
#include "tracer/hf_tokenizer.hpp"
#include "tracer/llama2c_tokenizer.hpp"
#include "tracer/tokenizer.hpp"

using namespace kvsim;
namespace fs = std::filesystem;

namespace {

const fs::path kTok512 = "../shared/models/stories260K/tok512.bin";
const fs::path kTok32k = "../shared/models/llama2-tokenizer-32k/tokenizer.bin";
const fs::path kSmol = "../shared/models/smollm2-135m-tokenizer/tokenizer.json";
const fs::path kTinyStories = "../shared/data/tinystories_valid_subset/tinystories_val.txt";

#define SKIP_IF_ABSENT(p) \
  if (!fs::exists(p)) KVSIM_SKIP((p) << " absent")

// A scratch file under the build-independent temp dir, removed when the test ends.
struct TempFile {
  fs::path path;
  TempFile(const std::string& name, const std::string& content)
      : path(fs::temp_directory_path() / ("kvsim_tok_" + std::to_string(::getpid()) + "_" + name)) {
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

// run.c's encode() merge loop, verbatim in spirit: rescan all pairs, take the highest score
// (first on ties). Quadratic, so only for checking the heap version on short strings.
std::vector<int> naive_llama2c_encode(const Llama2cTokenizer& t, const std::string& text) {
  std::vector<int> ids;
  if (!text.empty()) ids.push_back(t.lookup(" "));
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = 1;
    while (i + len < text.size() && len < 4 && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) ++len;
    const int id = t.lookup(text.substr(i, len));
    if (id >= 0) ids.push_back(id);
    else
      for (std::size_t k = 0; k < len; ++k) ids.push_back(static_cast<unsigned char>(text[i + k]) + 3);
    i += len;
  }
  while (true) {
    float best = -1e10f;
    int best_id = -1;
    std::size_t best_i = 0;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
      const int id = t.lookup(t.piece(ids[i]) + t.piece(ids[i + 1]));
      if (id >= 0 && t.score(id) > best) {
        best = t.score(id);
        best_id = id;
        best_i = i;
      }
    }
    if (best_id < 0) break;
    ids[best_i] = best_id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_i) + 1);
  }
  return ids;
}

const std::vector<std::string> kSamples = {
    "Once upon a time",
    "Hello, world! How are you?",
    "Lily and Ben went to the park.\nThey played all day.\n\nThe end.",
    "  two leading spaces and trailing  ",
    "tabs\tand\r\nCRLF",
    "numbers 0123456789 and 3.14159",
    "café — 日本",
    "emoji 🙂 and ñ",
    "a",
    " ",
};

}  // namespace

// ---------------------------------------------------------------- llama2.c tokenizer.bin

TEST_CASE("llama2c: loads stories260K tok512.bin", "[tokenizer]") {
  SKIP_IF_ABSENT(kTok512);
  const Llama2cTokenizer t(kTok512);
  CHECK(t.vocab_size() == 512);
  CHECK(t.max_token_length() == 7);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.piece(3) == "<0x00>");
  CHECK(t.piece(258) == "<0xFF>");
  CHECK(t.lookup(" ") >= 0);
  auto loaded = load_tokenizer(kTok512);
  CHECK(loaded->vocab_size() == 512);
  CHECK(dynamic_cast<Llama2cTokenizer*>(loaded.get()) != nullptr);
}

TEST_CASE("llama2c: round trips through tok512.bin with byte fallback", "[tokenizer]") {
  SKIP_IF_ABSENT(kTok512);
  const auto t = load_tokenizer(kTok512);
  for (const std::string& s : kSamples) {
    INFO(s);
    const auto ids = t->encode(s, true);
    REQUIRE(!ids.empty());
    CHECK(ids.front() == 1);
    CHECK(t->decode(ids) == s);
  }
  CHECK(t->encode("", true) == std::vector<int>{1});
  CHECK(t->encode("", false).empty());
  // Non-ASCII outside the 512-token vocabulary goes through the <0xXX> byte tokens.
  const auto ids = t->encode("日", false);
  CHECK(ids == std::vector<int>{t->encode(" ", false)[0], 0xE6 + 3, 0x97 + 3, 0xA5 + 3});
}

TEST_CASE("llama2c: BOS/EOS handling in encode and decode", "[tokenizer]") {
  SKIP_IF_ABSENT(kTok512);
  const auto t = load_tokenizer(kTok512);
  const auto with = t->encode("Once upon a time", true);
  const auto without = t->encode("Once upon a time", false);
  REQUIRE(with.size() == without.size() + 1);
  CHECK(with[0] == 1);
  CHECK(std::vector<int>(with.begin() + 1, with.end()) == without);
  // Without a preceding BOS the dummy-prefix space stays, as in llama2.c's decode().
  CHECK(t->decode(without) == " Once upon a time");
  std::vector<int> framed = with;
  framed.push_back(2);
  CHECK(t->decode(framed) == "Once upon a time");
  CHECK(t->decode(framed, true) == "<s>Once upon a time</s>");
}

TEST_CASE("llama2c: 'Once upon a time' is a fully merged segmentation", "[tokenizer]") {
  SKIP_IF_ABSENT(kTok512);
  const Llama2cTokenizer t(kTok512);
  const auto ids = t.encode("Once upon a time", false);
  std::string joined;
  for (int id : ids) joined += t.piece(id);
  CHECK(joined == " Once upon a time");
  // The merge loop stops only when no adjacent pair concatenates to a vocabulary piece.
  for (std::size_t i = 0; i + 1 < ids.size(); ++i)
    CHECK(t.lookup(t.piece(ids[i]) + t.piece(ids[i + 1])) < 0);
  // The vocabulary holds " time" and " upon" (read from the file), which must be used
  // rather than smaller pieces.
  if (t.lookup(" time") >= 0) CHECK(ids.back() == t.lookup(" time"));
}

TEST_CASE("llama2c: heap merging equals run.c's quadratic merge loop", "[tokenizer]") {
  for (const fs::path& p : {kTok512, kTok32k}) {
    SKIP_IF_ABSENT(p);
    const Llama2cTokenizer t(p);
    std::vector<std::string> texts = kSamples;
    if (fs::exists(kTinyStories)) {
      const std::string story = kvsim::test::read_file(kTinyStories).substr(0, 3000);
      for (std::size_t i = 0; i < story.size(); i += 500) texts.push_back(story.substr(i, 500));
    }
    for (const std::string& s : texts) {
      INFO(p << ": " << s);
      CHECK(t.encode(s, false) == naive_llama2c_encode(t, s));
    }
  }
}

TEST_CASE("llama2c: 32k Llama 2 tokenizer loads and round trips", "[tokenizer]") {
  SKIP_IF_ABSENT(kTok32k);
  const auto t = load_tokenizer(kTok32k);
  CHECK(t->vocab_size() == 32000);
  for (const std::string& s : kSamples) {
    INFO(s);
    CHECK(t->decode(t->encode(s, true)) == s);
  }
}

TEST_CASE("llama2c: truncated or bad files throw ModelError naming the file", "[tokenizer]") {
  SKIP_IF_ABSENT(kTok512);
  const std::string bytes = kvsim::test::read_file(kTok512);
  for (std::size_t cut : {std::size_t{2}, std::size_t{9}, bytes.size() - 3}) {
    const TempFile f("trunc" + std::to_string(cut) + ".bin", bytes.substr(0, cut));
    INFO(cut);
    CHECK_THROWS_AS(load_tokenizer(f.path), ModelError);
    CHECK_THROWS_WITH(load_tokenizer(f.path), Catch::Contains(f.path.string()));
  }
  const TempFile few("few.bin", bytes.substr(0, 4 + 8 + 5));  // one token only
  CHECK_THROWS_WITH(load_tokenizer(few.path), Catch::Contains(few.path.string()) && Catch::Contains("259"));
  CHECK_THROWS_AS(load_tokenizer("no/such/tokenizer.bin"), ModelError);
  CHECK_THROWS_WITH(load_tokenizer("no/such/tokenizer.bin"), Catch::Contains("no/such/tokenizer.bin"));
}

// ---------------------------------------------------------------- HF tokenizer.json

TEST_CASE("hf: SmolLM2 tokenizer.json loads", "[tokenizer]") {
  SKIP_IF_ABSENT(kSmol);
  const auto t = load_tokenizer(kSmol);
  REQUIRE(dynamic_cast<HfTokenizer*>(t.get()) != nullptr);
  CHECK(t->vocab_size() == 49152);
  CHECK(t->bos_id() == -1);  // no post-processor template
  CHECK(t->eos_id() == 0);   // <|endoftext|>
}

TEST_CASE("hf: SmolLM2 encodings equal HF tokenizers", "[tokenizer]") {
  SKIP_IF_ABSENT(kSmol);
  const auto t = load_tokenizer(kSmol);
  // Expected ids from HF tokenizers 0.23.3: Tokenizer.from_file(tokenizer.json).encode(s).ids
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"Hello world", {19556, 905}},
      {" 12345", {216, 33, 34, 35, 36, 37}},
      {"  leading spaces\n\nnew para", {216, 2899, 5600, 198, 198, 2241, 20819}},
      {"<|im_start|>user\nHi<|im_end|>\n", {1, 4093, 198, 26843, 2, 198}},
      {"don't", {12420, 982}},
      {"café — 日本語 ñ 🙂",
       {83, 1939, 2756, 1841, 17097, 241, 115, 40993, 179, 120, 248, 5549, 126, 47526}},
      {"def f(x):\n    return x**2  # square\n",
       {1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222, 198}},
      {"Tabs\tand   multiple    spaces   ", {68, 7366, 197, 397, 256, 2701, 333, 5600, 333}},
      {"I'm he'll we've THEY'RE 3.14159 $1,000",
       {57, 5248, 384, 3060, 392, 3543, 6462, 73, 23, 3256, 216, 35, 30, 33, 36, 33, 37, 41, 1885, 33,
        28, 32, 32, 32}},
      {"<|endoftext|>Once upon a time<|endoftext|>", {0, 6403, 1980, 253, 655, 0}},
  };
  for (const auto& [text, ids] : cases) {
    INFO(text);
    CHECK(t->encode(text, false) == ids);
    CHECK(t->encode(text, true) == ids);  // post_processor is null: nothing added
  }
}

TEST_CASE("hf: SmolLM2 round trips", "[tokenizer]") {
  SKIP_IF_ABSENT(kSmol);
  const auto t = load_tokenizer(kSmol);
  std::vector<std::string> texts = kSamples;
  for (const char* s : {"", "\n\n\n", "     ", " \t \n ", "x  ", "1234567890 000 42", "int main() { return 0; }\n",
                        "Ünïcödé ΑΒΓ Привет мир عربى", "a\u00a0b\u2003c", "🙂🙂🙂"})
    texts.emplace_back(s);
  if (fs::exists(kTinyStories)) texts.push_back(kvsim::test::read_file(kTinyStories).substr(0, 20000));
  for (const std::string& s : texts) {
    INFO(s.substr(0, 200));
    CHECK(t->decode(t->encode(s, false)) == s);
  }
}

TEST_CASE("hf: special tokens in text map to single ids", "[tokenizer]") {
  SKIP_IF_ABSENT(kSmol);
  const auto t = load_tokenizer(kSmol);
  const auto* hf = dynamic_cast<const HfTokenizer*>(t.get());
  REQUIRE(hf);
  CHECK(hf->token_id("<|endoftext|>") == 0);
  CHECK(hf->token_id("<|im_start|>") == 1);
  CHECK(hf->token_id("<|im_end|>") == 2);
  CHECK(t->encode("<|im_start|>", false) == std::vector<int>{1});
  CHECK(t->encode("<|im_end|><|im_start|>", false) == std::vector<int>{2, 1});
  const auto ids = t->encode("<|im_start|>assistant\nOK<|im_end|>", false);
  CHECK(t->decode(ids) == "assistant\nOK");
  CHECK(t->decode(ids, true) == "<|im_start|>assistant\nOK<|im_end|>");
}

TEST_CASE("hf: bad tokenizer.json files throw ModelError naming the file", "[tokenizer]") {
  const std::string minimal_model =
      R"("model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]})";
  const std::string byte_level = R"("pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false})";
  {
    const TempFile ok("ok.json", "{" + minimal_model + "," + byte_level + "}");
    const auto t = load_tokenizer(ok.path);
    CHECK(t->encode("abab", false) == std::vector<int>{2, 2});
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"truncated.json", std::string("{").append(minimal_model, 0, 30)},
      {"notjson.json", "{ this is not json }"},
      {"wordpiece.json", R"({"model":{"type":"WordPiece","vocab":{}},)" + byte_level + "}"},
      {"unigram.json", R"({"model":{"type":"Unigram","vocab":[]},)" + byte_level + "}"},
      {"metaspace.json", "{" + minimal_model + R"(,"pre_tokenizer":{"type":"Metaspace"}})"},
      {"nfkc.json", "{" + minimal_model + "," + byte_level + R"(,"normalizer":{"type":"NFKC"}})"},
      {"badmerge.json", R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a zz"]},)" + byte_level + "}"},
  };
  for (const auto& [name, content] : bad) {
    const TempFile f(name, content);
    INFO(name);
    CHECK_THROWS_AS(load_tokenizer(f.path), ModelError);
    CHECK_THROWS_WITH(load_tokenizer(f.path), Catch::Contains(f.path.string()));
  }
  const TempFile wp("wp2.json", R"({"model":{"type":"WordPiece","vocab":{}},)" + byte_level + "}");
  CHECK_THROWS_WITH(load_tokenizer(wp.path), Catch::Contains("model.type") && Catch::Contains("WordPiece"));
  const TempFile ms("ms2.json", "{" + minimal_model + R"(,"pre_tokenizer":{"type":"Metaspace"}})");
  CHECK_THROWS_WITH(load_tokenizer(ms.path), Catch::Contains("pre_tokenizer") && Catch::Contains("Metaspace"));
  if (fs::exists(kSmol)) {
    const std::string json = kvsim::test::read_file(kSmol);
    const TempFile cut("smol_cut.json", json.substr(0, json.size() / 2));
    CHECK_THROWS_AS(load_tokenizer(cut.path), ModelError);
    CHECK_THROWS_WITH(load_tokenizer(cut.path), Catch::Contains(cut.path.string()));
  }
}

TEST_CASE("hf: Llama-3 style Split + TemplateProcessing", "[tokenizer]") {
  // A toy byte-level vocabulary exercising the Llama-3 layout: Split regex, ByteLevel
  // without regex, TemplateProcessing with <|begin_of_text|>, merges as [a, b] pairs.
  std::string vocab = "{";
  for (int c = '!'; c <= '~'; ++c) {
    if (c == '"' || c == '\\') continue;
    vocab += '"';
    vocab += static_cast<char>(c);
    vocab += "\":";
    vocab += std::to_string(c);
    vocab += ',';
  }
  vocab += R"("\"":34,"\\":92,"Ġ":256,"he":300,"hel":301,"Ġw":302})";
  const std::string json = R"({"added_tokens":[{"id":500,"content":"<|begin_of_text|>","special":true},
     {"id":501,"content":"<|end_of_text|>","special":true}],
    "normalizer":null,
    "pre_tokenizer":{"type":"Sequence","pretokenizers":[
      {"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},
      {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]},
    "post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel"},
      {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
       "pair":[],"special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[500],"tokens":["<|begin_of_text|>"]}}}]},
    "decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","vocab":)" + vocab + R"(,"merges":[["h","e"],["he","l"],["Ġ","w"]]}})";
  const TempFile f("llama3.json", json);
  const auto t = load_tokenizer(f.path);
  CHECK(t->bos_id() == 500);
  CHECK(t->eos_id() == 501);
  CHECK(t->vocab_size() == 502);
  // Splits: "hello" | " w" "orld"? No: the Llama-3 regex keeps " world" together; merges give
  // "hel" "l" "o" and "Ġw" "o" "r" "l" "d"; digits split in groups of three.
  CHECK(t->encode("hello world", true) ==
        std::vector<int>{500, 301, 'l', 'o', 302, 'o', 'r', 'l', 'd'});
  CHECK(t->encode("12345", false) == std::vector<int>{'1', '2', '3', '4', '5'});
  CHECK(t->decode(t->encode("hello world 12345!", true)) == "hello world 12345!");
  CHECK(t->decode(t->encode("hello", true), true) == "<|begin_of_text|>hello");
}

TEST_CASE("hf: encoding tinystories_val.txt round-trips", "[tokenizer]") {
  SKIP_IF_ABSENT(kSmol);
  SKIP_IF_ABSENT(kTinyStories);
  const auto t = load_tokenizer(kSmol);
  const std::string text = kvsim::test::read_file(kTinyStories);
  const auto ids = t->encode(text, false);
  INFO("encoded " << text.size() << " bytes to " << ids.size() << " ids");
  CHECK(ids.size() < text.size());
  CHECK(t->decode(ids) == text);
}
