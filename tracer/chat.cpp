#include "tracer/chat.hpp"

#include "core/error.hpp"

namespace kvsim {

std::string ChatFormat::wrap(std::string_view user) const {
  std::string out;
  if (!system.empty()) out += "<|im_start|>system\n" + system + "<|im_end|>\n";
  out += "<|im_start|>user\n";
  out += user;
  out += "<|im_end|>\n<|im_start|>assistant\n";
  return out;
}

ChatFormat chat_format_from_template(std::string_view jinja, const std::string& where) {
  if (jinja.empty()) fail<InputError>(where, ": has no chat template (tokenizer.chat_template), so --chat cannot apply");
  if (jinja.find("<|im_start|>") == std::string_view::npos || jinja.find("<|im_end|>") == std::string_view::npos)
    fail<InputError>(where, ": the chat template is not ChatML (<|im_start|> ... <|im_end|>); only ChatML is supported");
  ChatFormat f;
  // The default system turn is a literal in the template: "<|im_start|>system" then a
  // newline, written as the character or as the Jinja escape \n, then the text.
  constexpr std::string_view kOpen = "<|im_start|>system";
  for (std::size_t at = jinja.find(kOpen); at != std::string_view::npos; at = jinja.find(kOpen, at + 1)) {
    std::size_t begin = at + kOpen.size();
    if (jinja.substr(begin, 1) == "\n") begin += 1;
    else if (jinja.substr(begin, 2) == "\\n") begin += 2;
    else continue;
    const std::size_t end = jinja.find("<|im_end|>", begin);
    if (end == std::string_view::npos) break;
    const std::string_view text = jinja.substr(begin, end - begin);
    // A system turn built from a variable (message['content']) is not a default.
    if (text.find_first_of("{}+") != std::string_view::npos) continue;
    f.system = std::string(text);
    break;
  }
  return f;
}

}  // namespace kvsim
