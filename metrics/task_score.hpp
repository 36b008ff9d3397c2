#pragma once
// Task scores of generated text against gold answers, as the long-context benchmarks score
// them, in [0, 1] (the benchmarks print 100×). Each rule below was read from the benchmark's
// own evaluation code; the score of a prediction is the best over its gold answers unless
// said otherwise.
//
// ruler_all, ruler_part — RULER (NVIDIA/RULER, scripts/eval/synthetic/constants.py,
//   string_match_all / string_match_part). The prediction is first post-processed as
//   scripts/eval/evaluate.py postprocess_pred does: strip surrounding whitespace, replace every
//   control character \x00-\x1f by '\n', strip again. Gold answers are used as given. Then
//     ruler_all  = mean over gold r of [lower(r) is a substring of lower(prediction)]
//     ruler_part = max  over gold r of the same indicator.
// exact_match — SQuAD's exact_match_score: [normalize_answer(prediction) ==
//   normalize_answer(gold)].
// f1 — LongBench qa_f1_score (THUDM/LongBench, LongBench/metrics.py): the whitespace tokens of
//   normalize_answer(prediction) and of normalize_answer(gold); common = size of the multiset
//   intersection; 0 when common = 0, else P = common/|pred|, R = common/|gold|, F1 = 2PR/(P+R).
//   normalize_answer (SQuAD, LongBench): lowercase; delete the 32 ASCII punctuation characters
//   (Python string.punctuation); replace each whole word a, an, the by a space (regex
//   \b(a|an|the)\b); collapse whitespace runs to one space and trim.
// rouge_l — LongBench rouge_score: the "f" of "rouge-l" from the `rouge` package (pltrdy/rouge
//   1.0.1, the version LongBench's unpinned requirement installs), which is ROUGE-L at summary
//   level, not the sentence-level LCS F1. We replicate that package's rule exactly:
//   - no lowercasing and no punctuation removal: tokens are case-sensitive;
//   - each text is split into sentences at every '.' (the periods vanish), pieces of length 0
//     dropped; a sentence's tokens are its whitespace-separated words, or one empty word "" when
//     it is whitespace only (the package's " ".join(s.split()).split(" "));
//   - "exclusive" (the default): m = number of distinct words of the gold, n = of the
//     prediction; for every (gold sentence r_i, prediction sentence c_j) the LCS of the two word
//     sequences is reconstructed (backtracking from the end: take a match, else move up in r_i
//     when that cell is strictly larger, else left in c_j) and its words are added to one set U;
//     llcs = |U|, R = llcs/m, P = llcs/n, F = 2·(P·R)/(P + R + 1e-8) (so identical texts give
//     2/(2 + 1e-8), not exactly 1);
//   - a prediction with no sentence (empty, or only periods) scores 0: LongBench catches the
//     package's ValueError and returns 0.
//   Known difference: Python's recursion limit makes the package (hence LongBench) fail, and score
//   0, on a sentence pair whose lengths add up to about 1000 words; we score such pairs.
//
// Text is UTF-8, but only ASCII is interpreted: lowercasing is ASCII-only (Python's lower() also
// lowercases other scripts), whitespace is ASCII whitespace as Python's str.split() sees it
// (space, \t \n \v \f \r and \x1c-\x1f; not U+00A0 and the like), and for the article rule
// bytes ≥ 0x80 count as word characters (Python's \w holds non-ASCII letters, but also not
// non-ASCII punctuation such as "—"). Chinese tasks (LongBench multifieldqa_zh, vcsum, dureader)
// segment with jieba first; we do not, so their scores are not comparable with LongBench's.
//
// Also left to the caller: LongBench keeps only the first line of the prediction for trec,
// triviaqa, samsum and lsht (prediction.lstrip('\n').split('\n')[0]) before scoring.
#include <span>
#include <string>
#include <string_view>

namespace kvsim {

enum class Scorer { kRulerAll, kRulerPart, kExactMatch, kF1, kRougeL };

// "ruler_all", "ruler_part", "exact_match", "f1", "rouge_l"; anything else is an InputError
// naming `where` and listing the valid names.
Scorer parse_scorer(std::string_view name, const std::string& where);
std::string_view scorer_name(Scorer s);

// The scorer a benchmark uses for a task (kvsim names a task after its input file's stem):
//   RULER niah, niah_*, vt, variable_tracking*, cwe, fwe, common_words*, freq_words* → ruler_all
//   RULER qa_1, qa_2 (constants.py scores task "qa" with string_match_part)        → ruler_part
//   qa, LongBench narrativeqa, qasper, multifieldqa_*, hotpotqa, 2wikimqa, musique,
//     triviaqa (qa_f1_score)                                                         → f1
//   LongBench gov_report, qmsum, multi_news, vcsum, samsum (rouge_score)             → rouge_l
//   anything else                                                                    → exact_match
Scorer default_scorer(std::string_view task);

// Score of one prediction in [0, 1]. gold must be non-empty (check_gold first).
double task_score(Scorer s, std::string_view prediction, std::span<const std::string> gold);

// Refuses malformed gold answers before any generation starts, with one InputError naming
// `where`: no gold answer; a gold answer that is empty, whitespace only, or holds a NUL byte;
// for exact_match and f1 one that normalize_answer empties (e.g. "the ."); for rouge_l one with
// no word outside '.' and whitespace; for ruler_* one holding a control character other than
// '\n' (the prediction's are all turned into '\n', so it could never match).
void check_gold(Scorer s, std::span<const std::string> gold, const std::string& where);

// The building blocks, exposed for tests.
std::string normalize_answer(std::string_view s);         // SQuAD/LongBench rule above
std::string ruler_postprocess(std::string_view prediction);  // RULER's postprocess_pred

}  // namespace kvsim
