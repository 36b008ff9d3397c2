#pragma once
// GPU tests ([gpu]) skip with a "SKIPPED:" line (ctest reports them as skipped) where
// cudaGetDeviceCount reports no device, or the build has no CUDA.
#include <catch2/catch.hpp>

#include "tracer/cuda_backend.hpp"

#define KVSIM_REQUIRE_GPU()                                                           \
  do {                                                                                \
    const ::kvsim::CudaAvailability gpu_ = ::kvsim::cuda_availability();              \
    if (gpu_.devices == 0) {                                                          \
      WARN("SKIPPED: no CUDA device (" << gpu_.reason << ")");                        \
      return;                                                                         \
    }                                                                                 \
  } while (0)
