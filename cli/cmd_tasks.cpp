// kvsim tasks: RULER-style synthetic long-context tasks as JSONL, sized in a model's tokens
// (tracer/synthetic_tasks.hpp, docs/tasks.md).
#include <algorithm>
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "tracer/synthetic_tasks.hpp"

namespace kvsim::cli {

int cmd_tasks(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, tasks_text, haystack, out_path;
  int length, n;
  std::uint64_t seed;
  bool chat = false;
  po::options_description opts("tasks options");
  opts.add_options()
      ("model,m", po::value(&model_path)->required(), "model whose tokenizer sizes the prompts (.gguf, HF directory, llama2.c .bin)")
      ("tokenizer", po::value(&tokenizer_path), "tokenizer file (default: the model's own or found beside it)")
      ("tasks", po::value(&tasks_text)->required(), "comma-separated tasks, each NAME or NAME:key=value:... (docs/tasks.md)")
      ("length", po::value(&length)->default_value(4096), "largest prompt in tokens (chat wrap and answer prefix included)")
      ("n", po::value(&n)->default_value(20), "samples per task")
      ("seed", po::value(&seed)->default_value(1), "random seed")
      ("haystack", po::value(&haystack), "essay haystack: a text file or a directory of .txt essays (essay tasks need it)")
      ("chat", po::bool_switch(&chat), "size prompts as `kvsim trace --chat` wraps them (ChatML user turn)")
      ("out,o", po::value(&out_path)->required(), "output .jsonl (written as OUT.tmp, then renamed)");
  if (!parse("tasks", "Writes RULER-style synthetic tasks as JSONL, sized in the model's tokens.", opts, args)) return 0;
  // Fail fast: every task and option is checked before the tokenizer loads.
  std::vector<TaskSpec> specs;
  for (std::size_t b = 0; b <= tasks_text.size();) {
    std::size_t e = tasks_text.find(',', b);
    if (e == std::string::npos) e = tasks_text.size();
    if (e > b) specs.push_back(parse_task_spec(tasks_text.substr(b, e - b)));
    b = e + 1;
  }
  if (specs.empty()) fail<InputError>("--tasks names no task");
  require_at_least("--n", n, 1);
  require_at_least("--length", length, 1);
  check_output_file(out_path, "--out", true);
  TaskOptions o;
  o.length = length, o.n = n, o.seed = seed;
  if (!haystack.empty()) o.essays = load_essays(haystack);
  const auto tok = resolve_tokenizer(model_path, tokenizer_path, 0);
  if (chat) o.chat = chat_format_from_template(tok->chat_template(), model_path);
  std::vector<TaskSample> all;
  for (const TaskSpec& spec : specs) {
    std::vector<TaskSample> samples = generate_task_samples(spec, *tok, o);
    int shortest = length, longest = 0;
    for (const auto& s : samples) shortest = std::min(shortest, s.length), longest = std::max(longest, s.length);
    std::fprintf(stderr, "[tasks] %s: %d samples, %d..%d tokens\n", spec.name.c_str(), n, shortest, longest);
    for (auto& s : samples) all.push_back(std::move(s));
  }
  write_task_samples(out_path, all);
  std::fprintf(stderr, "[tasks] %zu samples -> %s\n", all.size(), out_path.c_str());
  return 0;
}

}  // namespace kvsim::cli
