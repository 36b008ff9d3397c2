#pragma once
// Content hashes for provenance (model checkpoints, input files, trace sets): XXH3-64 from
// libxxhash, printed as 16 hex digits. Not cryptographic: it identifies, it does not protect.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace kvsim {

std::uint64_t hash_bytes(std::span<const std::byte> bytes, std::uint64_t seed = 0);
// The same of a string's characters.
inline std::uint64_t hash_bytes(std::string_view text, std::uint64_t seed = 0) {
  return hash_bytes(std::as_bytes(std::span(text.data(), text.size())), seed);
}
// Hash of a whole file's bytes; throws InputError naming the file if it cannot be read.
std::uint64_t hash_file(const std::filesystem::path& path);
std::string hex64(std::uint64_t h);

}  // namespace kvsim
