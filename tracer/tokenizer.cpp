#include "tracer/tokenizer.hpp"

#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "tracer/gguf_tokenizer.hpp"
#include "tracer/hf_tokenizer.hpp"
#include "tracer/llama2c_tokenizer.hpp"

namespace kvsim {

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail<ModelError>(path.string(), ": is a directory, expected a tokenizer file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<ModelError>(path.string(), ": cannot open tokenizer file");
  // A GGUF model file carries its tokenizer; read it without loading the whole file.
  char magic[4] = {};
  if (in.read(magic, 4) && std::string_view(magic, 4) == "GGUF") return load_gguf_tokenizer(path);
  in.clear();
  in.seekg(0);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) fail<ModelError>(path.string(), ": read error");
  const std::string bytes = std::move(s).str();
  if (bytes.empty()) fail<ModelError>(path.string(), ": empty tokenizer file");
  // Decide by content, not by name: JSON starts with '{' (after optional whitespace or a
  // UTF-8 BOM); a llama2.c file starts with a small little-endian int32, whose zero high
  // bytes can never be JSON.
  std::size_t i = bytes.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\n' || bytes[i] == '\r')) ++i;
  if (i < bytes.size() && bytes[i] == '{') return std::make_unique<HfTokenizer>(bytes, path);
  return std::make_unique<Llama2cTokenizer>(bytes, path);
}

}  // namespace kvsim
