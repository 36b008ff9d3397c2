#include "cli/common.hpp"

#include "core/error.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/cuda_backend.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/version.hpp"

namespace kvsim::cli {

std::optional<po::variables_map> parse(const std::string& command, const std::string& summary,
                                       po::options_description& options, const std::vector<std::string>& args,
                                       const po::positional_options_description* positional) {
  options.add_options()("help,h", "show this help");
  po::variables_map vm;
  po::command_line_parser parser(args);
  parser.options(options);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: kvsim " << command << " [options]\n" << summary << "\n\n" << options << "\n";
    return std::nullopt;
  }
  po::notify(vm);
  return vm;
}

void require_at_least(const std::string& option, long long value, long long min) {
  if (value >= min) return;
  if (min == 1) fail<InputError>(option, " must be positive, got ", value);
  fail<InputError>(option, " must be >= ", min, ", got ", value);
}

void require_finite(const std::string& option, double value) {
  if (!std::isfinite(value)) fail<InputError>(option, " must be a finite number, got ", value);
}

std::size_t cache_bytes(long long cache_mb) {
  require_at_least("--cache-mb", cache_mb, 0);
  constexpr long long kMaxMb = 1LL << 30;  // 1 PiB
  if (cache_mb > kMaxMb) fail<InputError>("--cache-mb must be at most ", kMaxMb, " (1 PiB), got ", cache_mb);
  return static_cast<std::size_t>(cache_mb) << 20;
}

void check_output_file(const std::filesystem::path& path, const std::string& option, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail<InputError>(option, " ", path.string(), ": is a directory, expected a file name");
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  if (!fs::is_directory(dir, ec))
    fail<InputError>(option, " ", path.string(), ": directory ", dir.string(), " does not exist");
  if (!overwrite && fs::exists(path, ec)) fail<InputError>(path.string(), ": already exists (pass --overwrite to replace it)");
}

std::unique_ptr<tbb::global_control> limit_threads(int threads) {
  require_at_least("--threads", threads, 0);
  if (threads == 0) return nullptr;
  return std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, threads);
}

std::unique_ptr<Tokenizer> resolve_tokenizer(const std::filesystem::path& model_path, const std::string& explicit_path,
                                             int vocab) {
  namespace fs = std::filesystem;
  if (!explicit_path.empty()) return load_tokenizer(explicit_path);
  if (model_path.extension() == ".gguf") return load_tokenizer(model_path);  // its own tokenizer
  std::vector<fs::path> candidates;
  if (fs::is_directory(model_path)) {
    candidates.push_back(model_path / "tokenizer.json");
  } else {
    const fs::path dir = model_path.parent_path().empty() ? fs::path(".") : model_path.parent_path();
    candidates.push_back(dir / "tokenizer.bin");
    candidates.push_back(dir / ("tok" + std::to_string(vocab) + ".bin"));
  }
  for (const auto& c : candidates)
    if (fs::exists(c)) return load_tokenizer(c);
  std::string tried;
  for (const auto& c : candidates) tried += (tried.empty() ? "" : ", ") + c.string();
  fail<ModelError>(model_path.string(), ": no tokenizer found (looked for ", tried, "); pass --tokenizer");
}

Progress::Progress(std::string label, std::size_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}

void Progress::update(std::size_t done, const std::string& detail) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > 0 ? secs * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  char line[512];
  std::snprintf(line, sizeof line, "[%s] %zu/%zu %s, %.1fs elapsed, ETA %.0fs", label_.c_str(), done, total_,
                detail.c_str(), secs, eta);
  if (tty_) {
    std::fprintf(stderr, "\r%-100s", line);
    std::fflush(stderr);
  } else {
    const int decile = total_ ? static_cast<int>(10 * done / total_) : 10;
    if (decile != last_decile_) std::fprintf(stderr, "%s\n", line);
    last_decile_ = decile;
  }
}

void Progress::finish(const std::string& detail) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "%s[%s] done: %s in %.1fs\n", tty_ ? "\r" : "", label_.c_str(), detail.c_str(), secs);
}

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<std::string> expand_policies(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& spec : split_policy_list(text)) {
    if (spec != "all") {
      out.push_back(spec);
      continue;
    }
    for (const auto& info : policy_registry()) out.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
  }
  return out;
}

void ReplayArgs::add_to(po::options_description& opts) {
  opts.add_options()("traces", po::value(&traces)->multitoken()->required(), "trace files (.h5)")
      ("policies,p", po::value(&policies)->default_value("all"),
       "policy specs, e.g. 'full,snapkv:window=32,kernel=7,pool=max,adakv(snapkv):alpha=0.2'; 'all' = every policy "
       "with defaults ('kvsim policies' lists them)")
      ("budget,b", po::value(&budgets), "budgets in tokens per KV head, e.g. 64,128,256,512")
      ("ratio,r", po::value(&ratios), "or compression ratios (fraction of prompt tokens removed; keeps int(T*(1-r)) as kvpress), e.g. 0.5,0.8")
      ("seed", po::value(&seed)->default_value(0), "seed mixed into every prompt's seed (random policy)")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores); results do not depend on it")
      ("overwrite", po::bool_switch(&overwrite), "replace existing outputs")
      ("quiet,q", po::bool_switch(&quiet), "no progress line")
      ("projection", po::value(&projection)->default_value("fp32"),
       "precision of the W_O projection of output errors: fp32, or bf16 (fp32 accumulation; ~2.8x faster with "
       "AVX512-BF16, metrics within ~1e-4 relative)");
}

ReplayOptions ReplayArgs::replay_options() const {
  ReplayOptions ro;
  for (const auto& t : traces) ro.traces.emplace_back(t);
  ro.policies = expand_policies(policies);
  ro.budgets = BudgetSweep::parse(budgets, ratios);
  ro.seed = seed;
  ro.projection = parse_projection(projection, "--projection");
  return ro;
}

nlohmann::json results_manifest(const std::string& kind, const std::vector<std::string>& args) {
  nlohmann::json m;
  m["format"] = "kvsim-results";
  m["format_version"] = kResultsFormatVersion;
  m["kind"] = kind;
  m["tool"] = "kvsim";
  m["version"] = kToolVersion;
  m["git_sha"] = kGitSha;
  m["created_utc"] = utc_now_iso8601();
  m["command"] = args;
  return m;
}

namespace {

nlohmann::json trace_provenance(const TraceReader& r, const std::string& xxh3) {
  return {{"path", r.path().string()}, {"xxh3", xxh3}, {"model_source", r.model().source}, {"prompts", r.prompts().size()}};
}

}  // namespace

nlohmann::json trace_provenance(const TraceReader& r) { return trace_provenance(r, hex64(hash_file(r.path()))); }

nlohmann::json trace_provenance(const TraceSet& set) {
  nlohmann::json a = nlohmann::json::array();
  for (std::size_t t = 0; t < set.size(); ++t)
    a.push_back(set.hashed() ? trace_provenance(set.reader(t), set.hash(t)) : trace_provenance(set.reader(t)));
  return a;
}

nlohmann::json replay_manifest(const std::string& kind, const Replay& replay, const std::vector<std::string>& args,
                               int threads, std::uint64_t seed) {
  nlohmann::json m = results_manifest(kind, args);
  m["threads"] = threads;
  m["seed"] = seed;
  m["projection"] = projection_name(replay.options().projection);
  m["traces"] = trace_provenance(replay.traces());
  for (const auto& p : replay.policies()) m["policies"].push_back(p->spec());
  m["budgets"] = {{"kind", replay.options().budgets.is_ratio() ? "ratio" : "tokens_per_kv_head"},
                  {"labels", replay.options().budgets.labels()}};
  return m;
}

namespace {

// NumPy's .npy: magic, version 1.0, a uint16 header length, a Python dict literal padded
// with spaces and ended by '\n' so the data starts at a multiple of 64 bytes.
void write_npy_bytes(const std::filesystem::path& path, const char* descr, const void* data, std::size_t elem_size,
                     const std::vector<int>& shape) {
  std::string dims;
  std::size_t n = 1;
  for (int d : shape) {
    dims += std::to_string(d) + ",";
    n *= static_cast<std::size_t>(d);
  }
  if (shape.size() > 1) dims.pop_back();  // (3,) for one dimension, (2, 3) otherwise
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const std::size_t preamble = 10;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) fail<InputError>(path.string(), ": cannot write");
  const auto len = static_cast<std::uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n * elem_size));
  if (!out) fail<InputError>(path.string(), ": write failed");
}

}  // namespace

void write_npy(const std::filesystem::path& path, const float* data, const std::vector<int>& shape) {
  write_npy_bytes(path, "<f4", data, sizeof(float), shape);
}

void write_npy(const std::filesystem::path& path, const int* data, const std::vector<int>& shape) {
  static_assert(sizeof(int) == 4);
  write_npy_bytes(path, "<i4", data, sizeof(int), shape);
}

BackendChoice choose_backend(const std::string& device, const std::string& precision) {
  BackendChoice c;
  c.device = parse_device(device);
  if (c.device == Device::kCpu) {
    if (!precision.empty() && parse_precision(precision) != Precision::kFp32)
      fail<InputError>("--precision ", precision, ": the CPU backend computes in fp32 only (use --device cuda)");
    return c;
  }
  c.precision = precision.empty() ? Precision::kBf16 : parse_precision(precision);
  const CudaAvailability a = cuda_availability();
  if (!a.built) fail<DeviceError>("--device cuda: ", a.reason);
  if (a.devices == 0) fail<DeviceError>("--device cuda: no CUDA device found (cudaGetDeviceCount: ", a.reason, ")");
  return c;
}

std::unique_ptr<ForwardBackend> make_backend(const Model& model, const BackendChoice& choice, int max_tokens,
                                             int max_topk) {
  if (choice.device == Device::kCpu) return std::make_unique<CpuForward>(model);
  CudaOptions o;
  o.precision = choice.precision;
  o.max_tokens = max_tokens;
  o.max_topk = max_topk;
  return make_cuda_backend(model, o);
}

void add_backend_options(po::options_description& opts, std::string& device, std::string& precision) {
  opts.add_options()
      ("device", po::value(&device)->default_value("cpu"), "forward pass on: cpu | cuda (docs/cuda.md)")
      ("precision", po::value(&precision), "cuda: fp32 | bf16 | fp16 weights and GEMM inputs, fp32 accumulation (default bf16); cpu: fp32");
}

}  // namespace kvsim::cli
