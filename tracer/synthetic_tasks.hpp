#pragma once
// RULER-style synthetic long-context tasks (Hsieh et al., 2024, "RULER: What's the Real Context
// Size of Your Long-Context Language Models?", github.com/NVIDIA/RULER), sized in a model's own
// tokens: needle in a haystack (niah_*), variable tracking (vt), common and frequent word
// extraction (cwe, fwe). The task logic follows RULER; the prompt wording is kvsim's own.
// docs/tasks.md lists every definition, its source and each choice made here.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tracer/chat.hpp"
#include "tracer/tokenizer.hpp"

namespace kvsim {

enum class TaskKind { kNiah, kVariableTracking, kCommonWords, kFrequentWords };
enum class Haystack { kNoise, kEssay, kNeedle };  // kNeedle: distractor needles (niah only)
enum class NeedleType { kWords, kNumbers, kUuids };

// One task: RULER's parameters (scripts/synthetic.yaml) for a named task, possibly overridden.
struct TaskSpec {
  std::string name;  // as given on the command line, e.g. "niah_multikey_1:haystack=noise"
  TaskKind kind = TaskKind::kNiah;
  Haystack haystack = Haystack::kNoise;
  NeedleType key_type = NeedleType::kWords;
  NeedleType value_type = NeedleType::kNumbers;
  int num_k = 1, num_v = 1, num_q = 1;  // niah: keys in the text, values per key, keys asked
  int chains = 1, hops = 4;             // vt: chains, assignments after the first per chain
  int freq_cw = 0, freq_ucw = 0;        // cwe: repeats of common / other words (0: RULER's by length)
  int num_cw = 10;                      // cwe: common words (the answer)
  double alpha = 2.0;                   // fwe: Zipf exponent of the word counts
  int fewshot = 1;                      // vt, cwe: solved examples before the task (RULER: 1)
};

// "name" or "name:key=value:key=value" (keys: haystack, key_type, value_type, num_k, num_v,
// num_q, chains, hops, freq_cw, freq_ucw, num_cw, alpha, fewshot). Throws InputError naming the known
// tasks or keys on anything else.
TaskSpec parse_task_spec(const std::string& text);
std::vector<std::string> task_names();

struct TaskOptions {
  int length = 4096;  // the largest prompt in tokens: chat wrap and answer prefix included
  int n = 20;         // samples per task
  std::uint64_t seed = 1;
  std::optional<ChatFormat> chat;  // prompts are sized as they will be traced with --chat
  std::string essays;              // the essay haystack's text; empty: essay tasks refuse
};

// One JSONL line of `kvsim tasks` (docs/tasks.md).
struct TaskSample {
  std::string input;                 // the user message
  std::vector<std::string> outputs;  // gold answers
  std::string task;                  // TaskSpec::name
  std::string answer_prefix;         // the start of the assistant's reply
  int length = 0;                    // tokens of prompt_text(input, answer_prefix, chat), BOS included
  std::uint64_t seed = 0;            // TaskOptions::seed
  int index = 0;
};

// n samples of one task, each filled with as much haystack as fits in options.length tokens of
// `tok`. Deterministic: the same arguments give the same samples. Throws InputError when the
// options are bad (n <= 0), an essay task has no essays, or the shortest prompt of the task
// does not fit in options.length.
std::vector<TaskSample> generate_task_samples(const TaskSpec& spec, const Tokenizer& tok, const TaskOptions& options);

// The essay haystack: a text file, or every *.txt of a directory in name order (LICENSE* and
// README* skipped), joined by newlines. Throws InputError when nothing is readable.
std::string load_essays(const std::filesystem::path& dir_or_file);

// One JSONL line (no newline): input, outputs, task, answer_prefix, length, seed, index.
std::string task_sample_json(const TaskSample& sample);

// Writes the samples as JSONL to OUT.tmp, then renames it to OUT (InputError on failure).
void write_task_samples(const std::filesystem::path& out, const std::vector<TaskSample>& samples);

}  // namespace kvsim
