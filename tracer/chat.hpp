#pragma once
// Single-turn chat prompts in the ChatML format (SmolLM2, Qwen2), as the model's Jinja chat
// template renders [system?, user] with add_generation_prompt:
//   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n
// Only this one shape is supported; a general Jinja renderer is not needed for prefill traces.
#include <string>
#include <string_view>

namespace kvsim {

struct ChatFormat {
  std::string system;  // the system turn's text; empty: no system turn
  std::string wrap(std::string_view user) const;
};

// The ChatML format of a Jinja chat template, with the system message the template inserts
// when the conversation has none (SmolLM2: "You are a helpful AI assistant named SmolLM,
// trained by Hugging Face"). Throws InputError naming `where` when the template is empty or
// does not render ChatML turns.
ChatFormat chat_format_from_template(std::string_view jinja, const std::string& where);

}  // namespace kvsim
