// Hugging Face Llama-family checkpoints: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. Llama, Mistral and Qwen2 share the computation; Qwen2 adds
// q/k/v biases. HF stores q/k rows for the rotate_half RoPE convention.
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "tracer/model.hpp"
#include "tracer/safetensors.hpp"

namespace kvsim {

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail<ModelError>(path.string(), ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail<ModelError>(path.string(), ": not valid JSON: ", e.what());
  }
}

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail<ModelError>(where, ": field ", key, " has the wrong type");
  }
}

template <typename T>
T get_req(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) fail<ModelError>(where, ": required field ", key, " is missing");
  return get_or<T>(j, key, T{}, where);
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
  void read(const std::string& name, std::vector<std::int64_t> shape, float* dst) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail<ModelError>(dir_hint(), ": tensor ", name, " is missing from the checkpoint");
    it->second->read_f32(name, shape, dst);
  }
  std::uint64_t content_hash() const {
    std::uint64_t h = 0;
    for (auto& [name, f] : files_) h = hash_file(f->path()) ^ (h * 0x100000001B3ull);
    return h;
  }

 private:
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
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
    arch = j["architectures"][0].get<std::string>();
  if (!kSupported.count(arch))
    fail<ModelError>(where, ": architecture '", arch.empty() ? "(none)" : arch,
                     "' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  ModelConfig c;
  c.arch = arch == "Qwen2ForCausalLM" ? "qwen2" : arch == "MistralForCausalLM" ? "mistral" : "llama";
  c.hidden = get_req<int>(j, "hidden_size", where);
  c.ffn_hidden = get_req<int>(j, "intermediate_size", where);
  c.n_layers = get_req<int>(j, "num_hidden_layers", where);
  c.n_heads = get_req<int>(j, "num_attention_heads", where);
  c.n_kv_heads = get_or<int>(j, "num_key_value_heads", c.n_heads, where);
  c.head_dim = get_or<int>(j, "head_dim", c.n_heads > 0 ? c.hidden / c.n_heads : 0, where);
  c.vocab = get_req<int>(j, "vocab_size", where);
  c.max_seq_len = get_or<int>(j, "max_position_embeddings", 0, where);
  c.norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, where);
  c.rope_theta = get_or<double>(j, "rope_theta", 10000.0, where);
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
  const std::int64_t D = c.hidden, F = c.ffn_hidden, V = c.vocab, qd = c.q_dim(), kvd = c.kv_dim();
  m.embed.resize(V, D);
  src.read("model.embed_tokens.weight", {V, D}, m.embed.data());
  m.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights& w = m.layers[l];
    auto mat = [&](MatrixRM& dst, const std::string& name, std::int64_t rows, std::int64_t cols) {
      dst.resize(rows, cols);
      src.read(p + name, {rows, cols}, dst.data());
    };
    auto vec = [&](VectorF& dst, const std::string& name, std::int64_t n) {
      dst.resize(n);
      src.read(p + name, {n}, dst.data());
    };
    vec(w.attn_norm, "input_layernorm.weight", D);
    mat(w.wq, "self_attn.q_proj.weight", qd, D);
    mat(w.wk, "self_attn.k_proj.weight", kvd, D);
    mat(w.wv, "self_attn.v_proj.weight", kvd, D);
    if (c.qkv_bias) {
      vec(w.bq, "self_attn.q_proj.bias", qd);
      vec(w.bk, "self_attn.k_proj.bias", kvd);
      vec(w.bv, "self_attn.v_proj.bias", kvd);
    }
    mat(w.wo, "self_attn.o_proj.weight", D, qd);
    vec(w.ffn_norm, "post_attention_layernorm.weight", D);
    mat(w.w_gate, "mlp.gate_proj.weight", F, D);
    mat(w.w_up, "mlp.up_proj.weight", F, D);
    mat(w.w_down, "mlp.down_proj.weight", D, F);
  }
  m.final_norm.resize(D);
  src.read("model.norm.weight", {D}, m.final_norm.data());
  if (src.contains("lm_head.weight") && !c.tied_classifier) {
    m.classifier.resize(V, D);
    src.read("lm_head.weight", {V, D}, m.classifier.data());
  } else if (!c.tied_classifier) {
    fail<ModelError>((dir / "config.json").string(),
                     ": tie_word_embeddings is false but the checkpoint has no lm_head.weight");
  }
  m.source = dir.string() + "#xxh3:" + hex64(src.content_hash());
  return m;
}

}  // namespace kvsim
