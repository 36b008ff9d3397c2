#pragma once
// What libkvsim_cuda.so, the CUDA backend built as a module of its own (docs/cuda.md, "Build"),
// exports: one C function returning this table. The loader (tracer/cuda_backend.cpp) opens the
// module on the first call that needs CUDA and reaches the backend only through the table.
#include <memory>

#include "tracer/cuda_backend.hpp"

namespace kvsim {

// Raised whenever the table or the types it passes (Model, CudaOptions, ForwardBackend, ...)
// change in a way a module of another build would misread.
inline constexpr int kCudaModuleAbi = 1;

struct CudaModule {
  int abi = 0;                    // kCudaModuleAbi of the build the module comes from
  const char* version = nullptr;  // that build's kToolVersion and kGitSha
  const char* git_sha = nullptr;
  CudaAvailability (*availability)() = nullptr;
  CudaDeviceInfo (*device_info)(int device) = nullptr;
  std::unique_ptr<ForwardBackend> (*make_backend)(const Model& model, const CudaOptions& options) = nullptr;
};

}  // namespace kvsim

// The module's one exported symbol.
inline constexpr const char* kCudaModuleEntry = "kvsim_cuda_module";
extern "C" const kvsim::CudaModule* kvsim_cuda_module();
