#pragma once
// A whole file's bytes, for files read in one piece (tokenizers, input texts); checkpoints are
// memory-mapped instead (tracer/mapped_file.hpp).
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.hpp"

namespace kvsim {

// Throws E naming the file and what it was read as: "tok.json: cannot open tokenizer file",
// "in.txt: read error (input file)", "dir: is a directory, expected a tokenizer file" (an
// ifstream opens a directory and fails only on reading, with an exception from deep inside).
template <typename E>
std::string read_file(const std::filesystem::path& path, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail<E>(path.string(), ": is a directory, expected a ", what);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<E>(path.string(), ": cannot open ", what);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) fail<E>(path.string(), ": read error (", what, ")");
  return std::move(s).str();
}

}  // namespace kvsim
