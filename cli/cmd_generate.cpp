// kvsim generate: greedy decoding with the CPU (or --device cuda) forward pass. Reproduces
// llama2.c's `run model.bin -t 0` (which starts from BOS and stops when the model emits BOS).
// Can also dump the prompt's logits (CPU forward) and token ids as .npy files, for checks
// against other implementations (scripts/verify-gguf.py).
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "core/read_file.hpp"
#include "tracer/chat.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/forward_backend.hpp"

namespace kvsim::cli {

int cmd_generate(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, prompt, prompt_file, dump_logits, dump_tokens, device, precision;
  int steps, threads, prompt_len;
  bool chat = false;
  po::options_description opts("generate options");
  opts.add_options()
      ("model,m", po::value(&model_path)->required(), "checkpoint: llama2.c .bin, HF directory or .gguf")
      ("tokenizer", po::value(&tokenizer_path), "tokenizer file (default: the model's own or found beside it)")
      ("prompt,p", po::value(&prompt)->default_value(""), "prompt text (BOS is prepended when the tokenizer has one)")
      ("prompt-file", po::value(&prompt_file), "read the prompt text from this file instead")
      ("prompt-len", po::value(&prompt_len)->default_value(0), "keep only the first N prompt tokens (0 = all)")
      ("chat", po::bool_switch(&chat), "wrap the prompt as a ChatML user turn (system default from the chat template)")
      ("steps,n", po::value(&steps)->default_value(256), "forward passes, as llama2.c's -n (prompt tokens after the first count); at most the model's context "
       "(the default is capped to it, as llama2.c does)")
      ("dump-logits", po::value(&dump_logits), "write the logits of every prompt position, [T, vocab] float32, to this .npy")
      ("dump-tokens", po::value(&dump_tokens), "write the prompt's token ids, [T] int32, to this .npy")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores)");
  add_backend_options(opts, device, precision);
  const auto vm = parse("generate", "Greedy decoding (temperature 0) from a prompt.", opts, args);
  if (!vm) return 0;
  auto thread_limit = limit_threads(threads);
  const BackendChoice backend_choice = choose_backend(device, precision);
  require_at_least("--prompt-len", prompt_len, 0);
  require_at_least("--steps", steps, 1);
  if (!prompt_file.empty()) {
    if (!prompt.empty()) fail<InputError>("give either --prompt or --prompt-file, not both");
    prompt = read_file<InputError>(prompt_file, "prompt file");
  }
  const Model model = load_model(model_path);
  // The KV cache holds `steps` positions: never more than the model was trained for (-n 1e9
  // would ask for a cache of gigabytes). llama2.c caps steps at seq_len; so does the default.
  // Without a known context, kMaxSteps bounds it.
  constexpr int kMaxSteps = 1 << 20;
  const int context = model.config.max_seq_len > 0 ? model.config.max_seq_len : kMaxSteps;
  if (steps > context) {
    if (!vm->at("steps").defaulted())
      fail<InputError>("--steps ", steps, " exceeds the context of ", model_path, " (", context, " tokens)");
    steps = context;
  }
  const auto tok = resolve_tokenizer(model_path, tokenizer_path, model.config.vocab);
  if (chat) prompt = chat_format_from_template(tok->chat_template(), model_path).wrap(prompt);
  std::vector<int> ids = tok->encode(prompt, true);
  if (prompt_len > 0 && static_cast<int>(ids.size()) > prompt_len) ids.resize(prompt_len);
  if (ids.empty()) fail<InputError>("generate: empty prompt and the tokenizer has no BOS token");
  for (int id : ids)
    if (id >= model.config.vocab) fail<ModelError>(model_path, ": token id ", id, " is outside the model's vocabulary");
  const int T = static_cast<int>(ids.size());
  if (!dump_tokens.empty()) write_npy(dump_tokens, ids.data(), {T});
  if (!dump_logits.empty()) {
    const CpuForward fwd(model);
    KvCache cache(model.config, T);
    const MatrixRM logits = fwd.logits(fwd.forward(ids, cache));  // [T, V]
    write_npy(dump_logits, logits.data(), {T, model.config.vocab});
  }
  // llama2.c runs `steps` forward passes; the first prompt token's pass already emits.
  const int max_new = steps - T + 1;
  if (max_new <= 0) fail<InputError>("--steps ", steps, " leaves no room after a ", T, "-token prompt");
  const auto backend = make_backend(model, backend_choice, T, 1);
  // llama2.c stops on BOS; HF-style models on EOS.
  const int stop = tok->bos_id() == 1 && tok->eos_id() == 2 ? 1 : tok->eos_id();
  const std::vector<int> out = greedy_generate(*backend, ids, max_new, stop);
  std::vector<int> all = ids;
  all.insert(all.end(), out.begin(), out.end());
  std::cout << tok->decode(all) << "\n";
  return 0;
}

}  // namespace kvsim::cli
