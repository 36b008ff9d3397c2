#include "tracer/forward_backend.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace kvsim {

RecordShape record_shape(const ModelConfig& config, int n_tokens, int n_prompt, const RecordOptions& options) {
  RecordShape s;
  s.T = n_prompt;
  s.M = n_tokens - n_prompt;
  if (s.T <= 0) fail<InputError>("record: empty prompt");
  if (s.M < 0) fail<InputError>("record: prompt length ", s.T, " exceeds the ", n_tokens, " tokens given");
  if (options.window <= 0) fail<InputError>("record: window must be positive, got ", options.window);
  if (options.topk <= 0 || options.topk > config.vocab)
    fail<InputError>("record: topk must be in [1, ", config.vocab, "], got ", options.topk);
  s.W = options.window_for(s.T);
  s.K = options.topk;
  return s;
}

std::vector<int> greedy_generate(const ForwardBackend& backend, std::span<const int> prompt, int max_new, int stop_id) {
  auto seq = backend.start(static_cast<int>(prompt.size()) + max_new);
  std::vector<int> out;
  std::vector<float> logits = seq->append(prompt);
  for (int step = 0; step < max_new; ++step) {
    // max_element returns the first maximum: ties go to the lowest id, as Eigen's maxCoeff.
    const int next = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (next == stop_id) break;
    out.push_back(next);
    if (step + 1 == max_new) break;
    const int tok[1] = {next};
    logits = seq->append(tok);
  }
  return out;
}

}  // namespace kvsim
