#pragma once
// Tokenizers: llama2.c tokenizer.bin (SentencePiece-style BPE with scores), and byte-level
// BPE (GPT-2 style) from a Hugging Face tokenizer.json or a GGUF's metadata. One interface
// for the tracer.
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Encodes text. add_special: prepend BOS (llama2.c) or apply the tokenizer's own
  // post-processor template (HF TemplateProcessing); special tokens written in the text
  // (e.g. "<|im_start|>") are recognised as single tokens by the HF tokenizer.
  virtual std::vector<int> encode(std::string_view text, bool add_special) const = 0;
  // Decodes ids to text; BOS/EOS-type special tokens decode to their literal text only
  // when keep_special is true.
  virtual std::string decode(std::span<const int> ids, bool keep_special = false) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 when the tokenizer has none
  virtual int eos_id() const = 0;  // -1 when the tokenizer has none
  // The Jinja chat template the tokenizer file carries (GGUF tokenizer.chat_template), or "".
  virtual std::string chat_template() const { return {}; }
};

// Loads by content: a llama2.c tokenizer.bin, a HF tokenizer.json, or the tokenizer inside
// a GGUF model file. Throws ModelError naming the file on a missing, truncated or malformed
// file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

}  // namespace kvsim
