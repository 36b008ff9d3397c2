#include "cli/backend.hpp"

#include "core/error.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/cuda_backend.hpp"

namespace kvsim::cli {

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
