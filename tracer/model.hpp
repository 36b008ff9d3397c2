#pragma once
// A Llama-family decoder in memory (Llama, Mistral, Qwen2: RMSNorm, RoPE, GQA, SwiGLU),
// loaded from llama2.c checkpoints, Hugging Face safetensors or GGUF, weights held in fp32.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/matrix.hpp"
#include "core/model_shape.hpp"

namespace kvsim {

// Which pairs of a head's dimensions RoPE rotates together.
enum class RopeStyle {
  kInterleaved,  // (2i, 2i+1): llama2.c, GPT-J, Meta's original Llama code
  kRotateHalf,   // (i, i + d/2): Hugging Face Llama ("rotate_half")
};
const char* rope_style_name(RopeStyle s);

// The shape fields (n_layers, n_heads, n_kv_heads, head_dim, hidden = D) are ModelShape's.
struct ModelConfig : ModelShape {
  std::string arch = "llama";  // family name recorded in traces
  int ffn_hidden = 0;   // F
  int vocab = 0;        // V
  int max_seq_len = 0;  // trained context length
  double rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::kRotateHalf;
  double norm_eps = 1e-5;
  bool tied_classifier = true;
  bool qkv_bias = false;  // Qwen2
  int bos_id = -1;
  int eos_id = -1;

  int group_size() const { return n_heads / n_kv_heads; }  // G
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Throws ModelError (naming `where`) when the shape is inconsistent.
  void validate(const std::string& where) const;
};

struct LayerWeights {
  VectorF attn_norm;  // [D]
  MatrixRM wq;        // [H*d, D]
  MatrixRM wk;        // [Hkv*d, D]
  MatrixRM wv;        // [Hkv*d, D]
  VectorF bq, bk, bv; // [H*d], [Hkv*d], [Hkv*d]; empty without qkv bias
  MatrixRM wo;        // [D, H*d]
  VectorF ffn_norm;   // [D]
  MatrixRM w_gate;    // [F, D]
  MatrixRM w_up;      // [F, D]
  MatrixRM w_down;    // [D, F]
};

struct Model {
  ModelConfig config;
  MatrixRM embed;       // [V, D]
  std::vector<LayerWeights> layers;
  VectorF final_norm;   // [D]
  MatrixRM classifier;  // [V, D]; empty when tied to embed
  std::string source;   // checkpoint path + content hash, for provenance

  const MatrixRM& output_matrix() const { return config.tied_classifier ? embed : classifier; }
};

// llama2.c checkpoint (legacy v0 export: 7-int header, fp32, interleaved RoPE).
Model load_llama2c(const std::filesystem::path& bin);
// Hugging Face directory: config.json + model.safetensors or model.safetensors.index.json.
Model load_hf(const std::filesystem::path& dir);
ModelConfig load_hf_config(const std::filesystem::path& config_json);
// GGUF file (llama.cpp), general.architecture "llama"; quantized tensors dequantized to fp32.
Model load_gguf(const std::filesystem::path& gguf);
// Dispatch on the path: a directory is a HF checkpoint, a .gguf file a GGUF checkpoint,
// another file a llama2.c checkpoint.
Model load_model(const std::filesystem::path& path);

// Random weights of the given shape (tests, benchmarks): N(0, 1/sqrt(fan_in)), norms 1.
Model random_model(const ModelConfig& config, std::uint64_t seed);

}  // namespace kvsim
