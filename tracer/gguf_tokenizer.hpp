#pragma once
// The tokenizer a GGUF file carries in its tokenizer.ggml.* metadata. Only byte-level BPE
// (tokenizer.ggml.model "gpt2") is supported; it runs on the same HfTokenizer machinery as
// a tokenizer.json, so both give the same ids for the same model.
#include <filesystem>
#include <memory>

#include "tracer/gguf.hpp"
#include "tracer/hf_tokenizer.hpp"

namespace kvsim {

// The BPE pieces from the metadata: tokens (ids in order), token_type (control tokens become
// special added tokens, user-defined ones plain added tokens), merges, the pre-tokenizer
// named by tokenizer.ggml.pre, add_bos_token/add_eos_token, bos/eos ids and the chat
// template. Throws ModelError naming the file and key when one is missing or unsupported.
BpeSpec gguf_bpe_spec(const GgufFile& file);

std::unique_ptr<HfTokenizer> load_gguf_tokenizer(const std::filesystem::path& gguf);

}  // namespace kvsim
