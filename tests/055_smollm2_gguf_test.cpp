// Facts about the real SmolLM2-135M-Instruct GGUF (scripts/get-model.sh smollm2-135m; the
// tests are skipped while it is absent): its tokenizer equals the model's tokenizer.json,
// its config, reference values from scripts/verify-gguf.py, and its NLL on real text.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "support/shared.hpp"
#include "tracer/gguf.hpp"
#include "tracer/model.hpp"
#include "tracer/tokenizer.hpp"

using namespace kvsim;

namespace {

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("smollm2 gguf: tokenizer from the GGUF equals tokenizer.json", "[real][gguf][tokenizer]") {
  const auto gguf = test::smollm2_gguf();
  const auto json = test::shared_path("models/smollm2-135m-tokenizer/tokenizer.json");
  KVSIM_REQUIRE_MODEL(gguf);
  KVSIM_REQUIRE_SHARED(json);
  const auto g = load_tokenizer(gguf);
  const auto h = load_tokenizer(json);
  CHECK(g->vocab_size() == 49152);
  CHECK(g->vocab_size() == h->vocab_size());
  CHECK(g->bos_id() == -1);  // add_bos_token false, as tokenizer.json has no template
  CHECK(g->eos_id() == 2);   // <|im_end|>: the end of an assistant turn
  CHECK(g->chat_template().find("<|im_start|>") != std::string::npos);
  std::vector<std::string> texts = {
      "Hello world",
      " 12345",
      "numbers 0123456789 and 3.14159 $1,000,000",
      "  leading spaces\n\nnew para",
      "Tabs\tand   multiple    spaces   \n\n\n   \t",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
      "<|endoftext|>Once upon a time<|endoftext|><repo_name>x<file_sep>",
      "I'm he'll we've THEY'RE don't",
      "café — 日本語 ñ 🙂 Ünïcödé ΑΒΓ Привет мир عربى a\u00a0b\u2003c",
      "def f(x):\n    return x**2  # square\n",
      "",
      " ",
  };
  for (const char* f : {"data/paul_graham_essays/worked.txt", "data/tinystories_valid_subset/tinystories_val.txt"})
    if (std::filesystem::exists(test::shared_path(f))) texts.push_back(read_all(test::shared_path(f)).substr(0, 30000));
  for (const std::string& s : texts) {
    INFO(s.substr(0, 200));
    const auto ids = g->encode(s, true);
    CHECK(ids == h->encode(s, true));
    CHECK(g->decode(ids) == h->decode(ids));
    CHECK(g->decode(ids, true) == h->decode(ids, true));
  }
  CHECK(g->encode("Hello world", false) == std::vector<int>{19556, 905});  // HF tokenizers 0.23.3
}
