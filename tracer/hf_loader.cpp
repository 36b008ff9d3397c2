// Hugging Face Llama-family checkpoints: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. Llama, Mistral and Qwen2 share the computation; Qwen2 adds
// q/k/v biases. HF stores q/k rows for the rotate_half RoPE convention.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <type_traits>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/read_file.hpp"
#include "tracer/model.hpp"
#include "tracer/safetensors.hpp"
#include "tracer/weight_plan.hpp"

namespace kvsim {

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  const std::string text = read_file<ModelError>(path, "JSON file");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail<ModelError>(path.string(), ": not valid JSON: ", e.what());
  }
}

// The JSON type a C++ field needs, checked strictly: nlohmann converts true to 1 and 2.7 to 2
// silently ("num_hidden_layers": true would load as one layer).
template <typename T>
bool has_type(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, bool>) return v.is_boolean();
  else if constexpr (std::is_same_v<T, int>)
    return v.is_number_integer() && v.get<std::int64_t>() >= std::numeric_limits<int>::min() &&
           (v.is_number_unsigned() ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())
                                   : v.get<std::int64_t>() <= std::numeric_limits<int>::max());
  else if constexpr (std::is_same_v<T, double>) return v.is_number();
  else return v.is_string();
}

template <typename T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  else if constexpr (std::is_same_v<T, int>) return "an integer";
  else if constexpr (std::is_same_v<T, double>) return "a number";
  else return "a string";
}

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!has_type<T>(j[key]))
    fail<ModelError>(where, ": field ", key, " must be ", type_name<T>(), ", got ", j[key].dump());
  return j[key].get<T>();
}

template <typename T>
T get_req(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) fail<ModelError>(where, ": required field ", key, " is missing");
  return get_or<T>(j, key, T{}, where);
}

// A size field within [1, max]: a non-positive or absurd value (1e9 layers) is a broken config,
// refused before anything is allocated.
int get_size(const nlohmann::json& j, const char* key, int fallback, int max, const std::string& where) {
  const int v = j.contains(key) && !j[key].is_null() ? get_or<int>(j, key, 0, where) : fallback;
  if (v < 1 || v > max) fail<ModelError>(where, ": field ", key, " must be in [1, ", max, "], got ", v);
  return v;
}

// The shards of a checkpoint, opened once each, and which shard holds which tensor.
class TensorSource {
 public:
  explicit TensorSource(const std::filesystem::path& dir) {
    const auto single = dir / "model.safetensors";
    const auto index = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(index)) {
      nlohmann::json j = read_json(index);
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        fail<ModelError>(index.string(), ": field weight_map is missing");
      for (auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string())
          fail<ModelError>(index.string(), ": weight_map entry ", name, " is ", file.dump(), ", expected a file name");
        const std::string f = file.get<std::string>();
        if (!files_.count(f)) files_.emplace(f, std::make_unique<SafetensorsFile>(dir / f));
        where_[name] = files_.at(f).get();
      }
    } else if (std::filesystem::exists(single)) {
      files_.emplace("model.safetensors", std::make_unique<SafetensorsFile>(single));
      for (auto& [name, info] : files_.begin()->second->tensors()) where_[name] = files_.begin()->second.get();
    } else {
      fail<ModelError>(dir.string(), ": neither model.safetensors nor model.safetensors.index.json found");
    }
  }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  void check(const std::string& name, const std::vector<std::int64_t>& shape) const { file(name).check_shape(name, shape); }
  void read(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const {
    file(name).read_f32(name, shape, dst);
  }
  std::uint64_t content_hash() const {
    std::uint64_t h = 0;
    for (auto& [name, f] : files_) h = hash_file(f->path()) ^ (h * 0x100000001B3ull);
    return h;
  }

 private:
  const SafetensorsFile& file(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail<ModelError>(dir_hint(), ": tensor ", name, " is missing from the checkpoint");
    return *it->second;
  }
  std::string dir_hint() const { return files_.empty() ? "checkpoint" : files_.begin()->second->path().string(); }
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

}  // namespace

ModelConfig load_hf_config(const std::filesystem::path& config_json) {
  const std::string where = config_json.string();
  nlohmann::json j = read_json(config_json);
  static const std::set<std::string> kSupported = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};
  std::string arch;
  if (!j.is_object()) fail<ModelError>(where, ": not a JSON object");
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch = j["architectures"][0].get<std::string>();
  if (!kSupported.count(arch))
    fail<ModelError>(where, ": architecture '", arch.empty() ? "(none)" : arch,
                     "' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  ModelConfig c;
  c.arch = arch == "Qwen2ForCausalLM" ? "qwen2" : arch == "MistralForCausalLM" ? "mistral" : "llama";
  auto required = [&](const char* key) {
    if (!j.contains(key) || j[key].is_null()) fail<ModelError>(where, ": required field ", key, " is missing");
  };
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"})
    required(key);
  // Upper bounds far above any real model (Llama-3-405B: 126 layers, 128 heads, hidden 16384,
  // FFN 53248; Gemma: vocabulary 256000), so that a broken config fails here and not in a
  // terabyte allocation.
  constexpr int kMaxLayersHeads = 1 << 16, kMaxWidth = 1 << 20, kMaxVocab = 1 << 24, kMaxContext = 1 << 24;
  c.hidden = get_size(j, "hidden_size", 0, kMaxWidth, where);
  c.ffn_hidden = get_size(j, "intermediate_size", 0, kMaxWidth, where);
  c.n_layers = get_size(j, "num_hidden_layers", 0, kMaxLayersHeads, where);
  c.n_heads = get_size(j, "num_attention_heads", 0, kMaxLayersHeads, where);
  c.n_kv_heads = get_size(j, "num_key_value_heads", c.n_heads, kMaxLayersHeads, where);
  c.head_dim = get_size(j, "head_dim", std::max(1, c.hidden / c.n_heads), kMaxWidth, where);
  c.vocab = get_size(j, "vocab_size", 0, kMaxVocab, where);
  c.max_seq_len = j.contains("max_position_embeddings") && !j["max_position_embeddings"].is_null()
                      ? get_size(j, "max_position_embeddings", 0, kMaxContext, where)
                      : 0;
  c.norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, where);
  if (!(c.norm_eps > 0) || !std::isfinite(c.norm_eps))
    fail<ModelError>(where, ": field rms_norm_eps must be a positive number, got ", j["rms_norm_eps"].dump());
  // Absent: Llama's default 10000. Present, it must be a positive number: null would crash
  // transformers, so a null here is a broken config rather than "use the default".
  if (j.contains("rope_theta") && !j["rope_theta"].is_number())
    fail<ModelError>(where, ": field rope_theta must be a positive number, got ", j["rope_theta"].dump());
  c.rope_theta = get_or<double>(j, "rope_theta", 10000.0, where);
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    fail<ModelError>(where, ": field rope_theta must be a positive number, got ", j["rope_theta"].dump());
  // The checkpoint's element type (weights are converted to fp32 on load): only the types
  // safetensors checkpoints of these families use.
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const std::string dtype = get_or<std::string>(j, key, "", where);
    if (dtype != "float32" && dtype != "float16" && dtype != "bfloat16")
      fail<ModelError>(where, ": field ", key, " '", dtype, "' is not supported (float32, float16 or bfloat16)");
  }
  c.rope_style = RopeStyle::kRotateHalf;
  c.tied_classifier = get_or<bool>(j, "tie_word_embeddings", false, where);
  c.qkv_bias = arch == "Qwen2ForCausalLM" || get_or<bool>(j, "attention_bias", false, where);
  c.bos_id = j.contains("bos_token_id") && j["bos_token_id"].is_number_integer() ? j["bos_token_id"].get<int>() : -1;
  c.eos_id = j.contains("eos_token_id") && j["eos_token_id"].is_number_integer() ? j["eos_token_id"].get<int>() : -1;
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    fail<ModelError>(where, ": rope_scaling ", j["rope_scaling"].dump(), " is not supported yet");
  if (get_or<std::string>(j, "hidden_act", "silu", where) != "silu")
    fail<ModelError>(where, ": hidden_act '", j["hidden_act"].get<std::string>(), "' is not supported (silu only)");
  c.validate(where);
  return c;
}

Model load_hf(const std::filesystem::path& dir) {
  Model m;
  m.config = load_hf_config(dir / "config.json");
  const ModelConfig& c = m.config;
  TensorSource src(dir);
  const std::int64_t D = c.hidden, V = c.vocab, qd = c.q_dim(), kvd = c.kv_dim();
  // Every shape is checked against the shards' headers before anything is allocated
  // (tracer/weight_plan.hpp): config sizes up to kMaxWidth × kMaxVocab would ask for terabytes.
  WeightPlan plan;
  plan.matrix(m.embed, "model.embed_tokens.weight", V, D);
  m.layers.resize(c.n_layers);
  static constexpr LayerTensorNames kNames = {
      "input_layernorm.weight",          "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight",         "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",            "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights& w = m.layers[l];
    plan.layer(w, p, kNames, c);
    if (c.qkv_bias) {
      plan.vector(w.bq, p + "self_attn.q_proj.bias", qd);
      plan.vector(w.bk, p + "self_attn.k_proj.bias", kvd);
      plan.vector(w.bv, p + "self_attn.v_proj.bias", kvd);
    }
  }
  plan.vector(m.final_norm, "model.norm.weight", D);
  if (src.contains("lm_head.weight") && !c.tied_classifier) {
    plan.matrix(m.classifier, "lm_head.weight", V, D);
  } else if (!c.tied_classifier) {
    fail<ModelError>((dir / "config.json").string(),
                     ": tie_word_embeddings is false but the checkpoint has no lm_head.weight");
  }
  plan.load([&](const std::string& name, const std::vector<std::int64_t>& shape) { src.check(name, shape); },
            [&](const std::string& name, const std::vector<std::int64_t>& shape, float* dst) { src.read(name, shape, dst); });
  m.source = dir.string() + "#xxh3:" + hex64(src.content_hash());
  return m;
}

}  // namespace kvsim
