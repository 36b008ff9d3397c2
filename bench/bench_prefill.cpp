// CPU prefill throughput (tokens/s): stories260K (real weights, from ../shared), a
// random-weight model of the SmolLM2-135M shape, and optionally a real GGUF checkpoint
// (SmolLM2-135M-Instruct from scripts/get-model.sh, dequantized to fp32), forward only and
// with recording (the tracer's full work minus HDF5 writing). First a peak line (bench/peak.hpp)
// at the SmolLM2 gate/up shape. With "gguf-only" after the GGUF, only that model runs
// (bench/llama_cpp.sh interleaves it with llama.cpp).
// Usage: bench_prefill [threads] [tokens] [repeats] [model.gguf [gguf-only]]
#include <tbb/global_control.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bench/peak.hpp"
#include "core/rng.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/model.hpp"
#include "tracer/recorder.hpp"

using namespace kvsim;

namespace {

class NullSink : public PromptSink {
 public:
  void layer(int, const LayerView& v) override { bytes += v.keys.size() + v.values.size(); }
  void outputs(const PromptOutputs& o) override { bytes += o.tokens.size(); }
  std::size_t bytes = 0;
};

void run(const char* name, const Model& m, int n, int repeats) {
  std::vector<int> tokens(n);
  Rng rng(1);
  for (auto& t : tokens) t = static_cast<int>(rng.below(m.config.vocab));
  CpuForward fwd(m);
  const double t_fwd = bench::best_of(repeats, [&] {
    KvCache cache(m.config, n);
    fwd.forward(tokens, cache);
  });
  NullSink sink;
  RecordOptions ro;
  const double t_rec = bench::best_of(repeats, [&] { record_prompt(fwd, tokens, n - 32, ro, sink); });
  std::printf("%-28s T=%5d  forward %8.1f tok/s   record (fwd+logprobs+topk) %8.1f tok/s\n", name, n, n / t_fwd,
              n / t_rec);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int n = argc > 2 ? std::atoi(argv[2]) : 2048;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  std::printf("bench_prefill: threads=%d tokens=%d best of %d\n", threads, n, repeats);
  bench::print_peak(threads, n, 576, 1536);
  const bool gguf_only = argc > 5 && std::string(argv[5]) == "gguf-only";
  if (!gguf_only) {
    const std::filesystem::path stories = "../shared/models/stories260K/stories260K.bin";
    if (std::filesystem::exists(stories)) {
      run("stories260K", load_model(stories), std::min(n, 512), repeats);
      run("stories260K (2k positions)", load_model(stories), n, repeats);
    } else {
      std::printf("stories260K: skipped (%s absent)\n", stories.c_str());
    }
    const std::filesystem::path smol = "../shared/models/smollm2-135m-tokenizer/config.json";
    ModelConfig c;
    if (std::filesystem::exists(smol)) {
      c = load_hf_config(smol);
    } else {  // the same shape, written out
      c.n_layers = 30, c.n_heads = 9, c.n_kv_heads = 3, c.head_dim = 64, c.hidden = 576, c.ffn_hidden = 1536;
      c.vocab = 49152, c.rope_theta = 100000, c.tied_classifier = true;
    }
    run("random SmolLM2-135M shape", random_model(c, 42), n, repeats);
  }
  if (argc > 4) {
    const std::filesystem::path gguf = argv[4];
    if (std::filesystem::exists(gguf)) run("SmolLM2-135M GGUF (fp32)", load_model(gguf), n, repeats);
    else std::printf("%s: skipped (absent; scripts/get-model.sh smollm2-135m)\n", gguf.c_str());
  }
  return 0;
}
