// Free-running greedy generation from a compressed prompt cache (sim/generate.hpp): token for
// token what a fresh prefill followed by one-token masked forwards (ForwardOptions::keep, the
// masked forward of exact decode) generates; the full cache gives the plain greedy loop; the
// same tokens at 1 and 2 threads and inside any batch; stop tokens, max_new 0, bad masks.
#include <catch2/catch.hpp>

#include <tbb/global_control.h>

#include <algorithm>

#include "core/rng.hpp"
#include "sim/generate.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "tracer/inputs.hpp"
#include "tracer/tokenizer.hpp"

using namespace kvsim;

namespace {

using Masks = std::vector<std::vector<std::uint8_t>>;

// small_config with its own classifier: with the classifier tied to an N(0, 1) embedding, a
// random model's argmax is mostly the token it was fed (the embedding dominates the residual),
// so greedy text repeats one token and compression rarely shows; untied, it moves.
Model random_generation_model(std::uint64_t seed) {
  ModelConfig c = test::small_config();
  c.tied_classifier = false;
  return random_model(c, seed);
}

std::vector<int> random_tokens(int n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& x : t) x = static_cast<int>(rng.below(vocab));
  return t;
}

// First maximum: ties to the lowest id.
int argmax(const float* z, int n) { return static_cast<int>(std::max_element(z, z + n) - z); }

// The prompt's fp32 K/V from a CpuForward prefill, and g0 (its argmax at position T−1).
struct Prefill {
  PromptCache cache;
  int g0 = 0;
};

Prefill prefill(const CpuForward& fwd, const std::vector<int>& prompt) {
  const ModelConfig& c = fwd.model().config;
  const int T = static_cast<int>(prompt.size());
  KvCache kv(c, T);
  const MatrixRM logits = fwd.logits(fwd.forward(prompt, kv).bottomRows(1));
  Prefill p;
  p.g0 = argmax(logits.data(), c.vocab);
  p.cache = prompt_cache(c, kv, T);
  return p;
}

// A random generation model, a random prompt of T tokens (same seed) and its prefill.
struct RandomPrompt {
  RandomPrompt(std::uint64_t seed, int T)
      : model(random_generation_model(seed)), fwd(model), prompt(random_tokens(T, model.config.vocab, seed)),
        pre(prefill(fwd, prompt)) {}
  Model model;
  CpuForward fwd;
  std::vector<int> prompt;
  Prefill pre;
};

// The reference: a fresh prefill, then one token at a time through CpuForward::forward with
// the prompt masked to `keep` (empty: nothing masked), argmax; the stop token is left out.
std::vector<int> masked_decode(const CpuForward& fwd, const std::vector<int>& prompt, const std::vector<std::uint8_t>& keep,
                               int max_new, const std::vector<int>& stop) {
  const ModelConfig& c = fwd.model().config;
  const int T = static_cast<int>(prompt.size());
  KvCache kv(c, T + max_new);
  MatrixRM logits = fwd.logits(fwd.forward(prompt, kv).bottomRows(1));
  ForwardOptions fo;
  fo.keep = keep;
  fo.keep_len = keep.empty() ? 0 : T;
  std::vector<int> out;
  while (static_cast<int>(out.size()) < max_new) {
    const int next = argmax(logits.data(), c.vocab);
    if (std::find(stop.begin(), stop.end(), next) != stop.end()) break;
    out.push_back(next);
    if (static_cast<int>(out.size()) == max_new) break;
    const int tok[1] = {next};
    logits = fwd.logits(fwd.forward(tok, kv, fo));
  }
  return out;
}

// Six kept sets of different shapes, each (layer, KV head) drawn separately: uniform
// densities 0.1, 0.3, 0.6, 0.9; a density drawn per (layer, KV head) in [0, 1] (some rows
// nearly empty, some nearly full); sinks + recent window (first 4 and last 8 positions).
Masks test_masks(const ModelConfig& c, int T, std::uint64_t seed) {
  const int rows = c.n_layers * c.n_kv_heads;
  Rng rng(seed);
  Masks masks;
  for (double p : {0.1, 0.3, 0.6, 0.9}) {
    std::vector<std::uint8_t> k(static_cast<std::size_t>(rows) * T);
    for (auto& f : k) f = rng.uniform() < p ? 1 : 0;
    masks.push_back(std::move(k));
  }
  std::vector<std::uint8_t> per_row(static_cast<std::size_t>(rows) * T);
  for (int r = 0; r < rows; ++r) {
    const double p = rng.uniform();
    for (int i = 0; i < T; ++i) per_row[static_cast<std::size_t>(r) * T + i] = rng.uniform() < p ? 1 : 0;
  }
  masks.push_back(std::move(per_row));
  std::vector<std::uint8_t> window(static_cast<std::size_t>(rows) * T, 0);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < T; ++i) window[static_cast<std::size_t>(r) * T + i] = i < 4 || i >= T - 8;
  masks.push_back(std::move(window));
  return masks;
}

// Test 1: every mask's tokens equal the masked prefill + decode reference, and compression
// changed at least one mask's tokens (the check is not vacuous).
void check_against_masked_decode(const Model& m, const std::vector<std::vector<int>>& prompts, std::uint64_t seed) {
  const CpuForward fwd(m);
  constexpr int kMaxNew = 16;
  int changed = 0;
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    const int T = static_cast<int>(prompts[p].size());
    const Prefill pre = prefill(fwd, prompts[p]);
    const GreedyGenerator gen(fwd, pre.cache, pre.g0, {});
    Masks masks = test_masks(m.config, T, seed + p);
    masks.push_back({});  // the full cache, in the same batch
    const auto got = gen.generate(masks, kMaxNew);
    REQUIRE(got.size() == masks.size());
    const std::vector<int> full = masked_decode(fwd, prompts[p], {}, kMaxNew, {});
    for (std::size_t j = 0; j < masks.size(); ++j) {
      INFO("prompt " << p << " (T " << T << ") mask " << j);
      const std::vector<int> want = masked_decode(fwd, prompts[p], masks[j], kMaxNew, {});
      CHECK(got[j] == want);
      CHECK(got[j].size() == kMaxNew);
      CHECK(got[j][0] == pre.g0);
      changed += want != full;
      if (p == 0) CHECK(gen.generate(std::span(masks).subspan(j, 1), kMaxNew).at(0) == got[j]);  // alone
    }
  }
  INFO(changed << " masked continuations differ from the full one");
  CHECK(changed > 0);
}

const char* const kStoriesModel = "models/stories260K/stories260K.bin";
const char* const kStoriesText = "data/tinystories_valid_subset/tinystories_val.txt";

// stories260K, its tokenizer, and n TinyStories prompts of T tokens (../shared; the caller
// checked kStoriesModel and kStoriesText are present).
struct Stories {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::vector<std::vector<int>> prompts;
};

Stories load_stories(int T, int n) {
  Stories s{load_model(test::shared_path(kStoriesModel)), load_tokenizer(test::shared_path("models/stories260K/tok512.bin")), {}};
  InputOptions o;
  o.prompt_len = T, o.cont_len = 0, o.limit = n;
  for (const PromptSpec& p : load_prompts(test::shared_path(kStoriesText), *s.tok, o))
    s.prompts.emplace_back(p.tokens.begin(), p.tokens.begin() + p.n_prompt);
  return s;
}

}  // namespace

TEST_CASE("generate: equals a fresh masked prefill + greedy decode (random model)", "[generate]") {
  const Model m = random_generation_model(21);
  check_against_masked_decode(m,
                              {random_tokens(40, m.config.vocab, 1), random_tokens(57, m.config.vocab, 2),
                               random_tokens(64, m.config.vocab, 3)},
                              100);
}

TEST_CASE("generate: equals a fresh masked prefill + greedy decode (stories260K)", "[generate][real][shared]") {
  KVSIM_REQUIRE_SHARED(test::shared_path(kStoriesModel));
  KVSIM_REQUIRE_SHARED(test::shared_path(kStoriesText));
  const Stories s = load_stories(96, 3);
  check_against_masked_decode(s.model, s.prompts, 200);
}

TEST_CASE("generate: the full cache is plain greedy decoding", "[generate]") {
  const RandomPrompt r(22, 48);
  const GreedyGenerator gen(r.fwd, r.pre.cache, r.pre.g0, {});
  const ModelConfig& c = r.model.config;
  const Masks masks = {{}, std::vector<std::uint8_t>(static_cast<std::size_t>(c.n_layers) * c.n_kv_heads * 48, 1)};
  const auto got = gen.generate(masks, 20);
  const std::vector<int> plain = greedy_generate(r.fwd, r.prompt, 20, -1);
  CHECK(got[0] == plain);
  CHECK(got[1] == plain);
}

TEST_CASE("generate: the full cache is plain greedy decoding (stories260K, TinyStories prompt)", "[generate][real][shared]") {
  KVSIM_REQUIRE_SHARED(test::shared_path(kStoriesModel));
  KVSIM_REQUIRE_SHARED(test::shared_path(kStoriesText));
  const Stories s = load_stories(128, 1);
  const CpuForward fwd(s.model);
  const std::vector<int>& prompt = s.prompts.at(0);
  const Tokenizer& tok = *s.tok;
  const Prefill pre = prefill(fwd, prompt);
  const GreedyGenerator gen(fwd, pre.cache, pre.g0, {tok.eos_id()});
  const Masks masks(3);  // three full jobs: also checks that rows of one batch do not interact
  const auto got = gen.generate(masks, 48);
  const std::vector<int> plain = greedy_generate(fwd, prompt, 48, tok.eos_id());
  INFO(tok.decode(prompt) << " || " << tok.decode(plain));
  CHECK(plain.size() > 8);
  for (const auto& g : got) CHECK(g == plain);
}

TEST_CASE("generate: same tokens at 1 and 2 threads, alone and inside a batch of 8", "[generate]") {
  const RandomPrompt r(23, 72);
  const GreedyGenerator gen(r.fwd, r.pre.cache, r.pre.g0, {});
  Masks masks = test_masks(r.model.config, 72, 300);
  masks.push_back({});
  masks.push_back(test_masks(r.model.config, 72, 301)[1]);
  REQUIRE(masks.size() == 8);
  std::vector<std::vector<int>> one, two;
  {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
    one = gen.generate(masks, 16);
  }
  {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
    two = gen.generate(masks, 16);
  }
  CHECK(one == two);
  // Alone vs inside the batch: every step is row-wise (generate.hpp, "Determinism").
  for (std::size_t j = 0; j < masks.size(); ++j) {
    INFO("job " << j);
    CHECK(gen.generate(std::span(masks).subspan(j, 1), 16).at(0) == one[j]);
  }
}

TEST_CASE("generate: stop tokens end a job early, max_new 0, bad inputs", "[generate]") {
  const RandomPrompt r(24, 50);
  const ModelConfig& c = r.model.config;
  const CpuForward& fwd = r.fwd;
  const Prefill& pre = r.pre;
  const Masks masks = test_masks(c, 50, 400);
  const GreedyGenerator free_run(fwd, pre.cache, pre.g0, {});
  const auto full = free_run.generate(masks, 24);

  // Stop on two tokens job 0 produces after g0: every job ends before its first stop token,
  // which is left out, and the tokens before it are unchanged (finished rows stay in the batch).
  REQUIRE(full[0].size() == 24);
  std::vector<int> stop;
  for (int t : full[0])
    if (t != pre.g0 && stop.size() < 2 && std::find(stop.begin(), stop.end(), t) == stop.end()) stop.push_back(t);
  INFO("job 0: " << Catch::Detail::stringify(full[0]));
  REQUIRE_FALSE(stop.empty());
  const GreedyGenerator gen(fwd, pre.cache, pre.g0, stop);
  const auto got = gen.generate(masks, 24);
  int stopped = 0;
  for (std::size_t j = 0; j < masks.size(); ++j) {
    INFO("job " << j);
    const auto first_stop = std::find_first_of(full[j].begin(), full[j].end(), stop.begin(), stop.end());
    CHECK(got[j] == std::vector<int>(full[j].begin(), first_stop));
    stopped += first_stop != full[j].end();
  }
  CHECK(got[0].size() < full[0].size());
  CHECK(stopped >= 1);

  // g0 itself a stop token: nothing generated. max_new 0 and 1, no jobs.
  CHECK(GreedyGenerator(fwd, pre.cache, pre.g0, {pre.g0}).generate(masks, 16) == std::vector<std::vector<int>>(masks.size()));
  CHECK(gen.generate(masks, 0) == std::vector<std::vector<int>>(masks.size()));
  CHECK(gen.generate(masks, 1) == std::vector<std::vector<int>>(masks.size(), std::vector<int>{pre.g0}));
  CHECK(gen.generate({}, 16).empty());

  // A mask of the wrong size names its job; other bad inputs are refused before any work.
  Masks bad = masks;
  bad[2].pop_back();
  REQUIRE_THROWS_AS(gen.generate(bad, 16), InputError);
  REQUIRE_THROWS_WITH(gen.generate(bad, 16), Catch::Contains("job 2") && Catch::Contains("[3, 2, 50]"));
  REQUIRE_THROWS_WITH(gen.generate(masks, -1), Catch::Contains("max_new"));
  REQUIRE_THROWS_WITH(GreedyGenerator(fwd, pre.cache, c.vocab, {}), Catch::Contains("first token"));
  REQUIRE_THROWS_WITH(GreedyGenerator(fwd, pre.cache, 0, {-1}), Catch::Contains("stop token -1"));
  PromptCache short_cache = pre.cache;
  short_cache.keys.pop_back();
  REQUIRE_THROWS_AS(GreedyGenerator(fwd, short_cache, 0, {}), InputError);
}

TEST_CASE("generate: flops and memory estimates", "[generate]") {
  const RandomPrompt r(25, 32);
  const ModelConfig& c = r.model.config;
  const GreedyGenerator gen(r.fwd, r.pre.cache, r.pre.g0, {});
  CHECK(gen.flops_per_job(1, 32) == 0.0);  // g0 comes from prefill
  CHECK(gen.flops_per_job(16, 8) < gen.flops_per_job(16, 32));
  CHECK(gen.flops_per_job(16, 32) > 15 * 2.0 * c.hidden * c.vocab);
  CHECK(gen.peak_bytes(8, 16, 8) < gen.peak_bytes(16, 16, 8));
}
