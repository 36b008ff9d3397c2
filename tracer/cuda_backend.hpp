#pragma once
// The CUDA forward pass (docs/cuda.md), behind ForwardBackend. This header has no CUDA types:
// it compiles in every build. The functions below are defined in tracer/cuda_backend.cpp, which
// loads the backend, built as its own module libkvsim_cuda.so, on the first call; nothing else
// loads the CUDA libraries. Without the module (a build without CUDA: -DKVSIM_CUDA=OFF or no
// nvcc found; or a module that cannot be loaded) they report it: CudaAvailability::reason, or
// one clear DeviceError.
#include <cstddef>
#include <memory>
#include <string>

#include "tracer/device.hpp"
#include "tracer/forward_backend.hpp"

namespace kvsim {

struct CudaOptions {
  Precision precision = Precision::kBf16;
  int device = 0;       // CUDA device ordinal
  int max_tokens = 0;   // longest pass (prompt + continuation) the workspace is sized for
  int max_topk = 64;    // largest top-K recorded
};

// Whether the CUDA backend's module is loaded, and how many devices it sees (0 with a reason
// when there is no module, driver or device).
struct CudaAvailability {
  bool built = false;
  int devices = 0;
  std::string reason;  // why devices == 0
};
CudaAvailability cuda_availability();

struct CudaDeviceInfo {
  std::string name;
  int sm_count = 0;
  int clock_khz = 0;  // peak SM clock
  int cc_major = 0, cc_minor = 0;
  std::size_t free_bytes = 0, total_bytes = 0;
};
CudaDeviceInfo cuda_device_info(int device);

// Uploads the model and allocates the workspace for options.max_tokens positions, after
// checking the memory plan (plan_gpu_memory) against cudaMemGetInfo. Throws DeviceError
// without CUDA, without a device, or when the plan does not fit.
std::unique_ptr<ForwardBackend> make_cuda_backend(const Model& model, const CudaOptions& options);

}  // namespace kvsim
