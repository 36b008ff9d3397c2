#pragma once
// Traces for tests without ../shared: a random-weight model's real prefill, recorded with the
// tracer's own code and written with the trace writer; the model as a checkpoint file for the
// commands that load one. And a runner for the kvsim executable.
#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "core/rng.hpp"
#include "traces/trace_writer.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/recorder.hpp"
#include "tracer/trace_output.hpp"

namespace kvsim::test {

struct CliResult {
  int status;
  std::string output;  // stdout + stderr
};

inline CliResult run_cli(const std::string& args) {
  const std::string cmd = std::string(KVSIM_BINARY) + " " + args + " 2>&1";
  CliResult r{0, {}};
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), buf.size(), p)) r.output += buf.data();
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Occurrences of needle in text (e.g. how many "error" lines a command printed).
inline int count_occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

class WriterSink : public PromptSink {
 public:
  explicit WriterSink(TraceWriter& w, bool residual = true) : w_(w), residual_(residual) {}
  void layer(int l, const LayerView& v) override { w_.write_layer(l, v); }
  void outputs(const PromptOutputs& o) override {
    if (residual_) return w_.end_prompt(o);
    PromptOutputs without = o;
    without.cont_residual.clear();
    w_.end_prompt(without);
  }

 private:
  TraceWriter& w_;
  bool residual_;
};

inline ModelInfo model_info(const Model& m) {
  ModelInfo info = trace_model_info(m);
  info.source = "random";
  return info;
}

struct TraceSpec {
  int n_prompts = 3, T = 48, M = 8, W = 16, topk = 8;
  std::uint64_t seed = 1;
  std::string task = "synthetic";
  bool logit_data = true;  // /model/classifier and cont_residual (false: a trace of an older kvsim)
  std::vector<std::string> answers;  // PromptMeta::answers of every prompt
  std::string scorer;
};

// Random token prompts through `m`, one trace file.
inline void write_model_trace(const std::filesystem::path& path, const Model& m, const TraceSpec& s) {
  TraceWriter w(path, model_info(m), TraceProducer{"test", "none", "cpu", ""}, trace_w_o(m), trace_final_norm(m));
  const MatrixRM& cls = m.output_matrix();
  if (s.logit_data) w.write_classifier(std::span<const float>(cls.data(), static_cast<std::size_t>(cls.size())));
  const CpuForward fwd(m);
  Rng rng(s.seed);
  for (int p = 0; p < s.n_prompts; ++p) {
    std::vector<int> tokens(s.T + s.M);
    for (auto& t : tokens) t = static_cast<int>(rng.below(m.config.vocab));
    PromptMeta meta;
    char id[16];
    std::snprintf(id, sizeof id, "%06d", p);
    meta.id = id, meta.n_prompt = s.T, meta.n_cont = s.M, meta.window = s.W, meta.topk = s.topk;
    meta.truncated_from = s.T, meta.task = s.task, meta.source = "random", meta.sample_id = std::to_string(p);
    meta.answers = s.answers, meta.scorer = s.scorer;
    w.begin_prompt(meta, std::vector<std::int32_t>(tokens.begin(), tokens.end()));
    WriterSink sink(w, s.logit_data);
    RecordOptions ro;
    ro.window = s.W, ro.topk = s.topk;
    record_prompt(fwd, tokens, s.T, ro, sink);
  }
  w.finish();
}

// `m` as a llama2.c checkpoint (what `kvsim validate --model` / `compile --model` load). The
// format has H·d = D and interleaved RoPE: configure the model so.
inline void write_llama2c_checkpoint(const std::filesystem::path& path, const Model& m) {
  std::ofstream f(path, std::ios::binary);
  const ModelConfig& c = m.config;
  const std::int32_t header[7] = {c.hidden, c.ffn_hidden, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab, 256};
  f.write(reinterpret_cast<const char*>(header), sizeof header);
  auto put = [&](const float* p, std::size_t n) { f.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n * 4)); };
  put(m.embed.data(), m.embed.size());
  for (const auto& l : m.layers) put(l.attn_norm.data(), l.attn_norm.size());
  for (const auto& l : m.layers) put(l.wq.data(), l.wq.size());
  for (const auto& l : m.layers) put(l.wk.data(), l.wk.size());
  for (const auto& l : m.layers) put(l.wv.data(), l.wv.size());
  for (const auto& l : m.layers) put(l.wo.data(), l.wo.size());
  for (const auto& l : m.layers) put(l.ffn_norm.data(), l.ffn_norm.size());
  for (const auto& l : m.layers) put(l.w_gate.data(), l.w_gate.size());
  for (const auto& l : m.layers) put(l.w_down.data(), l.w_down.size());
  for (const auto& l : m.layers) put(l.w_up.data(), l.w_up.size());
  put(m.final_norm.data(), m.final_norm.size());
  std::vector<float> freqs(256 * c.head_dim / 2 * 2, 0.0f);
  put(freqs.data(), freqs.size());
}

inline ModelConfig small_config() {
  ModelConfig c;
  c.n_layers = 3, c.n_heads = 6, c.n_kv_heads = 2, c.head_dim = 16, c.hidden = 48, c.ffn_hidden = 64, c.vocab = 97;
  return c;
}

// small_config in llama2.c's layout (H·d = D, interleaved RoPE), for write_llama2c_checkpoint.
inline ModelConfig small_llama2c_config() {
  ModelConfig c = small_config();
  c.n_heads = 4, c.head_dim = 12, c.rope_style = RopeStyle::kInterleaved;
  return c;
}

// What a CLI test that loads a checkpoint needs: a random model in llama2.c's layout (seed 4),
// saved as DIR/m.bin, and a trace of it recorded as DIR/a.h5.
struct CheckpointedTrace {
  std::filesystem::path trace, checkpoint;
};
inline CheckpointedTrace write_checkpointed_trace(const std::filesystem::path& dir, const TraceSpec& spec) {
  const Model m = random_model(small_llama2c_config(), 4);
  CheckpointedTrace out{dir / "a.h5", dir / "m.bin"};
  write_model_trace(out.trace, m, spec);
  write_llama2c_checkpoint(out.checkpoint, m);
  return out;
}

}  // namespace kvsim::test
