#pragma once
// Traces for tests without ../shared: a random-weight model's real prefill, recorded with the
// tracer's own code and written with the trace writer; the model as a checkpoint file for the
// commands that load one. And a runner for the kvsim executable; and stories260K traces of
// chosen TinyStories chunks (those need ../shared).
#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "core/rng.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/inputs.hpp"
#include "tracer/tokenizer.hpp"
#include "tracer/trace_output.hpp"
#include "shared.hpp"

namespace kvsim::test {

struct CliResult {
  int status;
  std::string output;  // stdout + stderr
};

// Runs a shell command line; its exit status and stdout + stderr.
inline CliResult run_command(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  CliResult r{0, {}};
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), buf.size(), p)) r.output += buf.data();
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline CliResult run_cli(const std::string& args) { return run_command(std::string(KVSIM_BINARY) + " " + args); }

// Occurrences of needle in text (e.g. how many "error" lines a command printed).
inline int count_occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

struct TraceSpec {
  int n_prompts = 3, T = 48, M = 8, W = 16, topk = 8;
  std::uint64_t seed = 1;
  std::string task = "synthetic";
  bool logit_data = true;  // /model/classifier and cont_residual (false: a trace of an older kvsim)
  std::vector<std::string> answers;  // PromptMeta::answers of every prompt
  std::string scorer;
  KvStorage storage = KvStorage::kFp16;  // WriterOptions::storage
  bool value_norms = true;                // WriterOptions::value_norms (false: a trace without value_wo_l1)
};

// `prompts` through `m`, one trace file.
inline void write_prompt_trace(const std::filesystem::path& path, const Model& m, std::vector<PromptSpec> prompts,
                               const TraceSpec& s) {
  for (PromptSpec& ps : prompts) {
    if (ps.answers.empty()) ps.answers = s.answers;
    if (ps.scorer.empty()) ps.scorer = s.scorer;
  }
  TraceFileOptions o;
  o.record.window = s.W, o.record.topk = s.topk;
  o.writer.storage = s.storage, o.writer.value_norms = s.value_norms;
  o.producer = TraceProducer{"test", "none", "", ""};
  o.logit_data = s.logit_data;
  trace_prompts(CpuForward(m), prompts, path, o);
}

// Random token prompts through `m`, one trace file.
inline void write_model_trace(const std::filesystem::path& path, const Model& m, const TraceSpec& s) {
  Rng rng(s.seed);
  std::vector<PromptSpec> prompts(s.n_prompts);
  for (int p = 0; p < s.n_prompts; ++p) {
    PromptSpec& ps = prompts[p];
    ps.tokens.resize(s.T + s.M);
    for (auto& t : ps.tokens) t = static_cast<int>(rng.below(m.config.vocab));
    ps.n_prompt = s.T, ps.truncated_from = s.T, ps.task = s.task, ps.source = "random", ps.sample_id = std::to_string(p);
  }
  write_prompt_trace(path, m, prompts, s);
}

// Chunks of TinyStories validation text (T = 256, M = 32) through stories260K (../shared), one
// trace file, window 64. Chunks 634, 789 and 963 hold query heads of layer 0 that put all but
// 1e-24 … 1e-27 of their attention on a few middle prompt tokens: kept sets of more than T/2
// tokens that miss them leave a vanishing surviving share (issue 15).
inline std::vector<PromptSpec> stories260k_chunks(const std::vector<int>& chunks) {
  InputOptions o;
  o.prompt_len = 256, o.cont_len = 32, o.limit = chunks.empty() ? 1 : *std::max_element(chunks.begin(), chunks.end()) + 1;
  const auto all = load_prompts(shared_path("data/tinystories_valid_subset/tinystories_val.txt"),
                                *load_tokenizer(shared_path("models/stories260K/tok512.bin")), o);
  std::vector<PromptSpec> out;
  for (int c : chunks) out.push_back(all.at(c));
  return out;
}
inline const std::vector<int> kStoriesTinyShareChunks = {0, 634, 789, 963};
inline void write_stories260k_trace(const std::filesystem::path& path, const std::vector<int>& chunks) {
  TraceSpec spec;
  spec.W = 64;
  write_prompt_trace(path, load_model(shared_path("models/stories260K/stories260K.bin")), stories260k_chunks(chunks), spec);
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
