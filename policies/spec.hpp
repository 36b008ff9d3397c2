#pragma once
// Policy spec strings: `name`, `name:key=value,key=value`, and wrappers
// `name(inner spec):key=value`, e.g. `adakv(snapkv:window=32,kernel=7,pool=max):alpha=0.2`.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvsim {

struct PolicySpec {
  std::string name;
  std::shared_ptr<PolicySpec> inner;  // wrapped scorer, if any
  std::vector<std::pair<std::string, std::string>> params;
};

// Throws InputError quoting the text on a syntax error.
PolicySpec parse_policy_spec(std::string_view text);
// Splits a list such as "full,snapkv:window=32,kernel=7,h2o" into specs: a top-level comma
// piece that has no '=' starts a new policy, one with '=' continues the previous one's
// parameters. ';' and whitespace always separate.
std::vector<std::string> split_policy_list(std::string_view text);

struct ParamInfo {
  std::string name;
  std::string default_value;
  std::string help;
  // The canonical spec leaves the parameter out while it has its default value: for a parameter
  // added to existing policies whose default is the old behaviour (`sink`), so the specs that
  // name those policies in results, tables and manifests stay byte-identical.
  bool omit_default = false;
};

// Typed access to a spec's parameters with defaults; refuses unknown keys at construction.
class ParamReader {
 public:
  ParamReader(const PolicySpec& spec, const std::vector<ParamInfo>& known);
  int integer(const std::string& name) const;
  double number(const std::string& name) const;
  std::string choice(const std::string& name, const std::vector<std::string>& allowed) const;
  // The value as written (e.g. a file path).
  const std::string& text(const std::string& name) const { return raw(name); }
  // "key=value,..." with every known parameter (defaults filled), in declaration order; a
  // parameter marked omit_default is written only when it differs from its default.
  std::string canonical() const;
  const std::string& policy_name() const { return policy_; }

 private:
  const std::string& raw(const std::string& name) const;
  std::string policy_;
  std::vector<ParamInfo> known_;
  std::vector<std::pair<std::string, std::string>> values_;  // declaration order, as known_
};

}  // namespace kvsim
