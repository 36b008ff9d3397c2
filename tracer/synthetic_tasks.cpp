#include "tracer/synthetic_tasks.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/parse.hpp"
#include "core/rng.hpp"
#include "tracer/inputs.hpp"
#include "tracer/task_words.hpp"

namespace kvsim {

namespace {

// The filler of the "noise" haystack: one line of plain, unrelated statements, repeated
// (RULER's noise haystack is such a line; this wording is kvsim's).
constexpr std::string_view kNoiseLine = "The river is wide. The hills are green. The wind is calm. On we go. Out and home again.";

// Needle depths of the essay haystack, in percent of its sentences: 40 points evenly from 0 to
// 100, rounded (RULER's DEPTHS); each needle takes a different one.
constexpr int kDepthCount = 40;
int depth_percent(int i) { return static_cast<int>(std::lround(100.0 * i / (kDepthCount - 1))); }

// Size of the in-context example of vt (RULER sizes its example to 500 tokens): noise lines,
// or essay words.
constexpr int kVtExampleNoiseLines = 10;
constexpr int kVtExampleEssayWords = 250;

const std::vector<std::pair<std::string, TaskSpec>>& builtin_tasks() {
  static const std::vector<std::pair<std::string, TaskSpec>> tasks = [] {
    auto niah = [](Haystack h, NeedleType k, NeedleType v, int nk, int nv, int nq) {
      TaskSpec s;
      s.kind = TaskKind::kNiah, s.haystack = h, s.key_type = k, s.value_type = v;
      s.num_k = nk, s.num_v = nv, s.num_q = nq;
      return s;
    };
    auto kind = [](TaskKind k) {
      TaskSpec s;
      s.kind = k;
      return s;
    };
    using H = Haystack;
    using N = NeedleType;
    // RULER's scripts/synthetic.yaml.
    return std::vector<std::pair<std::string, TaskSpec>>{
        {"niah_single_1", niah(H::kNoise, N::kWords, N::kNumbers, 1, 1, 1)},
        {"niah_single_2", niah(H::kEssay, N::kWords, N::kNumbers, 1, 1, 1)},
        {"niah_single_3", niah(H::kEssay, N::kWords, N::kUuids, 1, 1, 1)},
        {"niah_multikey_1", niah(H::kEssay, N::kWords, N::kNumbers, 4, 1, 1)},
        {"niah_multikey_2", niah(H::kNeedle, N::kWords, N::kNumbers, 1, 1, 1)},
        {"niah_multikey_3", niah(H::kNeedle, N::kUuids, N::kUuids, 1, 1, 1)},
        {"niah_multivalue", niah(H::kEssay, N::kWords, N::kNumbers, 1, 4, 1)},
        {"niah_multiquery", niah(H::kEssay, N::kWords, N::kNumbers, 1, 1, 4)},
        {"vt", kind(TaskKind::kVariableTracking)},
        {"cwe", kind(TaskKind::kCommonWords)},
        {"fwe", kind(TaskKind::kFrequentWords)},
    };
  }();
  return tasks;
}

int parse_int(const std::string& task, const std::string& key, const std::string& value, int lo) {
  const std::optional<long> v = parse_long(value);
  if (!v || *v < lo || *v > std::numeric_limits<int>::max())
    fail<InputError>("task ", task, ": ", key, "=", value, " is not an integer >= ", lo);
  return static_cast<int>(*v);
}

NeedleType parse_needle_type(const std::string& task, const std::string& key, const std::string& value) {
  if (value == "words") return NeedleType::kWords;
  if (value == "numbers") return NeedleType::kNumbers;
  if (value == "uuids") return NeedleType::kUuids;
  fail<InputError>("task ", task, ": ", key, "=", value, " is not one of words, numbers, uuids");
}

// --- random pieces ---------------------------------------------------------------------------

template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {  // Fisher-Yates
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

// k distinct integers of [0, n), in random order.
std::vector<int> sample_distinct(int n, int k, Rng& rng) {
  std::vector<int> all(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  for (int i = 0; i < k; ++i) std::swap(all[static_cast<std::size_t>(i)], all[static_cast<std::size_t>(i) + rng.below(n - i)]);
  all.resize(static_cast<std::size_t>(k));
  return all;
}

std::string random_value(NeedleType type, Rng& rng) {
  switch (type) {
    case NeedleType::kNumbers:  // 7 digits
      return std::to_string(1000000 + rng.below(9000000));
    case NeedleType::kWords: {  // adjective-noun
      const auto adj = task_adjectives();
      const auto noun = task_nouns();
      return std::string(adj[rng.below(adj.size())]) + "-" + std::string(noun[rng.below(noun.size())]);
    }
    case NeedleType::kUuids: {  // a version-4 UUID of 122 random bits
      std::uint64_t hi = rng.next_u64(), lo = rng.next_u64();
      hi = (hi & ~0xF000ull) | 0x4000ull;                             // version 4
      lo = (lo & ~(0xC000ull << 48)) | (0x8000ull << 48);             // variant 10xx
      char buf[40];
      std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx", static_cast<unsigned long long>(hi >> 32),
                    static_cast<unsigned long long>((hi >> 16) & 0xFFFF), static_cast<unsigned long long>(hi & 0xFFFF),
                    static_cast<unsigned long long>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
      return buf;
    }
  }
  return {};
}

// n distinct values (keys must be told apart).
std::vector<std::string> distinct_values(NeedleType type, int n, Rng& rng, const std::set<std::string>& avoid = {}) {
  std::vector<std::string> out;
  std::set<std::string> seen = avoid;
  while (static_cast<int>(out.size()) < n) {
    std::string v = random_value(type, rng);
    if (seen.insert(v).second) out.push_back(std::move(v));
  }
  return out;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

// "a", "a and b", "a, b, and c".
std::string list_phrase(const std::vector<std::string>& items) {
  if (items.size() == 1) return items[0];
  std::vector<std::string> head(items.begin(), items.end() - 1);
  return join(head, ", ") + (items.size() > 2 ? "," : "") + " and " + items.back();
}

// --- haystacks -------------------------------------------------------------------------------

struct Context {
  std::vector<std::string_view> essay_words;  // the essays split on whitespace
  std::vector<std::string> cwe_words;         // adjectives, nouns, verbs: sorted, no repeats
  int length = 0;
};

// The first n words of the essays (repeated from the start when n exceeds them), split into
// sentences after words ending in . ? or ! (a closing quote or bracket may follow).
std::vector<std::string> essay_sentences(const Context& ctx, int n) {
  std::vector<std::string> out;
  std::string cur;
  for (int i = 0; i < n; ++i) {
    const std::string_view w = ctx.essay_words[static_cast<std::size_t>(i) % ctx.essay_words.size()];
    if (!cur.empty()) cur += ' ';
    cur += w;
    std::size_t end = w.find_last_not_of("\"')]");
    if (end != std::string_view::npos && (w[end] == '.' || w[end] == '?' || w[end] == '!')) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// Essay of n words with `items` inserted in order between sentences, each at a different
// depth (RULER: a sentence index = count * depth / 100).
std::string essay_with(const Context& ctx, int n, const std::vector<std::string>& items, Rng& rng) {
  const std::vector<std::string> sents = essay_sentences(ctx, n);
  std::vector<int> at;
  for (int d : sample_distinct(kDepthCount, static_cast<int>(items.size()), rng))
    at.push_back(static_cast<int>(static_cast<long long>(sents.size()) * depth_percent(d) / 100));
  std::sort(at.begin(), at.end());
  std::vector<std::string> parts;
  std::size_t s = 0;
  for (std::size_t k = 0; k <= items.size(); ++k) {
    const std::size_t until = k < items.size() ? static_cast<std::size_t>(at[k]) : sents.size();
    for (; s < until; ++s) parts.push_back(sents[s]);
    if (k < items.size()) parts.push_back(items[k]);
  }
  return join(parts, " ");
}

// `lines` with `items` inserted in order before distinct random lines of it (RULER's noise
// and needle haystacks); needs at least as many lines as items.
std::vector<std::string> insert_lines(std::vector<std::string> lines, const std::vector<std::string>& items, Rng& rng) {
  std::vector<int> at = sample_distinct(static_cast<int>(lines.size()), static_cast<int>(items.size()), rng);
  std::sort(at.begin(), at.end());
  for (std::size_t k = 0; k < items.size(); ++k)  // the k items already in shift each position by k
    lines.insert(lines.begin() + at[k] + static_cast<std::ptrdiff_t>(k), items[k]);
  return lines;
}

std::vector<std::string> noise_lines(int n) { return std::vector<std::string>(static_cast<std::size_t>(n), std::string(kNoiseLine)); }

// --- tasks -----------------------------------------------------------------------------------

struct Built {
  std::string input, answer_prefix;
  std::vector<std::string> outputs;
};

const char* plural_name(NeedleType t) {
  switch (t) {
    case NeedleType::kWords: return "words";
    case NeedleType::kNumbers: return "numbers";
    case NeedleType::kUuids: return "uuids";
  }
  return "";
}

Built build_niah(const TaskSpec& s, const Context& ctx, Rng& rng, int n) {
  const int num_k = std::max(s.num_k, s.num_q);  // every asked key is in the text
  const std::string vs = plural_name(s.value_type);
  const std::string v = vs.substr(0, vs.size() - 1);
  auto needle = [&](const std::string& key, const std::string& value) {
    return "One special magic " + v + " for " + key + " is: " + value + ".";
  };
  const std::vector<std::string> keys = distinct_values(s.key_type, num_k, rng);
  std::vector<std::vector<std::string>> values;
  std::vector<std::string> needles;
  for (const std::string& key : keys) {
    values.push_back(distinct_values(s.value_type, s.num_v, rng));
    for (const std::string& value : values.back()) needles.push_back(needle(key, value));
  }
  shuffle(needles, rng);
  std::string context;
  if (s.haystack == Haystack::kEssay) {
    context = essay_with(ctx, n, needles, rng);
  } else {
    std::vector<std::string> lines;
    if (s.haystack == Haystack::kNoise) {
      lines = noise_lines(n);
    } else {  // distractor needles: other keys, random values
      const std::set<std::string> taken(keys.begin(), keys.end());
      for (const std::string& other : distinct_values(s.key_type, n, rng, taken))
        lines.push_back(needle(other, random_value(s.value_type, rng)));
    }
    lines = insert_lines(std::move(lines), needles, rng);
    context = join(lines, "\n");
  }
  std::vector<std::string> asked;
  Built b;
  for (int i : sample_distinct(num_k, s.num_q, rng)) {
    asked.push_back(keys[static_cast<std::size_t>(i)]);
    for (const std::string& value : values[static_cast<std::size_t>(i)]) b.outputs.push_back(value);
  }
  const std::string query = list_phrase(asked);
  if (s.num_q * s.num_v == 1) {
    b.input = "A special magic " + v + " is hidden in the text below. Keep it in mind: you will be asked for this " + v +
              " afterwards.\n" + context + "\nWhich special magic " + v + " for " + query + " is given in the text above?";
    b.answer_prefix = "The special magic " + v + " for " + query + " given in the text above is";
  } else {
    b.input = "Some special magic " + vs + " are hidden in the text below. Keep them in mind: you will be asked for these " +
              vs + " afterwards.\n" + context + "\nWhich special magic " + vs + " for " + query +
              " are given in the text above?";
    b.answer_prefix = "The special magic " + vs + " for " + query + " given in the text above are";
  }
  return b;
}

std::string random_variable(Rng& rng) {  // five capital letters
  std::string s(5, 'A');
  for (char& c : s) c = static_cast<char>('A' + rng.below(26));
  return s;
}

// One vt instance over a haystack of n units; the answer is the first chain's variables.
Built build_vt_instance(const TaskSpec& s, const Context& ctx, Rng& rng, int n) {
  std::set<std::string> seen;
  std::vector<std::vector<std::string>> vars(static_cast<std::size_t>(s.chains)), chains(vars.size());
  std::string first_value;
  for (std::size_t c = 0; c < vars.size(); ++c) {
    while (static_cast<int>(vars[c].size()) < s.hops + 1) {
      std::string name = random_variable(rng);
      if (seen.insert(name).second) vars[c].push_back(std::move(name));
    }
    const std::string value = std::to_string(10000 + rng.below(90000));
    if (c == 0) first_value = value;
    chains[c].push_back("VAR " + vars[c][0] + " = " + value);
    for (int j = 0; j < s.hops; ++j)
      chains[c].push_back("VAR " + vars[c][static_cast<std::size_t>(j) + 1] + " = VAR " + vars[c][static_cast<std::size_t>(j)]);
  }
  std::string context;
  if (s.haystack == Haystack::kEssay) {
    // The chains interleaved at random, each chain's statements in order.
    std::vector<std::string> flat;
    std::vector<std::size_t> next(chains.size(), 0);
    for (std::size_t left = chains.size() * chains[0].size(); left > 0; --left) {
      std::vector<std::size_t> open;
      for (std::size_t c = 0; c < chains.size(); ++c)
        if (next[c] < chains[c].size()) open.push_back(c);
      const std::size_t c = open[rng.below(open.size())];
      flat.push_back(chains[c][next[c]++] + ".");
    }
    context = essay_with(ctx, n, flat, rng);
  } else {
    std::vector<std::string> lines = noise_lines(n);
    for (const auto& chain : chains) lines = insert_lines(std::move(lines), chain, rng);
    context = join(lines, "\n");
  }
  Built b;
  b.input = "Keep track of the chains of variable assignments hidden in the text below.\n\n" + context +
            "\nQuestion: Which variables are assigned the value " + first_value + " in the text above?";
  b.answer_prefix = "Answer: Following the chains of assignments in the text above, " + std::to_string(s.hops + 1) +
                    " variables hold the value " + first_value + ". They are:";
  b.outputs = vars[0];
  return b;
}

Built build_vt(const TaskSpec& s, const Context& ctx, Rng& rng, int n) {
  // One solved example first (RULER's one-shot), from its own stream so that the task's
  // content does not depend on it.
  Rng example_rng(rng.next_u64());
  std::string examples;
  for (int e = 0; e < s.fewshot; ++e) {
    const Built ex = build_vt_instance(
        s, ctx, example_rng, s.haystack == Haystack::kEssay ? kVtExampleEssayWords : kVtExampleNoiseLines);
    examples += ex.input + " " + ex.answer_prefix + " " + join(ex.outputs, " ") + "\n";
  }
  Built b = build_vt_instance(s, ctx, rng, n);
  b.input = examples + b.input;
  return b;
}

// cwe's list of n distinct words (common first): from the word lists, or from adjective-noun
// pairs when n exceeds them (RULER falls back to a larger English list).
std::vector<std::string> cwe_words(const Context& ctx, int n, Rng& rng) {
  std::vector<std::string> out;
  if (n <= static_cast<int>(ctx.cwe_words.size())) {
    for (int i : sample_distinct(static_cast<int>(ctx.cwe_words.size()), n, rng)) out.push_back(ctx.cwe_words[static_cast<std::size_t>(i)]);
    return out;
  }
  return distinct_values(NeedleType::kWords, n, rng);
}

// A numbered list "1. w 2. w ..." of the n_common first words repeated `common` times and the
// others `other` times, in random order.
std::string cwe_list(const std::vector<std::string>& words, int n_common, int common, int other, Rng& rng) {
  std::vector<std::string> list;
  for (std::size_t i = 0; i < words.size(); ++i)
    for (int r = 0; r < (static_cast<int>(i) < n_common ? common : other); ++r) list.push_back(words[i]);
  shuffle(list, rng);
  std::string out;
  for (std::size_t i = 0; i < list.size(); ++i) out += (i ? " " : "") + std::to_string(i + 1) + ". " + list[i];
  return out;
}

std::string numbered(const std::vector<std::string>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) out += (i ? " " : "") + std::to_string(i + 1) + ". " + words[i];
  return out;
}

// Repeats of the common and the other words: given, or RULER's by length (below 4096 tokens 6
// and 1, from 4096 on 30 and 3).
std::pair<int, int> cwe_repeats(const TaskSpec& s, int length) {
  return {s.freq_cw > 0 ? s.freq_cw : length < 4096 ? 6 : 30, s.freq_ucw > 0 ? s.freq_ucw : length < 4096 ? 1 : 3};
}

Built build_cwe(const TaskSpec& s, const Context& ctx, Rng& rng, int n) {
  // RULER's solved example: 20 words (common ones 3 times, others once) below 4096 tokens, 40
  // words (10 and 3 times) from 4096 on.
  const bool short_task = ctx.length < 4096;
  const auto [common, other] = cwe_repeats(s, ctx.length);
  auto question = [&](const std::string& list) {
    return "Here is a numbered list of words; some of the words occur more often than the others. Remember the ones that "
           "occur most often.\n" +
           list + "\nQuestion: Which " + std::to_string(s.num_cw) + " words occur most often in the list above?";
  };
  const std::string prefix = "Answer: The " + std::to_string(s.num_cw) + " words that occur most often in the list are:";
  std::string examples;
  for (int e = 0; e < s.fewshot; ++e) {
    const std::vector<std::string> ex_words = cwe_words(ctx, std::max(short_task ? 20 : 40, s.num_cw), rng);
    const std::string ex_list = cwe_list(ex_words, s.num_cw, short_task ? 3 : 10, short_task ? 1 : 3, rng);
    examples += question(ex_list) + " " + prefix + " " +
                numbered(std::vector<std::string>(ex_words.begin(), ex_words.begin() + s.num_cw)) + "\n";
  }
  const std::vector<std::string> words = cwe_words(ctx, n, rng);
  Built b;
  b.input = examples + question(cwe_list(words, s.num_cw, common, other, rng));
  b.answer_prefix = prefix;
  b.outputs.assign(words.begin(), words.begin() + s.num_cw);
  return b;
}

double zeta(double a) {  // Riemann zeta for a > 1: a partial sum and its Euler-Maclaurin tail
  constexpr int kTerms = 1000;
  double sum = 0;
  for (int k = 1; k <= kTerms; ++k) sum += std::pow(k, -a);
  return sum + std::pow(kTerms, 1 - a) / (a - 1) - 0.5 * std::pow(kTerms, -a);
}

// fwe: count of the rank-k word (k from 1) among n words, Zipf with exponent a (RULER).
int zipf_count(int n, int k, double a) { return static_cast<int>(n * std::pow(k, -a) / zeta(a)); }

int fwe_vocab_size(int length) { return std::max(5, length / 50); }  // RULER: length / 50

Built build_fwe(const TaskSpec& s, const Context& ctx, Rng& rng, int n) {
  const int vocab_size = fwe_vocab_size(ctx.length);
  std::set<std::string> seen;
  std::vector<std::string> vocab;
  while (static_cast<int>(vocab.size()) < vocab_size) {
    std::string w(6, 'a');
    for (char& c : w) c = static_cast<char>('a' + rng.below(26));
    if (seen.insert(w).second) vocab.push_back(std::move(w));
  }
  vocab[0] = "...";  // the most frequent "word" is noise the question says to ignore
  const double z = zeta(s.alpha);
  std::vector<std::string> text;
  for (std::size_t k = 0; k < vocab.size(); ++k) {
    const int count = static_cast<int>(n * std::pow(static_cast<double>(k + 1), -s.alpha) / z);
    for (int r = 0; r < count; ++r) text.push_back(vocab[k]);
  }
  shuffle(text, rng);
  Built b;
  b.input = "Read the coded text below and keep count of how often each coded word occurs; find the three coded words "
            "that occur most often. " +
            join(text, " ") +
            "\nQuestion: Give no explanation, and ignore the dots '....'. Which three coded words occur most often in the "
            "coded text above?";
  b.answer_prefix = "Answer: The three coded words that occur most often in the text above are:";
  b.outputs.assign(vocab.begin() + 1, vocab.begin() + 4);
  return b;
}

Built build(const TaskSpec& s, const Context& ctx, std::uint64_t seed, int n) {
  Rng rng(seed);  // fresh per call: a sample's content depends only on its seed and n
  switch (s.kind) {
    case TaskKind::kNiah: return build_niah(s, ctx, rng, n);
    case TaskKind::kVariableTracking: return build_vt(s, ctx, rng, n);
    case TaskKind::kCommonWords: return build_cwe(s, ctx, rng, n);
    case TaskKind::kFrequentWords: return build_fwe(s, ctx, rng, n);
  }
  return {};
}

// The smallest haystack a task is built with (units: noise lines, essay words, distractor
// needles, distinct words, or fwe's word count).
int min_fill(const TaskSpec& s) {
  switch (s.kind) {
    case TaskKind::kNiah: return s.haystack == Haystack::kEssay ? 1 : std::max(s.num_k, s.num_q) * s.num_v;
    case TaskKind::kVariableTracking: return s.haystack == Haystack::kEssay ? 1 : s.hops + 1;
    case TaskKind::kCommonWords: return s.num_cw;
    case TaskKind::kFrequentWords: {
      // Enough words that the three answers (ranks 2-4) each occur more often than rank 5.
      int n = 1;
      while (!(zipf_count(n, 4, s.alpha) > zipf_count(n, 5, s.alpha) && zipf_count(n, 3, s.alpha) > zipf_count(n, 4, s.alpha) &&
               zipf_count(n, 2, s.alpha) > zipf_count(n, 3, s.alpha)))
        ++n;
      return n;
    }
  }
  return 1;
}

// The largest n >= lo with fits(n), given that fits(lo) holds, searching up from `guess` (the
// previous sample's answer) by doubling steps, then bisecting. Only n for which fits(n) was
// seen true is returned.
template <typename Fits>
int largest_fitting(int lo, int guess, const Fits& fits) {
  int hi = -1;  // smallest seen not to fit
  int step = std::max(1, guess / 64);
  if (guess > lo) {
    if (fits(guess)) {
      lo = guess;
    } else {
      hi = guess;
      for (int probe = guess - step; probe > lo; probe = hi - step) {
        if (fits(probe)) {
          lo = probe;
          break;
        }
        hi = probe;
        step *= 2;
      }
    }
  }
  step = std::max(1, guess / 64);
  while (hi < 0) {
    if (fits(lo + step)) {
      lo += step;
      step *= 2;
    } else {
      hi = lo + step;
    }
  }
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

void check_spec(const TaskSpec& s) {
  const std::string& t = s.name;
  if (s.kind == TaskKind::kNiah) {
    if (s.num_k < 1 || s.num_v < 1 || s.num_q < 1) fail<InputError>("task ", t, ": num_k, num_v and num_q must be >= 1");
    if (s.haystack == Haystack::kEssay && std::max(s.num_k, s.num_q) * s.num_v > kDepthCount)
      fail<InputError>("task ", t, ": an essay holds at most ", kDepthCount, " needles (one per depth)");
  }
  if (s.kind == TaskKind::kVariableTracking) {
    if (s.haystack == Haystack::kNeedle) fail<InputError>("task ", t, ": vt takes haystack=noise or essay");
    if (s.haystack == Haystack::kEssay && s.chains * (s.hops + 1) > kDepthCount)
      fail<InputError>("task ", t, ": an essay holds at most ", kDepthCount, " assignments (one per depth)");
  }
  if (s.kind == TaskKind::kFrequentWords && !(s.alpha > 1.0)) fail<InputError>("task ", t, ": alpha must be > 1");
}

}  // namespace

std::vector<std::string> task_names() {
  std::vector<std::string> out;
  for (const auto& [name, spec] : builtin_tasks()) out.push_back(name);
  return out;
}

TaskSpec parse_task_spec(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ':');) parts.push_back(part);
  const std::string base = parts.empty() ? std::string() : parts[0];
  const auto& tasks = builtin_tasks();
  const auto it = std::find_if(tasks.begin(), tasks.end(), [&](const auto& t) { return t.first == base; });
  if (it == tasks.end()) {
    std::string known;
    for (const auto& [name, spec] : tasks) known += (known.empty() ? "" : ", ") + name;
    fail<InputError>("unknown task '", base, "' (known: ", known, ")");
  }
  TaskSpec s = it->second;
  s.name = text;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::size_t eq = parts[i].find('=');
    const std::string key = parts[i].substr(0, eq);
    const std::string value = eq == std::string::npos ? std::string() : parts[i].substr(eq + 1);
    if (eq == std::string::npos) fail<InputError>("task ", text, ": '", parts[i], "' is not key=value");
    if (key == "haystack") {
      if (value == "noise") s.haystack = Haystack::kNoise;
      else if (value == "essay") s.haystack = Haystack::kEssay;
      else if (value == "needle" && s.kind == TaskKind::kNiah) s.haystack = Haystack::kNeedle;
      else fail<InputError>("task ", text, ": haystack=", value, " is not one of noise, essay", s.kind == TaskKind::kNiah ? ", needle" : "");
    } else if (key == "key_type" && s.kind == TaskKind::kNiah) {
      s.key_type = parse_needle_type(text, key, value);
    } else if (key == "value_type" && s.kind == TaskKind::kNiah) {
      s.value_type = parse_needle_type(text, key, value);
    } else if ((key == "num_k" || key == "num_v" || key == "num_q") && s.kind == TaskKind::kNiah) {
      (key == "num_k" ? s.num_k : key == "num_v" ? s.num_v : s.num_q) = parse_int(text, key, value, 1);
    } else if ((key == "chains" || key == "hops") && s.kind == TaskKind::kVariableTracking) {
      (key == "chains" ? s.chains : s.hops) = parse_int(text, key, value, key == "chains" ? 1 : 0);
    } else if ((key == "freq_cw" || key == "freq_ucw" || key == "num_cw") && s.kind == TaskKind::kCommonWords) {
      (key == "freq_cw" ? s.freq_cw : key == "freq_ucw" ? s.freq_ucw : s.num_cw) = parse_int(text, key, value, 1);
    } else if (key == "fewshot" && (s.kind == TaskKind::kVariableTracking || s.kind == TaskKind::kCommonWords)) {
      s.fewshot = parse_int(text, key, value, 0);
    } else if (key == "alpha" && s.kind == TaskKind::kFrequentWords) {
      const std::optional<double> alpha = parse_double(value);
      if (!alpha) fail<InputError>("task ", text, ": alpha=", value, " is not a number");
      s.alpha = *alpha;
    } else {
      fail<InputError>("task ", text, ": unknown parameter '", key,
                       "' for this task (niah: haystack, key_type, value_type, num_k, num_v, num_q; vt: haystack, "
                       "chains, hops, fewshot; cwe: freq_cw, freq_ucw, num_cw, fewshot; fwe: alpha)");
    }
  }
  check_spec(s);
  return s;
}

std::vector<TaskSample> generate_task_samples(const TaskSpec& spec, const Tokenizer& tok, const TaskOptions& o) {
  if (o.n <= 0) fail<InputError>("the number of samples must be positive, got ", o.n);
  if (o.length <= 0) fail<InputError>("the length must be positive, got ", o.length);
  if (spec.kind == TaskKind::kCommonWords) {
    const auto [common, other] = cwe_repeats(spec, o.length);
    if (other >= common)
      fail<InputError>("task ", spec.name, ": the other words repeat ", other, " times, the common ones ", common,
                       ": freq_ucw must be below freq_cw");
  }
  const bool essay = spec.haystack == Haystack::kEssay &&
                     (spec.kind == TaskKind::kNiah || spec.kind == TaskKind::kVariableTracking);
  Context ctx;
  ctx.length = o.length;
  if (essay) {
    std::size_t p = 0;
    const std::string& e = o.essays;
    while (true) {
      p = e.find_first_not_of(" \t\r\n", p);
      if (p == std::string::npos) break;
      std::size_t q = e.find_first_of(" \t\r\n", p);
      if (q == std::string::npos) q = e.size();
      ctx.essay_words.emplace_back(e.data() + p, q - p);
      p = q;
    }
    if (ctx.essay_words.empty())
      fail<InputError>("task ", spec.name, ": needs an essay haystack (pass --haystack with essay text files)");
  }
  if (spec.kind == TaskKind::kCommonWords) {
    for (auto list : {task_adjectives(), task_nouns(), task_verbs()})
      for (std::string_view w : list) ctx.cwe_words.emplace_back(w);
    std::sort(ctx.cwe_words.begin(), ctx.cwe_words.end());
    ctx.cwe_words.erase(std::unique(ctx.cwe_words.begin(), ctx.cwe_words.end()), ctx.cwe_words.end());
  }
  const std::string_view name = spec.name;
  const std::uint64_t task_seed = derive_seed(o.seed, hash_bytes(std::as_bytes(std::span(name.data(), name.size()))));
  auto tokens_of = [&](const Built& b) {
    return static_cast<int>(tok.encode(prompt_text(b.input, b.answer_prefix, o.chat), true).size());
  };
  const int lo = min_fill(spec);
  std::vector<TaskSample> out;
  int guess = lo;
  for (int i = 0; i < o.n; ++i) {
    const std::uint64_t seed = derive_seed(task_seed, static_cast<std::uint64_t>(i));
    if (const int shortest = tokens_of(build(spec, ctx, seed, lo)); shortest > o.length)
      fail<InputError>("task ", spec.name, ": length ", o.length, " is too small: the shortest prompt of this task is ",
                       shortest, " tokens");
    const int n = largest_fitting(lo, guess, [&](int k) { return tokens_of(build(spec, ctx, seed, k)) <= o.length; });
    guess = n;
    Built b = build(spec, ctx, seed, n);
    TaskSample s;
    s.length = tokens_of(b);
    s.input = std::move(b.input);
    s.outputs = std::move(b.outputs);
    s.task = spec.name;
    s.answer_prefix = std::move(b.answer_prefix);
    s.seed = o.seed;
    s.index = i;
    out.push_back(std::move(s));
  }
  return out;
}

std::string load_essays(const std::filesystem::path& dir_or_file) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(dir_or_file, ec)) {
    for (const auto& entry : fs::directory_iterator(dir_or_file, ec)) {
      const std::string stem = entry.path().stem().string();
      if (entry.is_regular_file() && entry.path().extension() == ".txt" && stem.rfind("LICENSE", 0) != 0 &&
          stem.rfind("README", 0) != 0)
        files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) fail<InputError>(dir_or_file.string(), ": no essay .txt files in this directory");
  } else if (fs::is_regular_file(dir_or_file, ec)) {
    files.push_back(dir_or_file);
  } else {
    fail<InputError>(dir_or_file.string(), ": no such haystack file or directory");
  }
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) fail<InputError>(f.string(), ": cannot read haystack file");
    std::ostringstream s;
    s << in.rdbuf();
    text += s.str();
    text += '\n';
  }
  return text;
}

std::string task_sample_json(const TaskSample& s) {
  nlohmann::ordered_json j;
  j["input"] = s.input;
  j["outputs"] = s.outputs;
  j["task"] = s.task;
  j["answer_prefix"] = s.answer_prefix;
  j["length"] = s.length;
  j["seed"] = s.seed;
  j["index"] = s.index;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void write_task_samples(const std::filesystem::path& out, const std::vector<TaskSample>& samples) {
  std::filesystem::path tmp = out;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail<InputError>(tmp.string(), ": cannot write");
    for (const TaskSample& s : samples) f << task_sample_json(s) << '\n';
    f.close();
    if (!f) fail<InputError>(tmp.string(), ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, out, ec);
  if (ec) fail<InputError>(tmp.string(), ": cannot rename to ", out.string(), ": ", ec.message());
}

}  // namespace kvsim
