// The CUDA backend's entry points in a build without CUDA: one clear error, never a crash.
#include "core/error.hpp"
#include "tracer/cuda_backend.hpp"

namespace kvsim {

namespace {
constexpr const char* kNotBuilt =
    "this kvsim was built without CUDA (reconfigure with -DKVSIM_CUDA=ON where nvcc and the CUDA toolkit are "
    "installed), use --device cpu";
}

CudaAvailability cuda_availability() { return {false, 0, kNotBuilt}; }

CudaDeviceInfo cuda_device_info(int) { fail<DeviceError>("--device cuda: ", kNotBuilt); }

std::unique_ptr<ForwardBackend> make_cuda_backend(const Model&, const CudaOptions&) {
  fail<DeviceError>("--device cuda: ", kNotBuilt);
}

}  // namespace kvsim
