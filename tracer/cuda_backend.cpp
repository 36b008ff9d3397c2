// The CUDA backend's entry points, in every build: they load libkvsim_cuda.so, the backend's
// own module (tracer/cuda/cuda_module.hpp), on first use, from beside the running executable
// (or the path in $KVSIM_CUDA_MODULE), so that only `--device cuda` loads the CUDA runtime and
// cuBLAS (docs/cuda.md, "Build"). Without the module, one clear DeviceError.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/error.hpp"
#include "core/version.hpp"
#include "tracer/cuda/cuda_module.hpp"

namespace kvsim {

namespace {

// The loaded module, or why there is none.
struct Loaded {
  const CudaModule* module = nullptr;
  std::string error;
};

#ifdef KVSIM_CUDA_MODULE_FILE  // the module's file name, defined by CMake where it builds the module

std::filesystem::path module_path() {
  if (const char* env = std::getenv("KVSIM_CUDA_MODULE"); env && *env) return env;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path() : exe.parent_path()) / KVSIM_CUDA_MODULE_FILE;
}

Loaded load() {
  const std::filesystem::path path = module_path();
  const std::string where = " (built beside the kvsim executables; $KVSIM_CUDA_MODULE overrides the path)";
  // RTLD_LOCAL: the module's symbols stay its own; it is never unloaded.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return {nullptr, std::string("cannot load the CUDA backend: ") + ::dlerror() + where};
  auto* entry = reinterpret_cast<const CudaModule* (*)()>(::dlsym(handle, kCudaModuleEntry));
  if (!entry) return {nullptr, path.string() + ": not a kvsim CUDA module (no " + kCudaModuleEntry + ")"};
  const CudaModule* m = entry();
  if (m->abi != kCudaModuleAbi || std::strcmp(m->version, kToolVersion) != 0 || std::strcmp(m->git_sha, kGitSha) != 0)
    return {nullptr, detail::concat(path.string(), " is from kvsim ", m->version, " (", m->git_sha, ", module ABI ", m->abi,
                                    "), this is kvsim ", kToolVersion, " (", kGitSha, ", ABI ", kCudaModuleAbi,
                                    "): rebuild them together")};
  return {m, {}};
}

#else

Loaded load() {
  return {nullptr,
          "this kvsim was built without CUDA (reconfigure with -DKVSIM_CUDA=ON where nvcc and the CUDA toolkit are "
          "installed), use --device cpu"};
}

#endif

const Loaded& loaded() {
  static const Loaded l = load();  // thread-safe, once
  return l;
}

const CudaModule& module() {
  const Loaded& l = loaded();
  if (!l.module) fail<DeviceError>("--device cuda: ", l.error);
  return *l.module;
}

}  // namespace

CudaAvailability cuda_availability() {
  const Loaded& l = loaded();
  if (!l.module) return {false, 0, l.error};
  return l.module->availability();
}

CudaDeviceInfo cuda_device_info(int device) { return module().device_info(device); }

std::unique_ptr<ForwardBackend> make_cuda_backend(const Model& model, const CudaOptions& options) {
  return module().make_backend(model, options);
}

}  // namespace kvsim
