// Task scorers (RULER string match, SQuAD exact match, LongBench QA F1 and ROUGE-L) pinned to
// examples computed by hand from the definitions in metrics/task_score.hpp; the ROUGE-L values
// were also checked against the `rouge` package 1.0.1 through LongBench's rouge_score. Then
// check_gold's refusals and the bootstrap CIs (metrics/bootstrap.hpp).
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "metrics/bootstrap.hpp"
#include "metrics/task_score.hpp"

using namespace kvsim;

namespace {

using Gold = std::vector<std::string>;

double score(Scorer s, std::string_view prediction, const Gold& gold) { return task_score(s, prediction, gold); }

}  // namespace

TEST_CASE("task_score: scorer names round-trip, unknown names list the valid ones", "[task_score]") {
  for (const char* name : {"ruler_all", "ruler_part", "exact_match", "f1", "rouge_l"})
    CHECK(scorer_name(parse_scorer(name, "cfg")) == name);
  CHECK_THROWS_AS(parse_scorer("rouge", "sweep.json: scorer"), InputError);
  CHECK_THROWS_WITH(parse_scorer("rouge", "sweep.json: scorer"),
                    Catch::Contains("sweep.json: scorer") && Catch::Contains("'rouge'") &&
                        Catch::Contains("ruler_all, ruler_part, exact_match, f1, rouge_l"));
  CHECK_THROWS_AS(parse_scorer("F1", "x"), InputError);  // names are exact
}

TEST_CASE("task_score: default scorer per task", "[task_score]") {
  for (const char* t : {"niah", "niah_single_1", "niah_multikey_3", "vt", "variable_tracking", "cwe", "fwe",
                        "common_words_extraction", "freq_words_extraction"})
    CHECK(default_scorer(t) == Scorer::kRulerAll);
  CHECK(default_scorer("qa_1") == Scorer::kRulerPart);
  CHECK(default_scorer("qa_2") == Scorer::kRulerPart);
  for (const char* t : {"qa", "narrativeqa", "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique", "triviaqa"})
    CHECK(default_scorer(t) == Scorer::kF1);
  for (const char* t : {"gov_report", "qmsum", "multi_news", "vcsum", "samsum"}) CHECK(default_scorer(t) == Scorer::kRougeL);
  for (const char* t : {"tinystories", "passage_count", "vtx", "niahx", ""}) CHECK(default_scorer(t) == Scorer::kExactMatch);
}

TEST_CASE("task_score: RULER string_match_all and string_match_part", "[task_score]") {
  const Gold gold = {"1234567", "7654321"};
  // One of the two needles appears: all = (1 + 0) / 2, part = max(1, 0).
  const std::string pred = "The special magic numbers are: 1234567 and 42.";
  CHECK(score(Scorer::kRulerAll, pred, gold) == 0.5);
  CHECK(score(Scorer::kRulerPart, pred, gold) == 1.0);
  CHECK(score(Scorer::kRulerAll, "7654321, 1234567", gold) == 1.0);
  CHECK(score(Scorer::kRulerPart, "none here", gold) == 0.0);
  // Case-insensitive both ways, substring anywhere.
  CHECK(score(Scorer::kRulerAll, "the answer is PARIS!", Gold{"Paris"}) == 1.0);
  CHECK(score(Scorer::kRulerAll, "berlin", Gold{"BERLIN", "Bonn"}) == 0.5);
  // postprocess_pred: strip, control characters -> '\n', strip again.
  CHECK(ruler_postprocess("  a\tb\x01 ") == "a\nb");
  CHECK(ruler_postprocess("\x02\x03key\x1f\x1f") == "key");
  CHECK(score(Scorer::kRulerAll, "x a\tb y", Gold{"a\nb"}) == 1.0);  // the tab became '\n'
}

TEST_CASE("task_score: SQuAD/LongBench normalize_answer and exact match", "[task_score]") {
  CHECK(normalize_answer("The Eiffel Tower!") == "eiffel tower");
  CHECK(normalize_answer("  An apple,\n a day. ") == "apple day");
  CHECK(normalize_answer("the theory of a-b") == "theory of ab");  // whole words only; '-' deleted
  CHECK(normalize_answer("(the)cat") == "thecat");  // punctuation goes before articles
  CHECK(normalize_answer("the\x01" "cat") == "\x01" "cat");  // \x01: neither \w nor space, a word boundary
  CHECK(normalize_answer("the .").empty());
  // "The Eiffel Tower." and "eiffel tower" both normalise to "eiffel tower".
  CHECK(score(Scorer::kExactMatch, "The Eiffel Tower.", Gold{"eiffel tower"}) == 1.0);
  CHECK(score(Scorer::kExactMatch, "Eiffel Tower in Paris", Gold{"eiffel tower"}) == 0.0);
  CHECK(score(Scorer::kExactMatch, "an APPLE", Gold{"pear", "the apple!"}) == 1.0);  // best gold
}

TEST_CASE("task_score: LongBench qa_f1_score with repeated tokens", "[task_score]") {
  // pred "the cat cat sat" -> [cat, cat, sat]; gold "a cat sat on the mat" -> [cat, sat, on, mat].
  // Multiset intersection: cat min(2,1) = 1, sat 1 -> 2 common. P = 2/3, R = 2/4,
  // F1 = 2 (1/3) / (2/3 + 1/2) = 4/7.
  CHECK(score(Scorer::kF1, "the cat cat sat", Gold{"a cat sat on the mat"}) == Approx(4.0 / 7).epsilon(1e-15));
  // Gold "cat cat": common = 2, P = 2/3, R = 1, F1 = 0.8; the best gold wins.
  CHECK(score(Scorer::kF1, "the cat cat sat", Gold{"a cat sat on the mat", "cat cat"}) == Approx(0.8).epsilon(1e-15));
  CHECK(score(Scorer::kF1, "Dog!", Gold{"cat"}) == 0.0);
  CHECK(score(Scorer::kF1, "", Gold{"cat"}) == 0.0);
  CHECK(score(Scorer::kF1, "The CAT.", Gold{"cat"}) == 1.0);
}

TEST_CASE("task_score: ROUGE-L as the rouge package computes it", "[task_score]") {
  // One sentence each. gold x = [the cat was on a mat], pred y = [the cat sat on the mat].
  // LCS = "the cat on mat", words {the, cat, on, mat}: llcs = 4. m = |{the,cat,was,on,a,mat}| = 6,
  // n = |{the,cat,sat,on,mat}| = 5. R = 4/6, P = 4/5, F = 2 P R / (P + R + 1e-8) ≈ 8/11.
  CHECK(score(Scorer::kRougeL, "the cat sat on the mat", Gold{"the cat was on a mat"}) ==
        Approx(0.7272727223140496).epsilon(1e-12));
  // Summary level. gold sentences [The cat ran], [A dog sat]; pred [The cat sat], [The dog ran].
  // LCS words: (ran-sent, sat-sent) {The, cat}, (ran-sent, ran-sent) {The, ran}, (A.., sat-sent)
  // {sat}, (A.., ran-sent) {dog}: |U| = 5. m = 6, n = 5: R = 5/6, P = 1, F ≈ 10/11.
  CHECK(score(Scorer::kRougeL, "The cat sat. The dog ran.", Gold{"The cat ran. A dog sat."}) ==
        Approx(0.9090909041322315).epsilon(1e-12));
  // The package's quirks: a whitespace-only piece after the last '.' is a sentence of one empty
  // word (n = 3: Hello, world, ""), so R = 1, P = 2/3, F ≈ 0.8; tokens are case-sensitive
  // ("Cat" ≠ "cat": llcs = 1, m = n = 2, F ≈ 0.5); identical texts give 2/(2 + 1e-8).
  CHECK(score(Scorer::kRougeL, "Hello world. ", Gold{"Hello world."}) == Approx(0.7999999952000001).epsilon(1e-12));
  CHECK(score(Scorer::kRougeL, "Cat sat", Gold{"cat sat"}) == Approx(0.4999999950000001).epsilon(1e-12));
  CHECK(score(Scorer::kRougeL, "a a a", Gold{"a a a"}) == Approx(0.999999995).epsilon(1e-12));
  // No sentence in the prediction: the package raises and LongBench scores 0.
  CHECK(score(Scorer::kRougeL, "", Gold{"x"}) == 0.0);
  CHECK(score(Scorer::kRougeL, "...", Gold{"x"}) == 0.0);
  // Best gold.
  CHECK(score(Scorer::kRougeL, "Cat sat", Gold{"dog", "Cat sat"}) == Approx(0.999999995).epsilon(1e-12));
}

TEST_CASE("task_score: check_gold refuses malformed gold answers, naming where", "[task_score]") {
  const std::string where = "ruler/niah.jsonl:7: outputs";
  const auto refused = [&](Scorer s, const Gold& gold, const char* why) {
    INFO(why);
    CHECK_THROWS_AS(check_gold(s, gold, where), InputError);
    CHECK_THROWS_WITH(check_gold(s, gold, where), Catch::Contains(where) && Catch::Contains(why));
  };
  for (Scorer s : {Scorer::kRulerAll, Scorer::kRulerPart, Scorer::kExactMatch, Scorer::kF1, Scorer::kRougeL}) {
    refused(s, Gold{}, "no gold answers");
    refused(s, Gold{"ok", ""}, "is empty");
    refused(s, Gold{" \t\n"}, "whitespace only");
    refused(s, Gold{std::string("ab\0c", 4)}, "NUL");
  }
  refused(Scorer::kExactMatch, Gold{"the ."}, "normalize_answer");
  refused(Scorer::kF1, Gold{"An!"}, "normalize_answer");
  refused(Scorer::kRougeL, Gold{". ..."}, "no word outside '.'");
  refused(Scorer::kRulerAll, Gold{"a\tb"}, "control character");
  CHECK_NOTHROW(check_gold(Scorer::kRulerAll, Gold{"1234567", "a\nb"}, where));
  CHECK_NOTHROW(check_gold(Scorer::kRulerAll, Gold{"the ."}, where));  // RULER matches raw strings
  CHECK_NOTHROW(check_gold(Scorer::kF1, Gold{"the cat"}, where));
  CHECK_NOTHROW(check_gold(Scorer::kRougeL, Gold{"A summary."}, where));
}

TEST_CASE("task_score: percent of reference with a paired bootstrap CI", "[task_score]") {
  Rng rng(11);
  std::vector<double> reference(40), scores(40);
  for (std::size_t i = 0; i < reference.size(); ++i) {
    reference[i] = rng.uniform();
    scores[i] = 0.8 * reference[i] + 0.1 * rng.uniform();
  }
  const RatioCi a = percent_of_reference(scores, reference, 2000, 7);
  const RatioCi b = percent_of_reference(scores, reference, 2000, 7);
  CHECK(std::bit_cast<std::uint64_t>(a.ratio) == std::bit_cast<std::uint64_t>(b.ratio));
  CHECK(std::bit_cast<std::uint64_t>(a.lo) == std::bit_cast<std::uint64_t>(b.lo));
  CHECK(std::bit_cast<std::uint64_t>(a.hi) == std::bit_cast<std::uint64_t>(b.hi));
  double ss = 0, sr = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) ss += scores[i], sr += reference[i];
  CHECK(a.ratio == ss / sr);
  CHECK(a.lo < a.ratio);
  CHECK(a.ratio < a.hi);
  CHECK(a.hi - a.lo < 0.2);
  const RatioCi other = percent_of_reference(scores, reference, 2000, 8);
  CHECK((other.lo != a.lo || other.hi != a.hi));  // the seed matters

  // Identical vectors: every replicate is Σx / Σx = 1 exactly.
  const RatioCi same = percent_of_reference(reference, reference, 500, 1);
  CHECK(same.ratio == 1.0);
  CHECK(same.lo == 1.0);
  CHECK(same.hi == 1.0);
  // Hand example without resampling: mean(0.5, 0.25) / mean(1, 1) = 0.375.
  const RatioCi hand = percent_of_reference(std::vector<double>{0.5, 0.25}, std::vector<double>{1, 1}, 0, 1);
  CHECK(hand.ratio == 0.375);
  CHECK((hand.lo == 0.375 && hand.hi == 0.375));
  // Reference 0 everywhere: undefined.
  const RatioCi zero = percent_of_reference(std::vector<double>{0.5, 0}, std::vector<double>{0, 0}, 100, 1);
  CHECK((std::isnan(zero.ratio) && std::isnan(zero.lo) && std::isnan(zero.hi)));
  // A replicate drawing only the zero-reference prompt has no ratio: it counts as +inf.
  const RatioCi sparse = percent_of_reference(std::vector<double>{1, 1}, std::vector<double>{1, 0}, 200, 3);
  CHECK(sparse.ratio == 2.0);
  CHECK(std::isinf(sparse.hi));

  CHECK_THROWS_AS(percent_of_reference(std::vector<double>{1}, std::vector<double>{1, 1}, 10, 1), InputError);
  CHECK_THROWS_AS(percent_of_reference(std::vector<double>{}, std::vector<double>{}, 10, 1), InputError);
  CHECK_THROWS_AS(percent_of_reference(std::vector<double>{-0.1}, std::vector<double>{1}, 10, 1), InputError);
  CHECK_THROWS_AS(percent_of_reference(std::vector<double>{NAN}, std::vector<double>{1}, 10, 1), InputError);
  CHECK_THROWS_AS(percent_of_reference(std::vector<double>{1}, std::vector<double>{1}, -1, 1), InputError);
}

TEST_CASE("task_score: mean with a bootstrap CI", "[task_score]") {
  const std::vector<double> x = {0, 1, 1, 0, 1, 1, 1, 0, 1, 1};  // mean 0.7
  const MeanCi a = mean_ci(x, 1000, 5), b = mean_ci(x, 1000, 5);
  CHECK(a.mean == Approx(0.7).epsilon(1e-15));
  CHECK(std::bit_cast<std::uint64_t>(a.lo) == std::bit_cast<std::uint64_t>(b.lo));
  CHECK(std::bit_cast<std::uint64_t>(a.hi) == std::bit_cast<std::uint64_t>(b.hi));
  CHECK(a.lo < a.mean);
  CHECK(a.mean < a.hi);
  CHECK(a.lo >= 0.0);
  CHECK(a.hi <= 1.0);
  const MeanCi flat = mean_ci(std::vector<double>{0.25, 0.25, 0.25}, 100, 5);
  CHECK((flat.mean == 0.25 && flat.lo == 0.25 && flat.hi == 0.25));
  CHECK_THROWS_AS(mean_ci(std::vector<double>{}, 10, 1), InputError);
  CHECK_THROWS_AS(mean_ci(std::vector<double>{INFINITY}, 10, 1), InputError);
}
