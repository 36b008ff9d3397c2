#pragma once
// Greedy BPE merging shared by both tokenizers. Both reference algorithms repeatedly merge
// the best adjacent pair (highest score in llama2.c, lowest merge rank in HF tokenizers),
// breaking ties by the leftmost position. The naive rescan is O(n^2) per text, which is
// too slow for long prompts, so this uses a heap of candidate pairs with lazy invalidation
// over a linked list of symbols: same merges in the same order, O(n log n).
#include <cstddef>
#include <optional>
#include <queue>
#include <utility>
#include <vector>

namespace kvsim::detail {

// A candidate merge: priority (lower merges first) and the id of the merged symbol.
template <typename Priority>
struct MergeCandidate {
  Priority priority;
  int merged_id;
};

// Merges ids in place. lookup(left_id, right_id) returns std::optional<MergeCandidate<P>>,
// empty when the pair does not merge.
template <typename Priority, typename Lookup>
void merge_symbols(std::vector<int>& ids, const Lookup& lookup) {
  const std::size_t n = ids.size();
  if (n < 2) return;
  struct Entry {
    Priority priority;
    std::size_t left;  // original index of the left symbol: orders like the current position
    std::size_t right;
    int left_id;
    int right_id;
    int merged_id;
  };
  // std::priority_queue is a max-heap: "a < b" must mean a merges after b.
  auto later = [](const Entry& a, const Entry& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.left > b.left;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> heap(later);
  std::vector<std::size_t> next(n), prev(n);
  std::vector<bool> alive(n, true);
  for (std::size_t i = 0; i < n; ++i) {
    next[i] = i + 1;  // n means "none"
    prev[i] = i == 0 ? n : i - 1;
  }
  auto push = [&](std::size_t left, std::size_t right) {
    if (left >= n || right >= n) return;
    if (auto c = lookup(ids[left], ids[right]))
      heap.push(Entry{c->priority, left, right, ids[left], ids[right], c->merged_id});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i, i + 1);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    // Stale when either symbol has since been merged away or changed.
    if (!alive[e.left] || !alive[e.right] || next[e.left] != e.right ||
        ids[e.left] != e.left_id || ids[e.right] != e.right_id)
      continue;
    ids[e.left] = e.merged_id;
    alive[e.right] = false;
    next[e.left] = next[e.right];
    if (next[e.right] < n) prev[next[e.right]] = e.left;
    push(prev[e.left], e.left);
    push(e.left, next[e.left]);
  }
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; i = next[i]) ids[out++] = ids[i];
  ids.resize(out);
}

}  // namespace kvsim::detail
