#pragma once
// The CUDA forward pass (docs/cuda.md), behind ForwardBackend. This header has no CUDA types:
// it compiles in every build; a build without CUDA (-DKVSIM_CUDA=OFF, or no nvcc found)
// links tracer/cuda/cuda_stub.cpp, whose factory throws one clear DeviceError.
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

// Whether this build has the CUDA backend, and how many devices it sees (0 with a reason when
// there is no driver or device).
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
