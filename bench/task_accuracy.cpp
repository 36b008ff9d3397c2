// Task accuracy with the full KV cache: greedy replies to the prompts of a JSONL task file
// (`kvsim tasks`, RULER or LongBench fields), scored against the gold answers as RULER scores
// them (string_match_all: the fraction of gold strings found in the reply, case-insensitive).
// Prompts are built exactly as `kvsim trace` builds them (tracer/inputs.hpp: chat wrap, answer
// prefix). Prints one line per sample, then one per task: mean score and samples fully right.
// Usage: task_accuracy MODEL TASKS.jsonl [chat=1] [max_new=24] [limit=0] [threads=1]
#include <tbb/global_control.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "core/error.hpp"
#include "tracer/chat.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/inputs.hpp"
#include "tracer/model.hpp"

using namespace kvsim;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: task_accuracy MODEL TASKS.jsonl [chat=1] [max_new=24] [limit=0] [threads=1]\n");
    return 2;
  }
  const bool chat = argc > 3 ? std::atoi(argv[3]) != 0 : true;
  const int max_new = argc > 4 ? std::atoi(argv[4]) : 24;
  const int limit = argc > 5 ? std::atoi(argv[5]) : 0;
  const int threads = argc > 6 ? std::atoi(argv[6]) : 1;
  tbb::global_control cap(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(std::max(1, threads)));
  try {
    const Model model = load_model(argv[1]);
    const auto tok = load_tokenizer(argv[1]);
    InputOptions io;
    io.limit = limit;
    if (chat) io.chat = chat_format_from_template(tok->chat_template(), argv[1]);
    const std::vector<PromptSpec> prompts = load_prompts(argv[2], *tok, io);
    const CpuForward fwd(model);
    struct Sum {
      double score = 0;
      int n = 0, all = 0, tokens = 0;
    };
    std::map<std::string, Sum> by_task;
    std::vector<std::string> order;
    const auto start = std::chrono::steady_clock::now();
    for (const PromptSpec& p : prompts) {
      // The task label is the line's own "task" field when the file mixes tasks.
      const std::vector<int> prompt(p.tokens.begin(), p.tokens.begin() + p.n_prompt);
      const std::vector<int> out = greedy_generate(fwd, prompt, max_new, tok->eos_id());
      const std::string reply = tok->decode(out);
      int found = 0;
      for (const std::string& a : p.answers) found += lower(reply).find(lower(a)) != std::string::npos;
      const double score = p.answers.empty() ? 0.0 : static_cast<double>(found) / static_cast<double>(p.answers.size());
      std::string flat = reply;
      std::replace(flat.begin(), flat.end(), '\n', ' ');
      std::printf("%s\t%s\tT=%d\tscore=%.2f\treply=%s\n", p.task.c_str(), p.sample_id.c_str(), p.n_prompt, score, flat.c_str());
      std::fflush(stdout);
      if (!by_task.count(p.task)) order.push_back(p.task);
      Sum& s = by_task[p.task];
      s.score += score, s.n += 1, s.all += found == static_cast<int>(p.answers.size()), s.tokens += p.n_prompt;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("\ntask\tn\tmean_T\tscore\tall_right\n");
    for (const std::string& t : order) {
      const Sum& s = by_task[t];
      std::printf("%s\t%d\t%d\t%.0f%%\t%d/%d\n", t.c_str(), s.n, s.tokens / s.n, 100.0 * s.score / s.n, s.all, s.n);
    }
    std::printf("(%zu prompts, %.0f s)\n", prompts.size(), secs);
  } catch (const Error& e) {
    std::fprintf(stderr, "task_accuracy: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
