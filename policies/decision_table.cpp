#include "policies/decision_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>

#include "core/error.hpp"
#include "core/parse.hpp"
#include "core/read_file.hpp"

namespace kvsim {

namespace {

double round9(double x) { return std::round(x * 1e9) / 1e9; }
// Table entries are stored as float (7 significant digits); written rounded to 1e-6 so that
// grid values (steps of 0.025 and 0.01) print as written.
double round6(double x) { return std::round(x * 1e6) / 1e6; }

std::string shape_text(const ModelShape& m) {
  return "L=" + std::to_string(m.n_layers) + ", H=" + std::to_string(m.n_heads) + ", Hkv=" + std::to_string(m.n_kv_heads);
}

// JSON text with every innermost array (numbers only) on one line.
void write_compact(std::ostringstream& out, const nlohmann::json& j, int indent) {
  const std::string pad(indent, ' '), inner(indent + 2, ' ');
  if (j.is_array()) {
    const bool leaf = std::all_of(j.begin(), j.end(), [](const nlohmann::json& x) { return !x.is_structured(); });
    if (leaf || j.empty()) {
      out << j.dump();
      return;
    }
    out << "[\n";
    for (std::size_t k = 0; k < j.size(); ++k) {
      out << inner;
      write_compact(out, j[k], indent + 2);
      out << (k + 1 < j.size() ? ",\n" : "\n");
    }
    out << pad << "]";
  } else if (j.is_object()) {
    if (j.empty()) {
      out << "{}";
      return;
    }
    out << "{\n";
    std::size_t k = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++k) {
      out << inner << nlohmann::json(it.key()).dump() << ": ";
      write_compact(out, it.value(), indent + 2);
      out << (k + 1 < j.size() ? ",\n" : "\n");
    }
    out << pad << "}";
  } else {
    out << j.dump();
  }
}

nlohmann::json grid_json(const ArmGrid& g) {
  if (g.log_count > 0) return {{"scale", "log"}, {"lo", g.lo}, {"hi", g.hi}, {"count", g.log_count}};
  return {{"scale", "linear"}, {"lo", g.lo}, {"hi", g.hi}, {"step", g.step}, {"count", g.count()}};
}

// The JSON type a field needs, checked strictly (nlohmann would read 2.5 or true as the
// integer 2 or 1, and 1e20 as an undefined int).
template <typename T>
bool has_type(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, int>)
    return v.is_number_integer() && (v.is_number_unsigned() ? v.get<std::uint64_t>() <= 0x7fffffffu
                                                            : v.get<std::int64_t>() >= -0x7fffffffLL - 1 &&
                                                                  v.get<std::int64_t>() <= 0x7fffffff);
  else if constexpr (std::is_same_v<T, double>) return v.is_number();
  else if constexpr (std::is_same_v<T, std::string>) return v.is_string();
  else if constexpr (std::is_same_v<T, std::vector<int>>)
    return v.is_array() && std::all_of(v.begin(), v.end(), [](const nlohmann::json& x) { return has_type<int>(x); });
}

template <typename T>
const char* type_name() {
  if constexpr (std::is_same_v<T, int>) return "an integer";
  else if constexpr (std::is_same_v<T, double>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else return "an array of integers";
}

template <typename T>
T field(const nlohmann::json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name)) fail<InputError>(where, ": field '", name, "' is missing");
  const nlohmann::json& v = j.at(name);
  if (!has_type<T>(v)) {
    std::string found = v.dump();
    if (found.size() > 40) found = found.substr(0, 37) + "...";
    fail<InputError>(where, ": field '", name, "' must be ", type_name<T>(), ", got ", found);
  }
  return v.get<T>();
}

// Flattens a nested array of the given dimensions (row-major) into out; InputError on a shape mismatch.
void flatten(const nlohmann::json& j, const std::vector<int>& dims, std::size_t level, std::vector<float>& out,
             const std::string& where) {
  if (!j.is_array() || static_cast<int>(j.size()) != dims[level])
    fail<InputError>(where, ": expected an array of ", dims[level], " at depth ", level);
  for (const auto& x : j) {
    if (level + 1 < dims.size()) {
      flatten(x, dims, level + 1, out, where);
    } else {
      if (!x.is_number()) fail<InputError>(where, ": non-number entry");
      out.push_back(x.get<float>());
    }
  }
}

nlohmann::json nest(const std::vector<float>& flat, const std::vector<int>& dims) {
  // Builds from the innermost dimension outwards.
  std::vector<nlohmann::json> level;
  for (float x : flat) level.push_back(round6(x));
  for (std::size_t k = dims.size(); k-- > 0;) {
    const int n = dims[k];
    std::vector<nlohmann::json> up;
    for (std::size_t i = 0; i < level.size(); i += n)
      up.push_back(nlohmann::json(std::vector<nlohmann::json>(level.begin() + i, level.begin() + i + n)));
    level = std::move(up);
  }
  return level.empty() ? nlohmann::json::array() : level[0];
}

int bin_of(const std::vector<double>& edges, double x, int n_bins) {
  const int b = static_cast<int>(std::upper_bound(edges.begin(), edges.end(), x) - edges.begin());
  return std::clamp(b, 0, n_bins - 1);
}

}  // namespace

int ArmGrid::count() const {
  if (log_count > 0) return log_count;
  return static_cast<int>(std::floor((hi - lo) / step + 0.5)) + 1;
}
double ArmGrid::value(int k) const {
  if (log_count > 0) {
    if (log_count == 1 || k == 0) return round9(lo);
    if (k == log_count - 1) return round9(hi);
    // Rounded to 6 significant digits so that the table prints the values as the grid does.
    const double v = lo * std::pow(hi / lo, static_cast<double>(k) / (log_count - 1));
    const double scale = std::pow(10.0, 5 - static_cast<int>(std::floor(std::log10(v))));
    return std::round(v * scale) / scale;
  }
  return round9(lo + k * step);
}
int ArmGrid::nearest(double x) const {
  if (log_count > 0) {
    if (log_count == 1 || !(x > lo)) return 0;
    const double f = std::log(x / lo) / std::log(hi / lo) * (log_count - 1);
    return std::clamp(static_cast<int>(std::lround(f)), 0, log_count - 1);
  }
  return std::clamp(static_cast<int>(std::lround((x - lo) / step)), 0, count() - 1);
}

void ArmGrid::validate(const std::string& where) const {
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
    fail<InputError>(where, ": arm grid needs finite lo <= hi, got lo ", lo, ", hi ", hi);
  if (log_count > 0) {
    if (lo <= 0) fail<InputError>(where, ": a log-scale arm grid needs lo > 0, got ", lo);
    if (log_count > 1000) fail<InputError>(where, ": arm grid of ", log_count, " arms (at most 1000)");
    return;
  }
  if (!std::isfinite(step) || step <= 0) fail<InputError>(where, ": arm grid step must be > 0, got ", step);
  if ((hi - lo) / step > 999.5) fail<InputError>(where, ": arm grid of more than 1000 arms (lo ", lo, ", hi ", hi, ", step ", step, ")");
}

ArmGrid ArmGrid::parse(const std::string& text, const std::string& where) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  auto number = [&](const std::string& s) {
    const std::optional<double> x = parse_double(s);
    if (!x) fail<InputError>(where, ": '", text, "' is not lo:hi:step or lo:hi:count:log");
    return *x;
  };
  ArmGrid g;
  if (parts.size() == 3) {
    g = ArmGrid{number(parts[0]), number(parts[1]), number(parts[2])};
  } else if (parts.size() == 4 && parts[3] == "log") {
    const double n = number(parts[2]);
    if (n < 1 || n != std::floor(n) || n > 1000) fail<InputError>(where, ": '", text, "': count must be an integer in [1, 1000]");
    g = ArmGrid{number(parts[0]), number(parts[1]), 1, static_cast<int>(n)};
  } else {
    fail<InputError>(where, ": '", text, "' is not lo:hi:step or lo:hi:count:log");
  }
  g.validate(where);
  return g;
}

std::string ArmGrid::text() const {
  std::ostringstream o;
  o << lo << ":" << hi << ":";
  if (log_count > 0)
    o << log_count << ":log";
  else
    o << step;
  return o.str();
}

const char* gate_mode_name(GateMode mode) { return mode == GateMode::coverage ? "coverage" : "absolute"; }

GateMode parse_gate_mode(std::string_view name, const std::string& where) {
  if (name == "absolute") return GateMode::absolute;
  if (name == "coverage") return GateMode::coverage;
  fail<InputError>(where, ": unknown gate mode '", name, "' (absolute|coverage)");
}

double default_gate(GateMode mode) { return mode == GateMode::coverage ? 0.01 : kDefaultGate; }

ArmGrid gate_arm_grid(GateMode mode) {
  if (mode == GateMode::coverage) return ArmGrid{1e-4, 0.2, 1, 21};
  return {0.8, 1.0, 0.01};
}

DecisionTable DecisionTable::defaults(const ModelShape& model, std::vector<int> budgets, int window, GateMode mode) {
  DecisionTable t;
  t.model = model;
  t.gate_mode = mode;
  t.gate_arms = gate_arm_grid(mode);
  t.window = window;
  t.budgets = std::move(budgets);
  std::sort(t.budgets.begin(), t.budgets.end());
  t.budgets.erase(std::unique(t.budgets.begin(), t.budgets.end()), t.budgets.end());
  const std::size_t nb = t.budgets.size();
  t.head.assign(nb * model.n_layers * model.n_heads, static_cast<float>(kDefaultHeadWeight));
  t.gate.assign(nb * model.n_layers * kEntropyBins * kPerplexityBins, static_cast<float>(default_gate(mode)));
  t.entropy_edges.assign(kEntropyBins - 1, std::numeric_limits<double>::infinity());
  t.perplexity_edges.assign(kPerplexityBins - 1, std::numeric_limits<double>::infinity());
  return t;
}

int DecisionTable::budget_index(int B) const {
  KVSIM_CHECK(!budgets.empty());
  int best = 0;
  for (int k = 1; k < n_budgets(); ++k)
    if (std::abs(budgets[k] - B) < std::abs(budgets[best] - B)) best = k;
  return best;
}

int DecisionTable::entropy_bin(double entropy) const { return bin_of(entropy_edges, entropy, kEntropyBins); }
int DecisionTable::perplexity_bin(double perplexity) const { return bin_of(perplexity_edges, perplexity, kPerplexityBins); }

void DecisionTable::validate(const std::string& where) const {
  const ModelShape& m = model;
  if (m.n_layers < 1 || m.n_heads < 1 || m.n_kv_heads < 1 || m.n_heads % m.n_kv_heads != 0)
    fail<InputError>(where, ": bad model shape (", shape_text(m), ")");
  if (window < 1) fail<InputError>(where, ": window must be >= 1, got ", window);
  if (sink < 0) fail<InputError>(where, ": sink must be >= 0, got ", sink);
  if (budgets.empty()) fail<InputError>(where, ": no budgets");
  for (std::size_t k = 0; k < budgets.size(); ++k)
    if (budgets[k] < 1 || (k > 0 && budgets[k] <= budgets[k - 1]))
      fail<InputError>(where, ": budgets must be positive and strictly ascending");
  const std::size_t nb = budgets.size();
  if (head.size() != nb * m.n_layers * m.n_heads) fail<InputError>(where, ": head table has ", head.size(), " entries");
  if (gate.size() != nb * m.n_layers * kEntropyBins * kPerplexityBins)
    fail<InputError>(where, ": gate table has ", gate.size(), " entries");
  for (float x : head)
    if (!std::isfinite(x) || x < 0) fail<InputError>(where, ": head weights must be finite and >= 0, got ", x);
  for (float x : gate) {
    if (!std::isfinite(x)) fail<InputError>(where, ": gate thresholds must be finite, got ", x);
    if (gate_mode == GateMode::coverage && (x < 0 || x > 1))
      fail<InputError>(where, ": coverage gate thresholds (the share of utility mass dropped) must lie in [0, 1], got ", x);
  }
  head_arms.validate(where + ": head_arms");
  gate_arms.validate(where + ": gate_arms");
  auto check_edges = [&](const std::vector<double>& e, int n, const char* name) {
    if (static_cast<int>(e.size()) != n - 1) fail<InputError>(where, ": ", name, " must hold ", n - 1, " edges");
    for (std::size_t k = 1; k < e.size(); ++k)
      if (e[k] < e[k - 1]) fail<InputError>(where, ": ", name, " must be ascending");
  };
  check_edges(entropy_edges, kEntropyBins, "entropy_edges");
  check_edges(perplexity_edges, kPerplexityBins, "perplexity_edges");
}

std::string table_to_json_text(const DecisionTable& t) {
  const int L = t.model.n_layers, H = t.model.n_heads, nb = t.n_budgets();
  auto edges = [](const std::vector<double>& e) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : e) a.push_back(std::isinf(x) ? nlohmann::json("inf") : nlohmann::json(x));
    return a;
  };
  // Key order as docs/tables.md lists the fields (nlohmann::json sorts keys; write by hand).
  std::vector<std::pair<std::string, nlohmann::json>> fields = {
      {"format", kTableFormatName},
      {"format_version", kTableFormatVersion},
      {"policy", "compilerkv"},
      {"model",
       {{"n_layers", L}, {"n_heads", H}, {"n_kv_heads", t.model.n_kv_heads}, {"head_dim", t.model.head_dim}, {"hidden", t.model.hidden}}},
      {"window", t.window},
      {"sink", t.sink},
      {"gate_mode", gate_mode_name(t.gate_mode)},
      {"budgets", t.budgets},
      {"head_arms", grid_json(t.head_arms)},
      {"gate_arms", grid_json(t.gate_arms)},
      {"defaults", {{"head", kDefaultHeadWeight}, {"gate", default_gate(t.gate_mode)}}},
      {"bins", {{"entropy_edges", edges(t.entropy_edges)}, {"perplexity_edges", edges(t.perplexity_edges)}}},
      {"head", nest(t.head, {nb, L, H})},
      {"gate", nest(t.gate, {nb, L, kEntropyBins, kPerplexityBins})},
      {"provenance", t.provenance},
  };
  std::ostringstream out;
  out << "{\n";
  for (std::size_t k = 0; k < fields.size(); ++k) {
    out << "  " << nlohmann::json(fields[k].first).dump() << ": ";
    write_compact(out, fields[k].second, 2);
    out << (k + 1 < fields.size() ? ",\n" : "\n");
  }
  out << "}\n";
  return out.str();
}

void write_table(const DecisionTable& table, const std::filesystem::path& path) {
  table.validate(path.string());
  std::filesystem::path partial = path;
  partial += ".partial";
  {
    std::ofstream f(partial, std::ios::binary);
    if (!f) fail<InputError>(partial.string(), ": cannot open for writing");
    f << table_to_json_text(table);
    if (!f.flush()) fail<InputError>(partial.string(), ": write failed (disk full?)");
  }
  std::filesystem::rename(partial, path);
}

namespace {

DecisionTable table_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("format") || j.at("format") != kTableFormatName)
    fail<InputError>(where, ": not a kvsim decision table (format must be \"", kTableFormatName, "\")");
  const int version = field<int>(j, "format_version", where);
  if (version != 1 && version != kTableFormatVersion)
    fail<InputError>(where, ": table format_version ", version, " is not supported (this kvsim reads 1 and ",
                     kTableFormatVersion, ")");
  const std::string policy = field<std::string>(j, "policy", where);
  if (policy != "compilerkv") fail<InputError>(where, ": field 'policy' must be \"compilerkv\", got \"", policy, "\"");
  DecisionTable t;
  // Version 1 predates gate_mode: its thresholds are absolute (the published rule).
  if (version >= 2) {
    t.gate_mode = parse_gate_mode(field<std::string>(j, "gate_mode", where), where + ": gate_mode");
    t.sink = j.contains("sink") ? field<int>(j, "sink", where) : 0;  // absent: no sinks
  }
  if (!j.contains("model") || !j.at("model").is_object()) fail<InputError>(where, ": field 'model' is missing or not an object");
  const auto& m = j.at("model");
  t.model.n_layers = field<int>(m, "n_layers", where + ": model");
  t.model.n_heads = field<int>(m, "n_heads", where + ": model");
  t.model.n_kv_heads = field<int>(m, "n_kv_heads", where + ": model");
  t.model.head_dim = m.contains("head_dim") ? field<int>(m, "head_dim", where + ": model") : 0;
  t.model.hidden = m.contains("hidden") ? field<int>(m, "hidden", where + ": model") : 0;
  // Sizes bounded before the nested arrays are read (their product sizes the tables).
  constexpr int kMaxLayersHeads = 1 << 16, kMaxBudgets = 1 << 10;
  auto bounded = [&](const char* name, int v, int hi) {
    if (v < 1 || v > hi) fail<InputError>(where, ": model: field '", name, "' must be in [1, ", hi, "], got ", v);
  };
  bounded("n_layers", t.model.n_layers, kMaxLayersHeads);
  bounded("n_heads", t.model.n_heads, kMaxLayersHeads);
  bounded("n_kv_heads", t.model.n_kv_heads, kMaxLayersHeads);
  t.window = field<int>(j, "window", where);
  t.budgets = field<std::vector<int>>(j, "budgets", where);
  if (t.budgets.size() > static_cast<std::size_t>(kMaxBudgets))
    fail<InputError>(where, ": field 'budgets' holds ", t.budgets.size(), " budgets (at most ", kMaxBudgets, ")");
  auto grid = [&](const char* name) {
    const auto& g = j.at(name);
    const std::string w = where + ": " + name;
    if (!g.is_object()) fail<InputError>(w, ": must be an object {scale, lo, hi, step, count}");
    const std::string scale = g.contains("scale") ? field<std::string>(g, "scale", w) : "linear";
    if (scale == "log") {
      const int n = field<int>(g, "count", w);
      if (n < 1) fail<InputError>(w, ": a log-scale arm grid needs count >= 1, got ", n);
      return ArmGrid{field<double>(g, "lo", w), field<double>(g, "hi", w), 1, n};
    }
    if (scale != "linear") fail<InputError>(w, ": unknown scale '", scale, "' (linear|log)");
    const ArmGrid a{field<double>(g, "lo", w), field<double>(g, "hi", w), field<double>(g, "step", w)};
    a.validate(w);
    // count is written for readers; when present it must be the grid's.
    if (g.contains("count") && field<int>(g, "count", w) != a.count())
      fail<InputError>(w, ": count ", g.at("count").dump(), " does not match lo ", a.lo, ", hi ", a.hi, ", step ", a.step,
                       " (", a.count(), " arms)");
    return a;
  };
  t.gate_arms = gate_arm_grid(t.gate_mode);
  if (j.contains("head_arms")) t.head_arms = grid("head_arms");
  if (j.contains("gate_arms")) t.gate_arms = grid("gate_arms");
  if (!j.contains("bins") || !j.at("bins").is_object()) fail<InputError>(where, ": field 'bins' is missing");
  auto edges = [&](const char* name) {
    const auto& b = j.at("bins");
    if (!b.contains(name) || !b.at(name).is_array()) fail<InputError>(where, ": bins: field '", name, "' is missing or not an array");
    std::vector<double> e;
    for (const auto& x : b.at(name)) {
      if (x.is_string() && x == "inf") e.push_back(std::numeric_limits<double>::infinity());
      else if (x.is_number()) e.push_back(x.get<double>());
      else fail<InputError>(where, ": bins: ", name, " entries must be numbers or \"inf\", got ", x.dump());
    }
    return e;
  };
  t.entropy_edges = edges("entropy_edges");
  t.perplexity_edges = edges("perplexity_edges");
  const int nb = static_cast<int>(t.budgets.size()), L = t.model.n_layers, H = t.model.n_heads;
  if (!j.contains("head") || !j.contains("gate")) fail<InputError>(where, ": fields 'head' and 'gate' are required");
  flatten(j.at("head"), {nb, L, H}, 0, t.head, where + ": head [budgets, L, H]");
  flatten(j.at("gate"), {nb, L, kEntropyBins, kPerplexityBins}, 0, t.gate, where + ": gate [budgets, L, 20, 4]");
  // Provenance describes a table and never changes what it selects; hand-written and test
  // tables have none, so it may be absent or null (the CLI notes it). Present, it is an object.
  if (j.contains("provenance") && !j.at("provenance").is_null()) {
    if (!j.at("provenance").is_object())
      fail<InputError>(where, ": field 'provenance' must be an object, got ", j.at("provenance").type_name());
    t.provenance = j.at("provenance");
  }
  return t;
}

}  // namespace

DecisionTable read_table(const std::filesystem::path& path) {
  const std::string where = path.string();
  const std::string text = read_file<InputError>(path, "decision table (JSON)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail<InputError>(where, ": not JSON (", e.what(), ")");
  }
  DecisionTable t;
  try {
    t = table_from_json(j, where);
  } catch (const nlohmann::json::exception& e) {  // a field of an unexpected shape the checks above missed
    fail<InputError>(where, ": malformed decision table (", e.what(), ")");
  }
  t.validate(where);
  return t;
}

DecisionTable map_table_to_model(const DecisionTable& t, const ModelShape& target, bool allow_depth_map) {
  if (t.model.n_heads != target.n_heads || t.model.n_kv_heads != target.n_kv_heads)
    fail<InputError>("decision table compiled for ", shape_text(t.model), " cannot be used on a model with ",
                     shape_text(target), ": the head counts differ and no head mapping is given");
  if (t.model.n_layers == target.n_layers) return t;
  if (!allow_depth_map)
    fail<InputError>("decision table compiled for ", shape_text(t.model), " cannot be used on a model with ",
                     shape_text(target), ": the depth differs (allow the relative-depth mapping to use it)");
  const int Ls = t.model.n_layers, Lt = target.n_layers;
  DecisionTable out = t;
  out.model.n_layers = Lt;
  out.provenance["depth_mapped_from"] = Ls;
  const std::size_t nb = t.budgets.size();
  const std::size_t head_row = t.model.n_heads, gate_row = static_cast<std::size_t>(kEntropyBins) * kPerplexityBins;
  out.head.assign(nb * Lt * head_row, 0.0f);
  out.gate.assign(nb * Lt * gate_row, 0.0f);
  for (int l = 0; l < Lt; ++l) {
    // Relative depth l/(Lt−1) in the source's layer coordinates.
    const double x = Lt == 1 ? 0.0 : static_cast<double>(l) * (Ls - 1) / (Lt - 1);
    const int l0 = std::min(static_cast<int>(std::floor(x)), Ls - 1), l1 = std::min(l0 + 1, Ls - 1);
    const double f = x - l0;
    auto mix = [&](const std::vector<float>& src, std::vector<float>& dst, std::size_t row) {
      for (std::size_t b = 0; b < nb; ++b)
        for (std::size_t k = 0; k < row; ++k) {
          const double a = src[(b * Ls + l0) * row + k], c = src[(b * Ls + l1) * row + k];
          dst[(b * Lt + l) * row + k] = static_cast<float>(round9((1 - f) * a + f * c));
        }
    };
    mix(t.head, out.head, head_row);
    mix(t.gate, out.gate, gate_row);
  }
  return out;
}

}  // namespace kvsim
