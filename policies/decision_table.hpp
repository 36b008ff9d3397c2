#pragma once
// CompilerKV decision tables: the data, the file format (JSON, docs/tables.md) and the
// relative-depth mapping between models. The only code that reads or writes table files
// (like traces/ for HDF5); the learners that fill tables live in tables/.
//
// Layouts (memory order):
//   head [n_budgets, L, H]           reliability weight W_head[B, l, h] of query head h
//   gate [n_budgets, L, 20, 4]       threshold T_gate[B, l, b_ent, b_ppl]
// The gate's meaning is the table's `gate_mode` (docs/methods.md, "CompilerKV gate"):
//   absolute  (the published rule; every version-1 table)  C = {i : s_{l,i} >= τ}
//   coverage  (version 2)  C = the fewest highest-scored non-window tokens whose scores sum to
//             at least (1 − τ) of the layer's non-window score mass: τ is the share of the
//             utility mass the gate may drop (0 keeps every token with a positive score).
// In both, a larger τ admits fewer candidates.
// Bins: b = number of edges <= x (so x below the first edge is bin 0); 19 entropy edges
// (20 bins), 3 perplexity edges (4 bins), ascending.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/model_shape.hpp"

namespace kvsim {

inline constexpr const char* kTableFormatName = "kvsim-table";
inline constexpr int kTableFormatVersion = 2;  // 1: no gate_mode (absolute), linear grids
inline constexpr int kEntropyBins = 20;
inline constexpr int kPerplexityBins = 4;
inline constexpr double kDefaultHeadWeight = 1.0;

enum class GateMode { absolute, coverage };
const char* gate_mode_name(GateMode mode);
// "absolute" | "coverage"; InputError naming `where` otherwise.
GateMode parse_gate_mode(std::string_view name, const std::string& where);
// The default threshold of a mode: absolute 0.8 (published); coverage 0.01 (drop at most 1%
// of the utility mass; docs/methods.md says why).
double default_gate(GateMode mode);
inline constexpr double kDefaultGate = 0.8;  // the published (absolute) default

// An arm grid. Linear: lo, lo+step, ..., hi (values rounded to 1e-9 so they print as written).
// Log (log_count > 0): log_count values from lo to hi in a geometric progression.
struct ArmGrid {
  double lo = 0, hi = 0, step = 1;
  int log_count = 0;
  int count() const;
  double value(int k) const;
  // The arm whose value is nearest to x (in log space for a log grid).
  int nearest(double x) const;
  // "lo:hi:step" (linear) or "lo:hi:count:log"; InputError naming `where` on anything else
  // (count 0, step <= 0, lo > hi, log grids with lo <= 0, more than 1000 arms).
  static ArmGrid parse(const std::string& text, const std::string& where);
  void validate(const std::string& where) const;
  std::string text() const;
};
inline ArmGrid head_arm_grid() { return {0.8, 1.5, 0.025}; }  // 29 arms
// absolute: 0.8..1.0 step 0.01 (21 arms, published); coverage: 1e-4..0.2 on a log scale (21 arms).
ArmGrid gate_arm_grid(GateMode mode = GateMode::absolute);

struct DecisionTable {
  ModelShape model;          // shape the table was compiled for (head_dim/hidden informative)
  int window = 32;           // CompilerKV window the table was compiled with
  int sink = 0;              // CompilerKV sink tokens the table was compiled with (version 2; 0 in version 1)
  std::vector<int> budgets;  // ascending, tokens per KV head
  std::vector<float> head;   // [n_budgets, L, H]
  std::vector<float> gate;   // [n_budgets, L, 20, 4]
  std::vector<double> entropy_edges;     // [19] ascending
  std::vector<double> perplexity_edges;  // [3] ascending
  GateMode gate_mode = GateMode::absolute;
  ArmGrid head_arms = head_arm_grid(), gate_arms = gate_arm_grid();
  nlohmann::json provenance = nlohmann::json::object();  // docs/tables.md lists the fields

  // Every weight 1.0, every threshold default_gate(mode), the mode's arm grid, edges at +inf
  // (every prompt in bin (0, 0)).
  static DecisionTable defaults(const ModelShape& model, std::vector<int> budgets, int window,
                                GateMode mode = GateMode::absolute);

  int n_budgets() const { return static_cast<int>(budgets.size()); }
  float& head_at(int b, int l, int h) { return head[(static_cast<std::size_t>(b) * model.n_layers + l) * model.n_heads + h]; }
  float head_at(int b, int l, int h) const { return head[(static_cast<std::size_t>(b) * model.n_layers + l) * model.n_heads + h]; }
  float& gate_at(int b, int l, int e, int p) { return gate[((static_cast<std::size_t>(b) * model.n_layers + l) * kEntropyBins + e) * kPerplexityBins + p]; }
  float gate_at(int b, int l, int e, int p) const { return gate[((static_cast<std::size_t>(b) * model.n_layers + l) * kEntropyBins + e) * kPerplexityBins + p]; }
  // The index of the table budget nearest to B (ties: the smaller budget).
  int budget_index(int B) const;
  int entropy_bin(double entropy) const;
  int perplexity_bin(double perplexity) const;
  // Checks sizes, ascending budgets/edges and finite values; throws InputError naming `where`.
  void validate(const std::string& where) const;
};

// Reads and validates a table file: format name and version (1 and 2; a version-1 table has
// no gate_mode and means the absolute rule), sizes, finite values. Throws InputError naming
// the file and the field.
DecisionTable read_table(const std::filesystem::path& path);
// Writes atomically (path.partial, renamed). Inner arrays on one line, so a diff shows entries.
void write_table(const DecisionTable& table, const std::filesystem::path& path);
std::string table_to_json_text(const DecisionTable& table);

// The table for a model of another shape. Same query and KV head counts required (a head
// mapping is not supported: InputError); a different depth maps by relative depth: target
// layer l sits at x = l/(L−1) of the depth and takes the linear interpolation of the source
// layers at x·(L'−1) (entry by entry, head weights and thresholds). `allow_depth_map` false
// refuses a depth change too.
DecisionTable map_table_to_model(const DecisionTable& table, const ModelShape& target, bool allow_depth_map = true);

}  // namespace kvsim
