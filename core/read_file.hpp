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
// "in.txt: read error (input file)".
template <typename E>
std::string read_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<E>(path.string(), ": cannot open ", what);
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) fail<E>(path.string(), ": read error (", what, ")");
  return std::move(s).str();
}

}  // namespace kvsim
