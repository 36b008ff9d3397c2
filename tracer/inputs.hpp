#pragma once
// Prompts for the tracer from plain text files and JSONL benchmark files.
//  - text: the file is one token stream; prompt i = BOS + the next T-1 tokens (T without a
//    BOS), continuation = the next M tokens; consecutive chunks do not overlap.
//  - JSONL, LongBench fields {context, input, answers}: prompt = template(context, input),
//    continuation = answers[0] (teacher-forced gold answer).
//  - JSONL, RULER fields {input, outputs}: prompt = input, continuation = outputs joined.
//  - JSONL prompts may be wrapped in a chat template (InputOptions::chat).
//  - JSONL lines may carry "answer_prefix" (the start of the assistant's reply, appended after
//    the chat wrap, else after the input: prompt_text) and "scorer"; the gold answers
//    (RULER outputs, LongBench answers) are kept whole in PromptSpec::answers.
// Prompts longer than max_len are truncated in the middle (first half + last half), the
// LongBench convention; the original length is kept in truncated_from.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tracer/chat.hpp"
#include "tracer/tokenizer.hpp"

namespace kvsim {

struct PromptSpec {
  std::vector<int> tokens;  // [T+M] prompt then continuation
  int n_prompt = 0;         // T
  int truncated_from = 0;   // T before middle truncation
  std::string task;
  std::string source;
  std::string sample_id;
  std::vector<std::string> answers;  // JSONL: every gold answer (empty for text files)
  std::string scorer;                // JSONL "scorer" field ("" when absent)
};

struct InputOptions {
  int prompt_len = 512;  // text files: T per chunk
  int cont_len = 32;     // text files: M per chunk
  int max_len = 0;       // JSONL: maximum T (0 = unlimited); longer prompts truncated in the middle
  int limit = 0;         // at most this many prompts per file (0 = all)
  std::string task;      // task label (default: a JSONL line's "task" field, else the file's stem)
  // LongBench prompt; {context} and {input} are replaced.
  std::string longbench_template = "{context}\n\nQuestion: {input}\nAnswer:";
  // JSONL: each prompt wrapped as a single-turn chat (the answer is the assistant's reply).
  // Text files are token streams and refuse it.
  std::optional<ChatFormat> chat;
};

// The text a model is prefilled with: the user message, wrapped as a chat turn when `chat` is
// set, then the answer prefix (the start of the reply), separated from a non-chat input by one
// space unless either side already has whitespace there. `kvsim tasks` sizes its prompts with
// this same function, so a task's recorded length is the traced T.
std::string prompt_text(std::string_view input, std::string_view answer_prefix, const std::optional<ChatFormat>& chat);

// Reads one input file (.jsonl → JSONL, anything else → text). Throws InputError naming the
// file (and line) on unreadable files, bad JSON, missing fields, or a prompt that is empty.
std::vector<PromptSpec> load_prompts(const std::filesystem::path& file, const Tokenizer& tok,
                                     const InputOptions& options);

// Middle truncation of a token sequence to at most max_len tokens (first ⌈max/2⌉... as LongBench:
// first max_len/2 and last max_len - max_len/2). Returns the input unchanged when it fits.
std::vector<int> truncate_middle(const std::vector<int>& tokens, int max_len);

}  // namespace kvsim
