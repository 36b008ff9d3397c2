// The CUDA backend's kernels (docs/cuda.md). Storage types fp32 / bf16 / fp16; every kernel
// computes in fp32. Layouts are stated once, in tracer/cuda/kernels.cuh.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "core/error.hpp"
#include "tracer/cuda/kernel_math.hpp"
#include "tracer/cuda/kernels.cuh"

namespace kvsim::cuda {

namespace {

using kernel_math::online_rescale;
using kernel_math::ranks_before;
using kernel_math::rope_pair;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Reduction over the block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the result. Fixed order: the same inputs give the same bits.
template <typename Op>
__device__ float block_reduce(float v, Op op, float identity) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
  __syncthreads();  // a previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < n_warps ? partial[lane] : identity;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

constexpr int kRowThreads = 256;  // one block per row: norms, log-probs, top-K

template <typename T>
__global__ void rms_norm_kernel(const float* x, const float* gain, T* out, int cols, float eps) {
  const float* row = x + static_cast<std::size_t>(blockIdx.x) * cols;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += row[i] * row[i];
  ss = block_reduce(ss, SumOp{}, 0.0f);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
  T* o = out + static_cast<std::size_t>(blockIdx.x) * cols;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = from_f32<T>(row[i] * inv * gain[i]);
}

template <typename T>
__global__ void qkv_rope_kernel(const float* qkv, const float* bias, const float* cos_t, const float* sin_t, T* q,
                                T* k, T* v, int n, int H, int Hkv, int d, int cap, int pos0, bool interleaved) {
  const int half = d / 2, heads = H + 2 * Hkv;
  const std::size_t total = static_cast<std::size_t>(n) * heads * half;
  for (std::size_t u = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; u < total;
       u += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(u % half);
    const int hh = static_cast<int>((u / half) % heads);
    const int t = static_cast<int>(u / (static_cast<std::size_t>(half) * heads));
    const auto p = rope_pair(interleaved, i, half);
    const float* src = qkv + (static_cast<std::size_t>(t) * heads + hh) * d;
    float x0 = src[p.a], x1 = src[p.b];
    if (bias) {
      x0 += bias[hh * d + p.a];
      x1 += bias[hh * d + p.b];
    }
    T* dst;
    if (hh < H + Hkv) {  // queries and keys rotate; values do not
      const float c = cos_t[static_cast<std::size_t>(t) * half + i], s = sin_t[static_cast<std::size_t>(t) * half + i];
      const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
      x0 = y0;
      x1 = y1;
      dst = hh < H ? q + (static_cast<std::size_t>(hh) * n + t) * d
                   : k + (static_cast<std::size_t>(hh - H) * cap + pos0 + t) * d;
    } else {
      dst = v + (static_cast<std::size_t>(hh - H - Hkv) * cap + pos0 + t) * d;
    }
    dst[p.a] = from_f32<T>(x0);
    dst[p.b] = from_f32<T>(x1);
  }
}

// Attention tiles: a block is 32 rows (queries, or keys for the column sums) x 4 lanes; a
// lane holds dims lane, lane+4, ... of its row in registers (consecutive lanes read
// consecutive shared-memory words), the other operand's tile of kTile rows sits in shared
// memory as fp32. Scores reduce over the 4 lanes with shuffles.
constexpr int kLanes = 4, kBlockRows = 32, kAttnThreads = kLanes * kBlockRows;
template <int kMaxD>
constexpr int tile_rows() {
  return kMaxD >= 128 ? 4096 / kMaxD : 64;  // 16 KiB of fp32 per shared tile
}

template <int kMaxD>
__device__ __forceinline__ float lane_dot(const float (&reg)[kMaxD / kLanes], const float* tile_row, int lane) {
  float part = 0.0f;
#pragma unroll
  for (int e = 0; e < kMaxD / kLanes; ++e) part += reg[e] * tile_row[lane + kLanes * e];
  part += __shfl_xor_sync(0xffffffffu, part, 1);
  part += __shfl_xor_sync(0xffffffffu, part, 2);
  return part;
}

template <typename T, int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    flash_attention_kernel(const T* q, const T* k, const T* v, T* out, float* row_lse, int n, int H, int G, int d,
                           int cap, int pos0, float scale) {
  constexpr int kDims = kMaxD / kLanes, kKeys = tile_rows<kMaxD>();
  __shared__ float ks[kKeys][kMaxD], vs[kKeys][kMaxD];
  const int h = blockIdx.y, g = h / G, lane = threadIdx.x % kLanes;
  const int r = blockIdx.x * kBlockRows + threadIdx.x / kLanes;
  const bool valid = r < n;
  const int qpos = pos0 + r;
  float qr[kDims], o[kDims];
  const T* qrow = q + (static_cast<std::size_t>(h) * n + (valid ? r : 0)) * d;
#pragma unroll
  for (int e = 0; e < kDims; ++e) {
    const int dim = lane + kLanes * e;
    qr[e] = valid && dim < d ? to_f32(qrow[dim]) : 0.0f;
    o[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int n_keys = min(pos0 + (blockIdx.x + 1) * kBlockRows, pos0 + n);  // keys the block's last row sees
  const T* kg = k + static_cast<std::size_t>(g) * cap * d;
  const T* vg = v + static_cast<std::size_t>(g) * cap * d;
  for (int j0 = 0; j0 < n_keys; j0 += kKeys) {
    for (int idx = threadIdx.x; idx < kKeys * kMaxD; idx += kAttnThreads) {
      const int j = idx / kMaxD, dim = idx % kMaxD;
      const bool in = j0 + j < n_keys && dim < d;
      const std::size_t at = static_cast<std::size_t>(j0 + j) * d + dim;
      ks[j][dim] = in ? to_f32(kg[at]) : 0.0f;
      vs[j][dim] = in ? to_f32(vg[at]) : 0.0f;
    }
    __syncthreads();
    float s[kKeys];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      const float dot = lane_dot<kMaxD>(qr, ks[j], lane);
      s[j] = j0 + j <= qpos && j0 + j < n_keys ? dot * scale : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    const float corr = online_rescale(m, l, tile_max);
#pragma unroll
    for (int e = 0; e < kDims; ++e) o[e] *= corr;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      const float p = s[j] == -INFINITY ? 0.0f : expf(s[j] - m);
      l += p;
#pragma unroll
      for (int e = 0; e < kDims; ++e) o[e] += p * vs[j][lane + kLanes * e];
    }
    __syncthreads();
  }
  if (!valid) return;
  T* orow = out + static_cast<std::size_t>(r) * H * d + static_cast<std::size_t>(h) * d;
  const float inv = 1.0f / l;
#pragma unroll
  for (int e = 0; e < kDims; ++e) {
    const int dim = lane + kLanes * e;
    if (dim < d) orow[dim] = from_f32<T>(o[e] * inv);
  }
  if (lane == 0) row_lse[static_cast<std::size_t>(h) * n + r] = m + logf(l);
}

template <typename T, int kMaxD>
__global__ void __launch_bounds__(kAttnThreads)
    attention_colsum_kernel(const T* q, const T* k, const float* row_lse, float* colsum, int n, int T_len, int H,
                            int G, int d, int cap, float scale) {
  constexpr int kDims = kMaxD / kLanes, kQueries = tile_rows<kMaxD>();
  __shared__ float qs[kQueries][kMaxD];
  __shared__ float lse_s[kQueries];
  const int h = blockIdx.y, g = h / G, lane = threadIdx.x % kLanes;
  const int i = blockIdx.x * kBlockRows + threadIdx.x / kLanes;  // key position
  const bool valid = i < T_len;
  float kr[kDims];
  const T* krow = k + (static_cast<std::size_t>(g) * cap + (valid ? i : 0)) * d;
#pragma unroll
  for (int e = 0; e < kDims; ++e) {
    const int dim = lane + kLanes * e;
    kr[e] = valid && dim < d ? to_f32(krow[dim]) : 0.0f;
  }
  float acc = 0.0f;
  const T* qh = q + static_cast<std::size_t>(h) * n * d;
  const float* lse_h = row_lse + static_cast<std::size_t>(h) * n;
  // Causal: only queries at or after the block's first key see it.
  for (int q0 = blockIdx.x * kBlockRows; q0 < T_len; q0 += kQueries) {
    for (int idx = threadIdx.x; idx < kQueries * kMaxD; idx += kAttnThreads) {
      const int j = idx / kMaxD, dim = idx % kMaxD;
      qs[j][dim] = q0 + j < T_len && dim < d ? to_f32(qh[static_cast<std::size_t>(q0 + j) * d + dim]) : 0.0f;
    }
    for (int j = threadIdx.x; j < kQueries; j += kAttnThreads) lse_s[j] = q0 + j < T_len ? lse_h[q0 + j] : 0.0f;
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < kQueries; ++j) {
      const float dot = lane_dot<kMaxD>(kr, qs[j], lane);
      const int qp = q0 + j;
      if (qp >= i && qp < T_len) acc += expf(dot * scale - lse_s[j]);
    }
    __syncthreads();
  }
  if (valid && lane == 0) colsum[static_cast<std::size_t>(h) * T_len + i] = acc;
}

template <typename T>
__global__ void swiglu_kernel(const float* gate_up, T* out, int n, int F) {
  const std::size_t total = static_cast<std::size_t>(n) * F;
  for (std::size_t u = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; u < total;
       u += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t t = u / F, f = u % F;
    const float g = gate_up[t * 2 * F + f], up = gate_up[t * 2 * F + F + f];
    out[u] = from_f32<T>(g / (1.0f + expf(-g)) * up);
  }
}

__global__ void row_logprob_kernel(const float* logits, const int* target, float* logprob, float* lse, int V) {
  const float* z = logits + static_cast<std::size_t>(blockIdx.x) * V;
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
  mx = block_reduce(mx, MaxOp{}, -INFINITY);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(z[i] - mx);
  sum = block_reduce(sum, SumOp{}, 0.0f);
  if (threadIdx.x == 0) {
    const float row_lse = mx + logf(sum);
    lse[blockIdx.x] = row_lse;
    logprob[blockIdx.x] = z[target[blockIdx.x]] - row_lse;
  }
}

// K rounds of a block-wide arg-max over the logits ranked after the previous pick: O(K V)
// per row, run for the M continuation rows only.
__global__ void topk_kernel(const float* logits, int* ids, float* vals, int V, int K) {
  __shared__ float warp_v[32];
  __shared__ int warp_i[32];
  __shared__ float prev_v;
  __shared__ int prev_i;
  const float* z = logits + static_cast<std::size_t>(blockIdx.x) * V;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  if (threadIdx.x == 0) prev_v = INFINITY, prev_i = -1;
  __syncthreads();
  for (int kk = 0; kk < K; ++kk) {
    const float pv = prev_v;
    const int pi = prev_i;
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
      if (ranks_before(pv, pi, z[i], i) && ranks_before(z[i], i, bv, bi)) bv = z[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ranks_before(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (lane == 0) warp_v[warp] = bv, warp_i[warp] = bi;
    __syncthreads();
    if (warp == 0) {
      bv = lane < n_warps ? warp_v[lane] : -INFINITY;
      bi = lane < n_warps ? warp_i[lane] : INT_MAX;
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ranks_before(ov, oi, bv, bi)) bv = ov, bi = oi;
      }
      if (lane == 0) {
        ids[static_cast<std::size_t>(blockIdx.x) * K + kk] = bi;
        vals[static_cast<std::size_t>(blockIdx.x) * K + kk] = bv;
        prev_v = bv, prev_i = bi;
      }
    }
    __syncthreads();
  }
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail<DeviceError>("CUDA kernel ", what, ": ", cudaGetErrorString(e));
}

int grid_for(std::size_t work, int threads) {
  const std::size_t blocks = (work + threads - 1) / threads;
  return static_cast<int>(blocks < 65536 * 4 ? (blocks > 0 ? blocks : 1) : 65536 * 4);
}

// Calls fn with a null pointer of the storage type (for template dispatch).
template <typename Fn>
void dispatch(DType t, Fn&& fn) {
  switch (t) {
    case DType::kF32: fn(static_cast<float*>(nullptr)); break;
    case DType::kBF16: fn(static_cast<__nv_bfloat16*>(nullptr)); break;
    case DType::kF16: fn(static_cast<__half*>(nullptr)); break;
  }
}

// Calls fn with the smallest supported register tile (32, 64, 128, 256) that holds d dims.
template <typename Fn>
void dispatch_head_dim(int d, Fn&& fn) {
  if (d <= 32) fn(std::integral_constant<int, 32>{});
  else if (d <= 64) fn(std::integral_constant<int, 64>{});
  else if (d <= 128) fn(std::integral_constant<int, 128>{});
  else if (d <= 256) fn(std::integral_constant<int, 256>{});
  else fail<DeviceError>("CUDA attention: head_dim ", d, " exceeds the kernels' 256");
}

}  // namespace

void rms_norm(const float* x, const float* gain, void* out, DType t, int rows, int cols, float eps, cudaStream_t s) {
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    rms_norm_kernel<T><<<rows, kRowThreads, 0, s>>>(x, gain, static_cast<T*>(out), cols, eps);
  });
  check_launch("rms_norm");
}

void qkv_rope(const float* qkv, const float* bias, const float* cos, const float* sin, void* q, void* k, void* v,
              DType t, int n, int H, int Hkv, int d, int cap, int pos0, bool interleaved, cudaStream_t s) {
  const std::size_t work = static_cast<std::size_t>(n) * (H + 2 * Hkv) * (d / 2);
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    qkv_rope_kernel<T><<<grid_for(work, 256), 256, 0, s>>>(qkv, bias, cos, sin, static_cast<T*>(q), static_cast<T*>(k),
                                                           static_cast<T*>(v), n, H, Hkv, d, cap, pos0, interleaved);
  });
  check_launch("qkv_rope");
}

void flash_attention(const void* q, const void* k, const void* v, void* out, float* row_lse, DType t, int n, int H,
                     int Hkv, int d, int cap, int pos0, cudaStream_t s) {
  const dim3 grid((n + kBlockRows - 1) / kBlockRows, H);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_head_dim(d, [&](auto max_d) {
      flash_attention_kernel<T, decltype(max_d)::value><<<grid, kAttnThreads, 0, s>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), row_lse,
          n, H, H / Hkv, d, cap, pos0, scale);
    });
  });
  check_launch("flash_attention");
}

void attention_colsum(const void* q, const void* k, const float* row_lse, float* colsum, DType t, int n, int T_len,
                      int H, int Hkv, int d, int cap, cudaStream_t s) {
  const dim3 grid((T_len + kBlockRows - 1) / kBlockRows, H);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_head_dim(d, [&](auto max_d) {
      attention_colsum_kernel<T, decltype(max_d)::value><<<grid, kAttnThreads, 0, s>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), row_lse, colsum, n, T_len, H, H / Hkv, d, cap, scale);
    });
  });
  check_launch("attention_colsum");
}

void swiglu(const float* gate_up, void* out, DType t, int n, int F, cudaStream_t s) {
  dispatch(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    swiglu_kernel<T><<<grid_for(static_cast<std::size_t>(n) * F, 256), 256, 0, s>>>(gate_up, static_cast<T*>(out), n, F);
  });
  check_launch("swiglu");
}

void row_logprob(const float* logits, const int* target, float* logprob, float* lse, int rows, int V, cudaStream_t s) {
  if (rows <= 0) return;
  row_logprob_kernel<<<rows, kRowThreads, 0, s>>>(logits, target, logprob, lse, V);
  check_launch("row_logprob");
}

void topk(const float* logits, int* ids, float* vals, int rows, int V, int K, cudaStream_t s) {
  if (rows <= 0) return;
  topk_kernel<<<rows, kRowThreads, 0, s>>>(logits, ids, vals, V, K);
  check_launch("topk");
}

}  // namespace kvsim::cuda
