// kvsim inspect: what a trace holds (model, producer, prompts, dataset shapes), read through
// the same reader the simulator uses, so a trace that inspects cleanly also replays.
#include <cstdio>
#include <numeric>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "traces/trace_reader.hpp"

namespace kvsim::cli {

int cmd_inspect(const std::vector<std::string>& args) {
  std::string path;
  bool all_prompts = false;
  po::options_description opts("inspect options");
  opts.add_options()("trace", po::value(&path)->required(), "trace file (.h5)")
      ("all", po::bool_switch(&all_prompts), "list every prompt (default: the first 20)");
  po::positional_options_description pos;
  pos.add("trace", 1);
  if (!parse("inspect", "Prints a trace's model, prompts and dataset shapes.", opts, args, &pos)) return 0;

  TraceReader reader(path);
  const ModelInfo& m = reader.model();
  const TraceProducer& p = reader.producer();
  std::printf("trace    %s (kvsim-trace v%d)\n", path.c_str(), reader.format_version());
  // Versions 1 and 2 predate checksums: a corruption there can go unnoticed (docs/trace-format.md).
  std::printf("         %s\n", reader.has_checksums() ? "checksums: metadata and data (HDF5 verifies them on every read)"
                                                       : "no checksums (format v1/v2): corruption may go undetected");
  // K/V/Q element type as the dataset lines below write it: f16 (v1), f32 or bf16.
  const char* kv = reader.storage() == KvStorage::kFp16 ? "f16" : reader.storage() == KvStorage::kFp32 ? "f32" : "bf16";
  std::printf("producer kvsim %s (%s), backend %s, created %s\n", p.version.c_str(), p.git_sha.c_str(),
              p.backend.c_str(), p.created_utc.c_str());
  // An index file (`mpirun -np N kvsim trace`): the data lives in these files, beside it.
  if (!reader.parts().empty()) {
    std::printf("parts    %zu (this file is their index; paths relative to its directory)\n", reader.parts().size());
    for (const std::string& part : reader.parts()) std::printf("         %s\n", part.c_str());
  }
  std::printf("model    %s: %d layers, %d heads, %d KV heads (group %d), head_dim %d, hidden %d, vocab %d\n",
              m.arch.c_str(), m.n_layers, m.n_heads, m.n_kv_heads, m.n_heads / m.n_kv_heads, m.head_dim, m.hidden,
              m.vocab);
  std::printf("         rope %s theta %g, norm_eps %g\n         source %s\n", m.rope_style.c_str(), m.rope_theta,
              m.norm_eps, m.source.c_str());
  std::printf("         /model/w_o [%d, %d, %d] f32, /model/final_norm [%d] f32\n", m.n_layers, m.hidden,
              m.n_heads * m.head_dim, m.hidden);
  if (reader.has_classifier())
    std::printf("         /model/classifier [%d, %d] f32\n", m.vocab, m.hidden);
  else
    std::printf("         /model/classifier absent (optional: no dnll_est_logit)\n");
  const auto& prompts = reader.prompts();
  std::printf("prompts  %zu\n", prompts.size());
  std::printf("  %-8s %-22s %6s %5s %4s %4s %9s %9s  %s\n", "id", "task", "T", "M", "W", "K", "trunc", "mean_nll",
              "sample");
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (!all_prompts && i == 20) {
      std::printf("  ... %zu more (--all lists them)\n", prompts.size() - 20);
      break;
    }
    const PromptMeta& q = prompts[i];
    const PromptOutputs out = reader.read_outputs(i);
    // Mean next-token NLL over the prompt (position 0 has no prediction).
    const double nll = q.n_prompt > 1 ? -std::accumulate(out.prompt_logprob.begin() + 1, out.prompt_logprob.end(), 0.0) /
                                            (q.n_prompt - 1)
                                      : 0.0;
    std::printf("  %-8s %-22s %6d %5d %4d %4d %9d %9.4f  %s\n", q.id.c_str(), q.task.c_str(), q.n_prompt, q.n_cont,
                q.window, q.topk, q.truncated_from, nll, q.sample_id.c_str());
  }
  if (!prompts.empty()) {
    const PromptMeta& q = prompts[0];
    const int N = q.n_prompt + q.n_cont;
    std::printf("datasets of /prompts/%s (every prompt has the same set):\n", q.id.c_str());
    std::printf("  tokens [%d] i32, prompt_logprob [%d] f32, cont_logprob [%d] f32, cont_logsumexp [%d] f32\n", N,
                q.n_prompt, q.n_cont, q.n_cont);
    std::printf("  cont_topk_ids [%d, %d] i32, cont_topk_logits [%d, %d] f32\n", q.n_cont, q.topk, q.n_cont, q.topk);
    if (reader.has_dataset(0, "cont_residual"))
      std::printf("  cont_residual [%d, %d] f32\n", q.n_cont, m.hidden);
    else
      std::printf("  cont_residual absent (optional: no dnll_est_logit)\n");
    std::printf("  layers/<0..%d>/keys [%d, %d, %d] %s, values [%d, %d, %d] %s\n", m.n_layers - 1, m.n_kv_heads, N,
                m.head_dim, kv, m.n_kv_heads, N, m.head_dim, kv);
    std::printf("  layers/<l>/q_window [%d, %d, %d] %s, q_cont [%d, %d, %d] %s, attn_colsum [%d, %d] f32\n",
                m.n_heads, q.window, m.head_dim, kv, m.n_heads, q.n_cont, m.head_dim, kv, m.n_heads, q.n_prompt);
  }
  return 0;
}

}  // namespace kvsim::cli
