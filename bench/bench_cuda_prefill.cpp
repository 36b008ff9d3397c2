// CUDA prefill throughput (tokens/s) of a random-weight Llama-3-8B-shaped model at T = 4k and
// 16k, recording off (forward + last-row logits) and on (the tracer's whole per-prompt work
// minus HDF5), as a fraction of the GPU's dense bf16 peak; then trace write throughput (GB/s)
// with the real writer. Exits 0 with a line when there is no device.
// Usage: bench_cuda_prefill [precision=bf16] [repeats=2] [T...=4096 16384]
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "tracer/cuda_backend.hpp"
#include "tracer/model.hpp"
#include "tracer/recorder.hpp"
#include "tracer/trace_output.hpp"

using namespace kvsim;
using Clock = std::chrono::steady_clock;

namespace {

ModelConfig llama3_8b() {
  ModelConfig c;
  c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 8, c.head_dim = 128, c.hidden = 4096, c.ffn_hidden = 14336;
  c.vocab = 128256, c.max_seq_len = 131072, c.rope_theta = 500000, c.tied_classifier = false;
  return c;
}

// Dense bf16 tensor-core FLOP per clock per SM with fp32 accumulation: A100 (8.0) 2048,
// H100/H200 (9.0) 4096 (H100 SXM: 132 SMs x 1.83 GHz x 4096 = 989 TFLOP/s). Others: 1024, an
// assumption printed as such.
double bf16_flop_per_clock_per_sm(int major, int minor, bool* known) {
  *known = true;
  if (major == 8 && minor == 0) return 2048;
  if (major == 9 && minor == 0) return 4096;
  *known = false;
  return 1024;
}

// Model FLOPs of one prefill of T tokens: every weight matrix once per token, causal
// attention (QKᵀ and PV over T/2 keys on average); the classifier for `logit_rows` rows.
double prefill_flops(const ModelConfig& c, double T, double logit_rows) {
  const double D = c.hidden, F = c.ffn_hidden, qd = c.q_dim(), kvd = c.kv_dim();
  const double per_layer = 2 * T * (D * (qd + 2 * kvd) + qd * D + 3 * D * F) + 2 * T * T * qd;
  return c.n_layers * per_layer + 2 * logit_rows * D * c.vocab;
}

class NullSink : public PromptSink {
 public:
  void layer(int, const LayerView&) override {}
  void outputs(const PromptOutputs&) override {}
};

double best_of(int repeats, const auto& fn) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) try {
  const Precision precision = parse_precision(argc > 1 ? argv[1] : "bf16");
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 2;
  std::vector<int> lengths;
  for (int i = 3; i < argc; ++i) lengths.push_back(std::atoi(argv[i]));
  if (lengths.empty()) lengths = {4096, 16384};
  const CudaAvailability a = cuda_availability();
  if (a.devices == 0) {
    std::printf("bench_cuda_prefill: skipped: %s\n", a.reason.c_str());
    return 0;
  }
  const CudaDeviceInfo dev = cuda_device_info(0);
  bool known = false;
  const double per_sm = bf16_flop_per_clock_per_sm(dev.cc_major, dev.cc_minor, &known);
  const double peak = dev.sm_count * (dev.clock_khz * 1e3) * per_sm;
  std::printf("bench_cuda_prefill: %s (cc %d.%d), %d SMs at %.0f MHz; bf16 dense peak used: %.0f TFLOP/s "
              "(%.0f FLOP/clock/SM%s); precision %s, best of %d\n",
              dev.name.c_str(), dev.cc_major, dev.cc_minor, dev.sm_count, dev.clock_khz / 1e3, peak / 1e12, per_sm,
              known ? "" : ", assumed", precision_name(precision), repeats);

  const ModelConfig c = llama3_8b();
  std::printf("generating random Llama-3-8B-shaped weights (fp32 on the host, ~32 GB)...\n");
  const Model m = random_model(c, 1);
  int longest = 0;
  for (int T : lengths) longest = std::max(longest, T);
  constexpr int kCont = 32, kTopK = 64, kWindow = 64;
  CudaOptions o;
  o.precision = precision;
  o.max_tokens = longest;
  o.max_topk = kTopK;
  const auto gpu = make_cuda_backend(m, o);
  for (int n : lengths) {
    std::vector<int> tokens(n);
    Rng rng(7);
    for (auto& t : tokens) t = static_cast<int>(rng.below(c.vocab));
    const double t_fwd = best_of(repeats, [&] { gpu->start(n)->append(tokens); });
    NullSink null_sink;
    RecordOptions ro;
    ro.window = kWindow, ro.topk = kTopK;
    const double t_rec = best_of(repeats, [&] { record_prompt(*gpu, tokens, n - kCont, ro, null_sink); });
    const double f_fwd = prefill_flops(c, n, 1), f_rec = prefill_flops(c, n, n - 1);
    std::printf("T=%6d  forward %9.0f tok/s  %6.1f TFLOP/s  %5.1f%% of peak | record %9.0f tok/s  %6.1f TFLOP/s  "
                "%5.1f%% of peak (model FLOPs; recording adds logits of every row and the column-sum pass)\n",
                n, n / t_fwd, f_fwd / t_fwd / 1e12, 100 * f_fwd / t_fwd / peak, n / t_rec, f_rec / t_rec / 1e12,
                100 * f_rec / t_rec / peak);
  }
  // Trace writing: one prompt of the shortest length through the real writer, uncompressed
  // and at the default deflate level.
  const int n = *std::min_element(lengths.begin(), lengths.end());
  std::vector<int> tokens(n);
  Rng rng(8);
  for (auto& t : tokens) t = static_cast<int>(rng.below(c.vocab));
  std::vector<PromptSpec> prompt(1);
  prompt[0].tokens = tokens, prompt[0].n_prompt = n - kCont, prompt[0].truncated_from = n - kCont;
  // fp16 on disk before compression: K, V, queries; column sums fp32.
  const double bytes = c.n_layers * (2.0 * (2.0 * c.n_kv_heads * n * c.head_dim + c.n_heads * (kWindow + kCont) * c.head_dim) +
                                     4.0 * c.n_heads * (n - kCont));
  for (int level : {0, 4}) {
    const auto path = std::filesystem::temp_directory_path() / "bench_cuda_prefill.h5";
    std::filesystem::remove(path);
    TraceFileOptions to;
    to.record.window = kWindow, to.record.topk = kTopK;
    to.writer.compression_level = level;
    to.writer.overwrite = true;
    to.producer = TraceProducer{"bench", "none", "", ""};
    to.logit_data = false;  // no 2 GB classifier: the file holds what the prompt adds
    const TraceFileResult r = trace_prompts(*gpu, prompt, path, to);
    std::printf("trace write T=%d deflate %d: %.2f GB (fp16) in %.2f s inside the writer = %.2f GB/s; record+write "
                "%.2f s wall (%.0f tok/s), file %.2f GB\n",
                n, level, bytes / 1e9, r.writer_seconds, bytes / 1e9 / r.writer_seconds, r.record_seconds,
                n / r.record_seconds, std::filesystem::file_size(path) / 1e9);
    std::filesystem::remove(path);
  }
  return 0;
} catch (const Error& e) {
  std::fprintf(stderr, "bench_cuda_prefill: error: %s\n", e.what());
  return 1;
}
