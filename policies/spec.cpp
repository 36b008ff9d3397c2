#include "policies/spec.hpp"

#include <cctype>
#include <cstdlib>

#include "core/error.hpp"

namespace kvsim {

namespace {

bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; }

std::string trim(std::string_view s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

}  // namespace

PolicySpec parse_policy_spec(std::string_view text) {
  const std::string t = trim(text);
  auto bad = [&](const std::string& why) { fail<InputError>("policy spec '", t, "': ", why); };
  PolicySpec spec;
  std::size_t p = 0;
  while (p < t.size() && is_name_char(t[p])) ++p;
  spec.name = t.substr(0, p);
  if (spec.name.empty()) bad("expected a policy name");
  if (p < t.size() && t[p] == '(') {
    int depth = 0;
    std::size_t q = p;
    for (; q < t.size(); ++q) {
      if (t[q] == '(') ++depth;
      if (t[q] == ')' && --depth == 0) break;
    }
    if (q == t.size()) bad("unbalanced '('");
    spec.inner = std::make_shared<PolicySpec>(parse_policy_spec(std::string_view(t).substr(p + 1, q - p - 1)));
    p = q + 1;
  }
  if (p == t.size()) return spec;
  if (t[p] != ':') bad(std::string("unexpected '") + t[p] + "' after the name");
  std::string_view rest = std::string_view(t).substr(p + 1);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string kv = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const std::size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == kv.size()) bad("parameter '" + kv + "' is not key=value");
    const std::string key = trim(std::string_view(kv).substr(0, eq));
    for (const auto& [k, v] : spec.params)
      if (k == key) bad("parameter '" + key + "' given twice");
    spec.params.emplace_back(key, trim(std::string_view(kv).substr(eq + 1)));
  }
  return spec;
}

std::vector<std::string> split_policy_list(std::string_view text) {
  std::vector<std::string> out;
  std::string piece;
  int depth = 0;
  auto flush = [&]() {
    const std::string p = trim(piece);
    piece.clear();
    if (p.empty()) return;
    const bool continues = !out.empty() && p.find('=') != std::string::npos && p.find_first_of(":(") > p.find('=');
    if (continues)
      out.back() += "," + p;
    else
      out.push_back(p);
  };
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == ';' || std::isspace(static_cast<unsigned char>(c)))) {
      flush();
      continue;
    }
    piece += c;
  }
  flush();
  return out;
}

ParamReader::ParamReader(const PolicySpec& spec, const std::vector<ParamInfo>& known) : policy_(spec.name), known_(known) {
  for (const auto& k : known) values_.emplace_back(k.name, k.default_value);
  for (const auto& [key, value] : spec.params) {
    bool found = false;
    for (auto& [k, v] : values_)
      if (k == key) {
        v = value;
        found = true;
      }
    if (!found) {
      std::string names;
      for (const auto& k : known) names += (names.empty() ? "" : ", ") + k.name;
      fail<InputError>("policy ", spec.name, ": unknown parameter '", key, "' (known: ", names.empty() ? "none" : names,
                       ")");
    }
  }
}

const std::string& ParamReader::raw(const std::string& name) const {
  for (const auto& [k, v] : values_)
    if (k == name) return v;
  fail<Error>("policy ", policy_, ": parameter '", name, "' is not declared");
}

int ParamReader::integer(const std::string& name) const {
  const std::string& v = raw(name);
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < -(1L << 30) || x > (1L << 30))
    fail<InputError>("policy ", policy_, ": parameter ", name, "='", v, "' is not an integer");
  return static_cast<int>(x);
}

double ParamReader::number(const std::string& name) const {
  const std::string& v = raw(name);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(x == x)) fail<InputError>("policy ", policy_, ": parameter ", name, "='", v, "' is not a number");
  return x;
}

std::string ParamReader::choice(const std::string& name, const std::vector<std::string>& allowed) const {
  const std::string& v = raw(name);
  for (const auto& a : allowed)
    if (a == v) return v;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : "|") + a;
  fail<InputError>("policy ", policy_, ": parameter ", name, "='", v, "' must be one of ", list);
}

std::string ParamReader::canonical() const {
  std::string s;
  for (std::size_t j = 0; j < values_.size(); ++j) {
    const auto& [k, v] = values_[j];
    if (known_[j].omit_default && v == known_[j].default_value) continue;
    s += (s.empty() ? "" : ",") + k + "=" + v;
  }
  return s;
}

}  // namespace kvsim
