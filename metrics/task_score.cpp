#include "metrics/task_score.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <vector>

#include "core/error.hpp"

namespace kvsim {

namespace {

struct NamedScorer {
  std::string_view name;
  Scorer scorer;
};
constexpr std::array<NamedScorer, 5> kScorers = {{{"ruler_all", Scorer::kRulerAll},
                                                  {"ruler_part", Scorer::kRulerPart},
                                                  {"exact_match", Scorer::kExactMatch},
                                                  {"f1", Scorer::kF1},
                                                  {"rouge_l", Scorer::kRougeL}}};

// Whitespace as Python's str.split() and str.strip() see it, restricted to ASCII.
bool is_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}
bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20; }
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}
// Python's string.punctuation.
bool is_punct(char c) { return std::string_view(R"(!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~)").find(c) != std::string_view::npos; }
// Python's \w for ASCII, with every byte of a multi-byte UTF-8 character taken as a letter.
bool is_word(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Python's s.split(): the non-empty runs between whitespace.
std::vector<std::string> split_words(std::string_view s) {
  std::vector<std::string> words;
  for (std::size_t i = 0; i < s.size();) {
    if (is_space(s[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    words.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return words;
}

bool contains(std::string_view haystack, std::string_view needle) { return haystack.find(needle) != std::string_view::npos; }

double ruler_score(Scorer s, std::string_view prediction, std::span<const std::string> gold) {
  const std::string pred = lower(ruler_postprocess(prediction));
  double hits = 0;
  for (const std::string& r : gold) hits += contains(pred, lower(r)) ? 1.0 : 0.0;
  if (s == Scorer::kRulerAll) return hits / static_cast<double>(gold.size());
  return hits > 0 ? 1.0 : 0.0;
}

// LongBench f1_score over token lists: the multiset intersection counted on sorted copies.
double token_f1(std::vector<std::string> pred, std::vector<std::string> gold) {
  std::sort(pred.begin(), pred.end());
  std::sort(gold.begin(), gold.end());
  std::size_t common = 0;
  for (std::size_t i = 0, j = 0; i < pred.size() && j < gold.size();) {
    if (pred[i] < gold[j]) {
      ++i;
    } else if (gold[j] < pred[i]) {
      ++j;
    } else {
      ++common, ++i, ++j;
    }
  }
  if (common == 0) return 0.0;
  const double precision = static_cast<double>(common) / static_cast<double>(pred.size());
  const double recall = static_cast<double>(common) / static_cast<double>(gold.size());
  return 2 * precision * recall / (precision + recall);
}

// The `rouge` package's sentences: split at '.', pieces of length 0 dropped, each piece's words
// (one empty word for a whitespace-only piece).
std::vector<std::vector<std::string>> rouge_sentences(std::string_view text) {
  std::vector<std::vector<std::string>> sentences;
  for (std::size_t i = 0; i <= text.size();) {
    const std::size_t j = std::min(text.find('.', i), text.size());
    if (j > i) {
      std::vector<std::string> words = split_words(text.substr(i, j - i));
      if (words.empty()) words.emplace_back();
      sentences.push_back(std::move(words));
    }
    i = j + 1;
  }
  return sentences;
}

std::size_t distinct_words(const std::vector<std::vector<std::string>>& sentences) {
  std::set<std::string_view> words;
  for (const auto& s : sentences) words.insert(s.begin(), s.end());
  return words.size();
}

// Adds the words of the LCS of x (a gold sentence) and y (a prediction sentence), reconstructed
// with the package's tie-break, to u. table: reused buffer, [|x|+1, |y|+1].
void add_lcs_words(const std::vector<std::string>& x, const std::vector<std::string>& y, std::vector<int>& table,
                   std::set<std::string_view>& u) {
  const std::size_t w = y.size() + 1;
  table.assign((x.size() + 1) * w, 0);
  for (std::size_t i = 1; i <= x.size(); ++i)
    for (std::size_t j = 1; j <= y.size(); ++j)
      table[i * w + j] = x[i - 1] == y[j - 1] ? table[(i - 1) * w + j - 1] + 1
                                              : std::max(table[(i - 1) * w + j], table[i * w + j - 1]);
  for (std::size_t i = x.size(), j = y.size(); i > 0 && j > 0;) {
    if (x[i - 1] == y[j - 1]) {
      u.insert(x[i - 1]);
      --i, --j;
    } else if (table[(i - 1) * w + j] > table[i * w + j - 1]) {
      --i;
    } else {
      --j;
    }
  }
}

double rouge_l(std::string_view prediction, std::string_view gold) {
  const auto hyp = rouge_sentences(prediction), ref = rouge_sentences(gold);
  if (hyp.empty() || ref.empty()) return 0.0;  // the package raises, LongBench scores 0
  const double m = static_cast<double>(distinct_words(ref)), n = static_cast<double>(distinct_words(hyp));
  std::set<std::string_view> u;
  std::vector<int> table;
  for (const auto& r : ref)
    for (const auto& c : hyp) add_lcs_words(r, c, table, u);
  const double llcs = static_cast<double>(u.size());
  const double recall = llcs / m, precision = llcs / n;
  return 2.0 * ((precision * recall) / (precision + recall + 1e-8));  // the package's expression
}

void check_one_gold(Scorer s, std::string_view g, std::size_t k, const std::string& where) {
  if (g.find('\0') != std::string_view::npos) fail<InputError>(where, ": gold answer ", k, " contains a NUL byte");
  const auto bad = [&](const char* why) {
    fail<InputError>(where, ": gold answer ", k, " (\"", g.substr(0, 60), g.size() > 60 ? "..." : "", "\") ", why);
  };
  if (strip(g).empty()) bad(g.empty() ? "is empty" : "is whitespace only");
  switch (s) {
    case Scorer::kRulerAll:
    case Scorer::kRulerPart:
      if (std::any_of(g.begin(), g.end(), [](char c) { return is_control(c) && c != '\n'; }))
        bad("holds a control character other than '\\n': RULER turns the prediction's into '\\n', so it never matches");
      break;
    case Scorer::kExactMatch:
    case Scorer::kF1:
      if (normalize_answer(g).empty())
        bad("is empty after normalize_answer (lowercase, no punctuation, no articles a/an/the)");
      break;
    case Scorer::kRougeL:
      if (std::all_of(g.begin(), g.end(), [](char c) { return c == '.' || is_space(c); }))
        bad("has no word outside '.' and whitespace (ROUGE-L splits sentences at '.')");
      break;
  }
}

}  // namespace

Scorer parse_scorer(std::string_view name, const std::string& where) {
  for (const auto& [n, s] : kScorers)
    if (n == name) return s;
  std::string valid;
  for (const auto& [n, s] : kScorers) valid += (valid.empty() ? "" : ", ") + std::string(n);
  fail<InputError>(where, ": unknown scorer '", name, "' (valid: ", valid, ")");
}

std::string_view scorer_name(Scorer s) {
  for (const auto& [n, v] : kScorers)
    if (v == s) return n;
  fail<Error>("scorer_name: invalid Scorer ", static_cast<int>(s));
}

Scorer default_scorer(std::string_view task) {
  const auto is_any = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), task) != names.end();
  };
  const auto starts = [&](std::initializer_list<std::string_view> prefixes) {
    return std::any_of(prefixes.begin(), prefixes.end(), [&](std::string_view p) { return task.starts_with(p); });
  };
  if (is_any({"niah", "vt", "cwe", "fwe"}) || starts({"niah_", "variable_tracking", "common_words", "freq_words"}))
    return Scorer::kRulerAll;
  if (is_any({"qa_1", "qa_2"})) return Scorer::kRulerPart;
  if (is_any({"qa", "narrativeqa", "qasper", "hotpotqa", "2wikimqa", "musique", "triviaqa"}) || starts({"multifieldqa_"}))
    return Scorer::kF1;
  if (is_any({"gov_report", "qmsum", "multi_news", "vcsum", "samsum"})) return Scorer::kRougeL;
  return Scorer::kExactMatch;
}

std::string ruler_postprocess(std::string_view prediction) {
  std::string out(strip(prediction));
  for (char& c : out)
    if (is_control(c)) c = '\n';
  return std::string(strip(out));
}

std::string normalize_answer(std::string_view s) {
  std::string text;  // lowercase, punctuation removed
  for (char c : s)
    if (!is_punct(c)) text += lower(c);
  std::string out;  // articles removed, whitespace collapsed
  for (const std::string& w : split_words(text)) {
    // Within a whitespace-free word, articles are the maximal runs of word characters that are
    // exactly a, an or the; each becomes a space, which splits the word.
    std::string kept;
    for (std::size_t i = 0; i < w.size();) {
      std::size_t j = i;
      while (j < w.size() && is_word(w[j]) == is_word(w[i])) ++j;
      const std::string_view run(w.data() + i, j - i);
      const bool article = is_word(w[i]) && (run == "a" || run == "an" || run == "the");
      kept += article ? std::string_view(" ") : run;
      i = j;
    }
    for (const std::string& part : split_words(kept)) out += (out.empty() ? "" : " ") + part;
  }
  return out;
}

double task_score(Scorer s, std::string_view prediction, std::span<const std::string> gold) {
  KVSIM_CHECK(!gold.empty(), "task_score: no gold answers");
  switch (s) {
    case Scorer::kRulerAll:
    case Scorer::kRulerPart:
      return ruler_score(s, prediction, gold);
    case Scorer::kExactMatch:
    case Scorer::kF1: {
      const std::string pred = normalize_answer(prediction);
      double best = 0;
      for (const std::string& g : gold) {
        const std::string ref = normalize_answer(g);
        best = std::max(best, s == Scorer::kExactMatch ? (pred == ref ? 1.0 : 0.0)
                                                       : token_f1(split_words(pred), split_words(ref)));
      }
      return best;
    }
    case Scorer::kRougeL: {
      double best = 0;
      for (const std::string& g : gold) best = std::max(best, rouge_l(prediction, g));
      return best;
    }
  }
  fail<Error>("task_score: invalid Scorer ", static_cast<int>(s));
}

void check_gold(Scorer s, std::span<const std::string> gold, const std::string& where) {
  if (gold.empty()) fail<InputError>(where, ": no gold answers");
  for (std::size_t k = 0; k < gold.size(); ++k) check_one_gold(s, gold[k], k, where);
}

}  // namespace kvsim
