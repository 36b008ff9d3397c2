#include "tracer/inputs.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/read_file.hpp"

namespace kvsim {

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// Continuation tokens as they follow the prompt: the tokens of prompt+answer past the
// prompt's own tokens when the prompt tokenizes as a prefix (so no spurious dummy-prefix or
// boundary token), else the answer tokenized alone.
std::vector<int> continuation_tokens(const Tokenizer& tok, const std::string& prompt, const std::vector<int>& p,
                                     const std::string& answer) {
  const std::vector<int> full = tok.encode(prompt + answer, true);
  if (full.size() > p.size() && std::equal(p.begin(), p.end(), full.begin())) return {full.begin() + p.size(), full.end()};
  return tok.encode(answer, false);
}

std::vector<PromptSpec> load_text(const std::filesystem::path& file, const Tokenizer& tok, const InputOptions& o) {
  const std::string text = read_file<InputError>(file, "input file");
  if (o.prompt_len <= 0) fail<InputError>(file.string(), ": prompt length must be positive, got ", o.prompt_len);
  if (o.cont_len < 0) fail<InputError>(file.string(), ": continuation length must be >= 0, got ", o.cont_len);
  if (o.chat)
    fail<InputError>(file.string(), ": chat formatting applies to JSONL prompts; a text file is one token stream");
  const std::vector<int> ids = tok.encode(text, false);
  if (ids.empty()) fail<InputError>(file.string(), ": empty prompt (the file has no text)");
  const int bos = tok.bos_id();
  const int body = o.prompt_len + o.cont_len - (bos >= 0 ? 1 : 0);  // text tokens per chunk
  std::vector<PromptSpec> out;
  auto make = [&](std::size_t begin, int n_text, int T, int index) {
    PromptSpec p;
    if (bos >= 0) p.tokens.push_back(bos);
    p.tokens.insert(p.tokens.end(), ids.begin() + static_cast<std::ptrdiff_t>(begin),
                    ids.begin() + static_cast<std::ptrdiff_t>(begin + n_text));
    p.n_prompt = T;
    p.truncated_from = T;
    p.task = o.task.empty() ? file.stem().string() : o.task;
    p.source = file.string();
    p.sample_id = "chunk" + std::to_string(index);
    out.push_back(std::move(p));
  };
  if (static_cast<int>(ids.size()) < body) {
    // Shorter than one chunk: one prompt of what is there, the continuation kept whole.
    const int T = static_cast<int>(ids.size()) + (bos >= 0 ? 1 : 0) - o.cont_len;
    if (T < 1)
      fail<InputError>(file.string(), ": ", ids.size(), " tokens cannot hold a continuation of ", o.cont_len,
                       " tokens and a non-empty prompt");
    make(0, static_cast<int>(ids.size()), T, 0);
    return out;
  }
  for (std::size_t begin = 0; begin + body <= ids.size(); begin += body) {
    if (o.limit > 0 && static_cast<int>(out.size()) >= o.limit) break;
    make(begin, body, o.prompt_len, static_cast<int>(out.size()));
  }
  return out;
}

std::vector<PromptSpec> load_jsonl(const std::filesystem::path& file, const Tokenizer& tok, const InputOptions& o) {
  std::ifstream in(file);
  if (!in) fail<InputError>(file.string(), ": cannot open input file");
  std::vector<PromptSpec> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (o.limit > 0 && static_cast<int>(out.size()) >= o.limit) break;
    const std::string where = file.string() + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail<InputError>(where, ": not valid JSON: ", e.what());
    }
    std::string prompt, answer;
    auto str_field = [&](const char* key) {
      if (!j.contains(key) || !j[key].is_string()) fail<InputError>(where, ": field '", key, "' is missing or not a string");
      return j[key].get<std::string>();
    };
    auto strings_of = [&](const char* key) {
      const bool ok = j.contains(key) && j[key].is_array() && !j[key].empty() &&
                      std::all_of(j[key].begin(), j[key].end(), [](const nlohmann::json& a) { return a.is_string(); });
      if (!ok) fail<InputError>(where, ": field '", key, "' must be a non-empty list of strings");
      return j[key].get<std::vector<std::string>>();
    };
    std::vector<std::string> answers;
    if (j.contains("context") && j.contains("answers")) {  // LongBench
      prompt = replace_all(replace_all(o.longbench_template, "{context}", str_field("context")), "{input}",
                           j.contains("input") ? str_field("input") : std::string());
      answers = strings_of("answers");
      answer = answers[0];
    } else if (j.contains("input") && j.contains("outputs")) {  // RULER
      prompt = str_field("input");
      answers = strings_of("outputs");
      for (std::size_t k = 0; k < answers.size(); ++k) answer += (k ? ", " : "") + answers[k];
    } else {
      fail<InputError>(where, ": neither LongBench fields (context, input, answers) nor RULER fields (input, outputs)");
    }
    if (prompt.empty()) fail<InputError>(where, ": empty prompt");
    prompt = prompt_text(prompt, j.contains("answer_prefix") ? str_field("answer_prefix") : std::string(), o.chat);
    if (!answer.empty() && !std::isspace(static_cast<unsigned char>(prompt.back())) && answer.front() != ' ')
      answer = " " + answer;
    std::vector<int> p = tok.encode(prompt, true);
    std::vector<int> cont = continuation_tokens(tok, prompt, p, answer);
    PromptSpec spec;
    spec.truncated_from = static_cast<int>(p.size());
    if (o.max_len > 0 && static_cast<int>(p.size()) > o.max_len) {
      // Keep BOS in place: truncate the tokens after it.
      const bool has_bos = tok.bos_id() >= 0 && !p.empty() && p[0] == tok.bos_id();
      std::vector<int> rest(p.begin() + (has_bos ? 1 : 0), p.end());
      rest = truncate_middle(rest, o.max_len - (has_bos ? 1 : 0));
      p.assign(has_bos ? 1 : 0, tok.bos_id());
      p.insert(p.end(), rest.begin(), rest.end());
    }
    spec.n_prompt = static_cast<int>(p.size());
    spec.tokens = std::move(p);
    spec.tokens.insert(spec.tokens.end(), cont.begin(), cont.end());
    // The line's own "task" (kvsim tasks files mix tasks) unless a label was given.
    spec.task = !o.task.empty() ? o.task : j.contains("task") ? str_field("task") : file.stem().string();
    spec.source = file.string();
    spec.sample_id = j.contains("index") ? j["index"].dump() : j.contains("_id") ? j["_id"].dump() : "line" + std::to_string(line_no);
    spec.answers = std::move(answers);
    if (j.contains("scorer")) spec.scorer = str_field("scorer");
    out.push_back(std::move(spec));
  }
  if (out.empty()) fail<InputError>(file.string(), ": no prompts (empty file)");
  return out;
}

}  // namespace

std::string prompt_text(std::string_view input, std::string_view answer_prefix, const std::optional<ChatFormat>& chat) {
  std::string out = chat ? chat->wrap(input) : std::string(input);
  if (answer_prefix.empty()) return out;
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  if (!out.empty() && !space(out.back()) && !space(answer_prefix.front())) out += ' ';
  out += answer_prefix;
  return out;
}

std::vector<int> truncate_middle(const std::vector<int>& tokens, int max_len) {
  if (max_len <= 0 || static_cast<int>(tokens.size()) <= max_len) return tokens;
  const int head = max_len / 2, tail = max_len - head;
  std::vector<int> out(tokens.begin(), tokens.begin() + head);
  out.insert(out.end(), tokens.end() - tail, tokens.end());
  return out;
}

std::vector<PromptSpec> load_prompts(const std::filesystem::path& file, const Tokenizer& tok, const InputOptions& options) {
  if (!std::filesystem::exists(file)) fail<InputError>(file.string(), ": no such input file");
  return file.extension() == ".jsonl" ? load_jsonl(file, tok, options) : load_text(file, tok, options);
}

}  // namespace kvsim
