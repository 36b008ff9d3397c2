#include "sim/result_codec.hpp"

#include <algorithm>

namespace kvsim {

void encode_selection(ByteWriter& w, const Selection& s, bool kept_tokens) {
  const int B = s.n_budgets(), L = s.n_layers(), G = s.n_kv_heads();
  w.put<int>(B), w.put<int>(kept_tokens ? s.n_orders() : 1), w.put<int>(L), w.put<int>(G), w.put<int>(s.T());
  w.put<std::uint8_t>(kept_tokens);
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g) w.put<int>(s.count(b, l, g));
  if (!kept_tokens) return;
  // Per order, its prefix as long as the largest count that reads it.
  const int orders = s.n_orders();
  for (int o = 0; o < orders; ++o)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g) {
        int n = 0;
        for (int b = 0; b < B; ++b)
          if (orders == 1 || b == o) n = std::max(n, s.count(b, l, g));
        const auto order = s.order(o, l, g).first(n);
        w.put<int>(n);
        for (std::int32_t t : order) w.put<std::int32_t>(t);
      }
}

Selection decode_selection(ByteReader& r) {
  const int B = r.get<int>(), orders = r.get<int>(), L = r.get<int>(), G = r.get<int>(), T = r.get<int>();
  const bool tokens = r.get<std::uint8_t>() != 0;
  Selection s(B, orders, L, G, T);
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g) s.count(b, l, g) = r.get<int>();
  if (!tokens) return s;
  for (int o = 0; o < orders; ++o)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < G; ++g) {
        const int n = r.get<int>();
        KVSIM_CHECK(n >= 0 && n <= T, "decode_selection: bad prefix length");
        auto order = s.order(o, l, g);
        for (int i = 0; i < n; ++i) order[i] = r.get<std::int32_t>();
      }
  return s;
}

namespace {

// The fields of a PromptResult that travel (meta is rank 0's own; selections follow apart).
template <typename Archive, typename Result>
void result_fields(Archive& a, Result& r) {
  a.io(r.trace, r.n_layers, r.n_kv_heads, r.head_dim, r.budget_tokens, r.metrics, r.dnll_est_sum, r.dnll_est_logit,
       r.dnll_est_kl, r.flops, r.projection, r.seconds, r.cpu_seconds);
}

}  // namespace

std::string encode_prompt_result(const PromptResult& r, bool kept_tokens) {
  ByteWriter w;
  result_fields(w, r);
  w.put<std::uint64_t>(r.selections.size());
  for (const Selection& s : r.selections) encode_selection(w, s, kept_tokens);
  return w.take();
}

PromptResult decode_prompt_result(std::string_view bytes, const PromptMeta* meta) {
  ByteReader rd(bytes);
  PromptResult r;
  result_fields(rd, r);
  r.meta = meta;
  const auto n = rd.get<std::uint64_t>();
  for (std::uint64_t p = 0; p < n; ++p) r.selections.push_back(decode_selection(rd));
  KVSIM_CHECK(rd.done(), "decode_prompt_result: trailing bytes");
  return r;
}

}  // namespace kvsim
