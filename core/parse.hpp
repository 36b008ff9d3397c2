#pragma once
// Whole-string number parsing for option values and file fields: the text must be exactly one
// number (leading blanks allowed, as strtod/strtol allow), nothing after it, and within the
// type's range; std::stod/std::stoi alone accept trailing text ("1.5x").
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>

namespace kvsim {

inline std::optional<double> parse_double(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(text.c_str(), &end);
  if (*end != '\0' || end == text.c_str() || errno == ERANGE) return std::nullopt;
  return x;
}

inline std::optional<long> parse_long(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(text.c_str(), &end, 10);
  if (*end != '\0' || end == text.c_str() || errno == ERANGE) return std::nullopt;
  return x;
}

}  // namespace kvsim
