#include "tracer/gguf_tokenizer.hpp"

#include "core/error.hpp"

namespace kvsim {

namespace {

// llama.cpp's token types (llama_token_type).
enum : std::int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// GGUF does not carry the pre-tokenizer itself, only llama.cpp's name for it
// (tokenizer.ggml.pre); these are the HF pre-tokenizers those names stand for.
std::vector<BpeSpec::PreTokenizerStep> pre_tokenizer_named(const std::string& pre, const std::string& where) {
  using Step = BpeSpec::PreTokenizerStep;
  if (pre == "gpt-2") return {Step::byte_level_step(false, true)};
  // SmolLM / SmolLM2 tokenizer.json: Digits (individual) then ByteLevel with GPT-2's regex.
  if (pre == "smollm") return {Step::digits_step(true), Step::byte_level_step(false, true)};
  fail<ModelError>(where, ": tokenizer.ggml.pre '", pre, "' is not supported (supported: gpt-2, smollm)");
}

}  // namespace

BpeSpec gguf_bpe_spec(const GgufFile& f) {
  const std::string where = f.path().string();
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail<ModelError>(where, ": tokenizer.ggml.model '", model, "' is not supported (only 'gpt2', byte-level BPE)");
  BpeSpec spec;
  const std::vector<std::string> tokens = f.get_strings("tokenizer.ggml.tokens");
  std::vector<std::int64_t> types(tokens.size(), kNormal);
  if (f.has("tokenizer.ggml.token_type")) types = f.get_ints("tokenizer.ggml.token_type");
  if (types.size() != tokens.size())
    fail<ModelError>(where, ": tokenizer.ggml.token_type has ", types.size(), " entries, tokenizer.ggml.tokens ",
                     tokens.size());
  spec.vocab.reserve(tokens.size());
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    spec.vocab.emplace(tokens[id], static_cast<int>(id));
    // Control tokens are HF's special added tokens (<|im_start|>, <|endoftext|>); both are
    // matched in the text before BPE, as llama.cpp does when parsing special tokens.
    if (types[id] == kControl || types[id] == kUserDefined)
      spec.added.push_back({tokens[id], static_cast<int>(id), types[id] == kControl, false, false, false});
  }
  for (const std::string& m : f.get_strings("tokenizer.ggml.merges")) {
    const auto sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
      fail<ModelError>(where, ": tokenizer.ggml.merges entry \"", m, "\" is not two tokens");
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  spec.pre_tokenizer = pre_tokenizer_named(f.get_string("tokenizer.ggml.pre", "gpt-2"), where);
  // The byte-level alphabet covers every byte, so tokenizer.ggml.unknown_token_id is never
  // needed (llama.cpp's BPE does not use it either).
  const auto id_of = [&](const char* key) {
    const std::int64_t id = f.get_int(key, -1);
    if (id < -1 || id >= static_cast<std::int64_t>(tokens.size()))
      fail<ModelError>(where, ": ", key, " ", id, " is outside the ", tokens.size(), "-token vocabulary");
    return static_cast<int>(id);
  };
  const int bos = id_of("tokenizer.ggml.bos_token_id");
  const int eos = id_of("tokenizer.ggml.eos_token_id");
  id_of("tokenizer.ggml.padding_token_id");  // checked only: encode() never pads
  // bos_id() is the token encode(add_special) puts first, so it is set only when the file
  // asks for one (SmolLM2: add_bos_token false, as its tokenizer.json has no template).
  if (f.get_bool("tokenizer.ggml.add_bos_token", false) && bos >= 0) {
    spec.prefix_ids.push_back(bos);
    spec.bos_id = bos;
  }
  if (f.get_bool("tokenizer.ggml.add_eos_token", false) && eos >= 0) spec.suffix_ids.push_back(eos);
  spec.eos_id = eos;  // the end of a turn for chat models (SmolLM2: <|im_end|>)
  spec.chat_template = f.get_string("tokenizer.chat_template", "");
  return spec;
}

std::unique_ptr<HfTokenizer> load_gguf_tokenizer(const std::filesystem::path& gguf) {
  const GgufFile f(gguf);
  return std::make_unique<HfTokenizer>(gguf_bpe_spec(f), gguf.string());
}

}  // namespace kvsim
