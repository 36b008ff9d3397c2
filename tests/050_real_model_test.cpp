// Facts about the real stories260K model (../shared/models/README.md): the llama2.c greedy
// text from BOS, and the published validation loss on TinyStories.
#include <catch2/catch.hpp>

#include <fstream>
#include <numeric>
#include <sstream>

#include "support/shared.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/inputs.hpp"
#include "tracer/model.hpp"
#include "tracer/recorder.hpp"
#include "tracer/tokenizer.hpp"

using namespace kvsim;

namespace {

std::string rstrip(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

class CollectSink : public PromptSink {
 public:
  void layer(int, const LayerView&) override {}
  void outputs(const PromptOutputs& o) override { out = o; }
  PromptOutputs out;
};

}  // namespace

TEST_CASE("stories260K: greedy decoding from BOS reproduces llama2.c's text", "[real][shared]") {
  const auto golden_path = test::shared_path("models/stories260K/greedy_from_bos.txt");
  const auto tok_path = test::shared_path("models/stories260K/tok512.bin");
  KVSIM_REQUIRE_SHARED(golden_path);
  const std::string golden = rstrip(test::read_file(golden_path));
  const auto tok = load_tokenizer(tok_path);
  for (const char* ckpt : {"models/stories260K/stories260K.bin", "models/stories260K-hf"}) {
    const Model m = load_model(test::shared_path(ckpt));
    CpuForward fwd(m);
    const std::vector<int> bos = {1};
    // llama2.c's default -n 256: 256 forward passes from BOS, each emitting one token,
    // stopping early if BOS comes out.
    std::vector<int> ids = greedy_generate(fwd, bos, 256, 1);
    ids.insert(ids.begin(), 1);
    INFO("checkpoint " << ckpt);
    CHECK(rstrip(tok->decode(ids)) == golden);
  }
}

TEST_CASE("stories260K: mean NLL over the first 512 TinyStories tokens is the published ~1.30", "[real][shared]") {
  const auto text = test::shared_path("data/tinystories_valid_subset/tinystories_val.txt");
  KVSIM_REQUIRE_SHARED(text);
  const Model m = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  const auto tok = load_tokenizer(test::shared_path("models/stories260K/tok512.bin"));
  InputOptions o;
  o.prompt_len = 512;
  o.cont_len = 0;
  o.limit = 1;
  const auto prompts = load_prompts(text, *tok, o);
  REQUIRE(prompts.size() == 1);
  REQUIRE(prompts[0].tokens.size() == 512);
  CollectSink sink;
  RecordOptions ro;
  record_prompt(CpuForward(m), prompts[0].tokens, 512, ro, sink);
  REQUIRE(sink.out.prompt_logprob.size() == 512);
  CHECK(sink.out.prompt_logprob[0] == 0.0f);  // no prediction for BOS
  const double mean = std::accumulate(sink.out.prompt_logprob.begin() + 1, sink.out.prompt_logprob.end(), 0.0) / 511;
  INFO("mean prompt_logprob = " << mean);
  CHECK(mean == Approx(-1.3).margin(0.1));
}
