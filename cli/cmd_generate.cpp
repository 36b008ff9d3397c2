// kvsim generate: greedy decoding with the CPU (or --device cuda) forward pass. Reproduces llama2.c's
// `run model.bin -t 0` (which starts from BOS and stops when the model emits BOS).
#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "tracer/forward_backend.hpp"

namespace kvsim::cli {

int cmd_generate(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, prompt, device, precision;
  int steps, threads;
  po::options_description opts("generate options");
  opts.add_options()
      ("model,m", po::value(&model_path)->required(), "checkpoint: llama2.c .bin or HF directory")
      ("tokenizer", po::value(&tokenizer_path), "tokenizer file (default: found beside the model)")
      ("prompt,p", po::value(&prompt)->default_value(""), "prompt text (BOS is prepended)")
      ("steps,n", po::value(&steps)->default_value(256), "forward passes, as llama2.c's -n (prompt tokens after the first count)")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores)");
  add_backend_options(opts, device, precision);
  if (!parse("generate", "Greedy decoding (temperature 0) from a prompt.", opts, args)) return 0;
  auto thread_limit = limit_threads(threads);
  const BackendChoice backend_choice = choose_backend(device, precision);
  const Model model = load_model(model_path);
  const auto tok = resolve_tokenizer(model_path, tokenizer_path, model.config.vocab);
  std::vector<int> ids = tok->encode(prompt, true);
  if (ids.empty()) fail<InputError>("generate: empty prompt and the tokenizer has no BOS token");
  // llama2.c runs `steps` forward passes; the first prompt token's pass already emits.
  const int max_new = steps - static_cast<int>(ids.size()) + 1;
  if (max_new <= 0) fail<InputError>("--steps ", steps, " leaves no room after a ", ids.size(), "-token prompt");
  const auto backend = make_backend(model, backend_choice, static_cast<int>(ids.size()), 1);
  // llama2.c stops on BOS; HF-style models on EOS.
  const int stop = tok->bos_id() == 1 && tok->eos_id() == 2 ? 1 : tok->eos_id();
  const std::vector<int> out = greedy_generate(*backend, ids, max_new, stop);
  std::vector<int> all = ids;
  all.insert(all.end(), out.begin(), out.end());
  std::cout << tok->decode(all) << "\n";
  return 0;
}

}  // namespace kvsim::cli
