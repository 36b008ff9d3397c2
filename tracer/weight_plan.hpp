#pragma once
// The weights a checkpoint loader reads, listed before anything is allocated. The sizes in a
// checkpoint's metadata (config.json, GGUF llama.*) are bounded by nothing; its tensors are
// bounded by the file. So a loader lists every destination with the shape it expects, checks
// all of them against the checkpoint's tensor index, and only then sizes and fills them
// (a corrupt feed_forward_length once made load_gguf ask for 64 GB: docs/fuzzing.md).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/matrix.hpp"
#include "tracer/model.hpp"

namespace kvsim {

// The names of a layer's nine weight tensors in one checkpoint format, after its layer prefix.
struct LayerTensorNames {
  const char *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
};

class WeightPlan {
 public:
  void matrix(MatrixRM& dst, std::string name, std::int64_t rows, std::int64_t cols) {
    reads_.push_back({std::move(name), {rows, cols}, &dst, nullptr});
  }
  void vector(VectorF& dst, std::string name, std::int64_t n) { reads_.push_back({std::move(name), {n}, nullptr, &dst}); }
  // The nine weights of a layer (not the Qwen2 biases), named prefix + names.<field>, in
  // ModelConfig's shapes.
  void layer(LayerWeights& w, const std::string& prefix, const LayerTensorNames& names, const ModelConfig& c) {
    const std::int64_t D = c.hidden, F = c.ffn_hidden, qd = c.q_dim(), kvd = c.kv_dim();
    vector(w.attn_norm, prefix + names.attn_norm, D);
    matrix(w.wq, prefix + names.wq, qd, D);         // [H*d, D]
    matrix(w.wk, prefix + names.wk, kvd, D);        // [Hkv*d, D]
    matrix(w.wv, prefix + names.wv, kvd, D);        // [Hkv*d, D]
    matrix(w.wo, prefix + names.wo, D, qd);         // [D, H*d]
    vector(w.ffn_norm, prefix + names.ffn_norm, D);
    matrix(w.w_gate, prefix + names.w_gate, F, D);  // [F, D]
    matrix(w.w_up, prefix + names.w_up, F, D);      // [F, D]
    matrix(w.w_down, prefix + names.w_down, D, F);  // [D, F]
  }

  // check(name, shape) throws when the checkpoint's tensor is missing or of another shape;
  // read(name, shape, float* dst) fills a destination sized to the shape.
  template <typename Check, typename Read>
  void load(Check check, Read read) const {
    for (const Entry& e : reads_) check(e.name, e.shape);
    for (const Entry& e : reads_) {
      float* dst = nullptr;
      if (e.matrix) {
        e.matrix->resize(e.shape[0], e.shape[1]);
        dst = e.matrix->data();
      } else {
        e.vector->resize(e.shape[0]);
        dst = e.vector->data();
      }
      read(e.name, e.shape, dst);
    }
  }

 private:
  struct Entry {
    std::string name;
    std::vector<std::int64_t> shape;  // row-major: [rows, cols] or [n]
    MatrixRM* matrix;
    VectorF* vector;
  };
  std::vector<Entry> reads_;
};

}  // namespace kvsim
