#include "tracer/trace_output.hpp"

namespace kvsim {

ModelInfo trace_model_info(const Model& m) {
  const ModelConfig& c = m.config;
  ModelInfo info;
  info.arch = c.arch;
  info.n_layers = c.n_layers;
  info.n_heads = c.n_heads;
  info.n_kv_heads = c.n_kv_heads;
  info.head_dim = c.head_dim;
  info.hidden = c.hidden;
  info.vocab = c.vocab;
  info.rope_theta = c.rope_theta;
  info.rope_style = rope_style_name(c.rope_style);
  info.norm_eps = c.norm_eps;
  info.source = m.source;
  return info;
}

std::vector<float> trace_w_o(const Model& m) {
  std::vector<float> w_o;
  for (const auto& l : m.layers) w_o.insert(w_o.end(), l.wo.data(), l.wo.data() + l.wo.size());
  return w_o;
}

std::vector<float> trace_final_norm(const Model& m) {
  return {m.final_norm.data(), m.final_norm.data() + m.final_norm.size()};
}

}  // namespace kvsim
