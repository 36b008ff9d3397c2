#pragma once
// GPU tests ([gpu]) skip (tests/support/skip.hpp) where cudaGetDeviceCount reports no device,
// or the build has no CUDA.
#include <catch2/catch.hpp>

#include "skip.hpp"

#include "tracer/cuda_backend.hpp"

#define KVSIM_REQUIRE_GPU()                                                           \
  do {                                                                                \
    const ::kvsim::CudaAvailability gpu_ = ::kvsim::cuda_availability();              \
    if (gpu_.devices == 0) KVSIM_SKIP("no CUDA device (" << gpu_.reason << ")");     \
  } while (0)
