// The CUDA backend's host side (docs/cuda.md): weights and workspace on the device, the layer
// loop on a compute stream, cuBLAS GEMMs, and the recorded tensors copied to pinned host
// buffers on a copy stream while the next layer runs (double-buffered, ordered by events).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/error.hpp"
#include "core/half.hpp"
#include "core/version.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/cuda/cuda_module.hpp"
#include "tracer/cuda/kernel_math.hpp"
#include "tracer/cuda/kernels.cuh"

namespace kvsim {

namespace {

using cuda::DType;

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail<DeviceError>("CUDA ", what, ": ", cudaGetErrorString(e));
}
void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail<DeviceError>("cuBLAS ", what, ": ", cublasGetStatusString(st));
}
#define KVSIM_CUDA_CALL(call) check_cuda((call), #call)

// Owning device (or page-locked host) allocation.
template <bool kPinned>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    if constexpr (kPinned) KVSIM_CUDA_CALL(cudaMallocHost(&p_, bytes));
    else KVSIM_CUDA_CALL(cudaMalloc(&p_, bytes));
  }
  Buffer(Buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_) {}
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~Buffer() {
    if (!p_) return;
    if constexpr (kPinned) cudaFreeHost(p_);
    else cudaFree(p_);
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
  // Byte offset into the buffer, typed.
  template <typename T = void>
  T* at(std::size_t byte_offset) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};
using DeviceBuffer = Buffer<false>;
using PinnedBuffer = Buffer<true>;

DType dtype_of(Precision p) {
  return p == Precision::kFp32 ? DType::kF32 : p == Precision::kBf16 ? DType::kBF16 : DType::kF16;
}

// Host fp32 -> storage type, into dst (element size precision_bytes).
void encode(std::span<const float> src, Precision p, void* dst) {
  constexpr std::size_t kGrain = 1 << 16;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, src.size(), kGrain), [&](const tbb::blocked_range<std::size_t>& r) {
    const auto part = src.subspan(r.begin(), r.size());
    if (p == Precision::kFp32) {
      std::memcpy(static_cast<float*>(dst) + r.begin(), part.data(), part.size_bytes());
    } else if (p == Precision::kFp16) {
      float_to_half(part, std::span<half_bits>(static_cast<half_bits*>(dst) + r.begin(), part.size()));
    } else {
      auto* out = static_cast<std::uint16_t*>(dst) + r.begin();
      for (std::size_t i = 0; i < part.size(); ++i) out[i] = kernel_math::float_to_bf16_bits(part[i]);
    }
  });
}

// Storage type -> fp32 (the recorded tensors, on the host).
void decode(const void* src, Precision p, std::size_t n, std::vector<float>& out) {
  out.resize(n);
  if (p == Precision::kFp32) {
    std::memcpy(out.data(), src, n * 4);
  } else if (p == Precision::kFp16) {
    half_to_float(std::span<const half_bits>(static_cast<const half_bits*>(src), n), out);
  } else {
    const auto* b = static_cast<const std::uint16_t*>(src);
    for (std::size_t i = 0; i < n; ++i) out[i] = kernel_math::bf16_bits_to_float(b[i]);
  }
}

// Rows of several host matrices stacked into one device matrix in the storage type.
DeviceBuffer upload_stacked(std::initializer_list<const MatrixRM*> parts, Precision p) {
  std::size_t n = 0;
  for (const MatrixRM* m : parts) n += m->size();
  std::vector<float> stacked;
  stacked.reserve(n);
  for (const MatrixRM* m : parts) stacked.insert(stacked.end(), m->data(), m->data() + m->size());
  std::vector<char> host(n * precision_bytes(p));
  encode(stacked, p, host.data());
  DeviceBuffer d(host.size());
  KVSIM_CUDA_CALL(cudaMemcpy(d.get(), host.data(), host.size(), cudaMemcpyHostToDevice));
  return d;
}

DeviceBuffer upload_f32(const std::vector<float>& v) {
  DeviceBuffer d(v.size() * 4);
  if (!v.empty()) KVSIM_CUDA_CALL(cudaMemcpy(d.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return d;
}

class Stream {
 public:
  Stream() { KVSIM_CUDA_CALL(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event() { KVSIM_CUDA_CALL(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  operator cudaEvent_t() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

int device_count(std::string* reason) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error state of the failed query
    if (reason) *reason = cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && reason) *reason = "no CUDA device";
  return n;
}

class CudaForward;

// A decode sequence: every layer's K/V [L][Hkv, cap, d] on the device.
class CudaSequence : public DecodeSequence {
 public:
  CudaSequence(const CudaForward& fwd, int capacity);
  std::vector<float> append(std::span<const int> tokens) override;

  int capacity = 0;
  int length = 0;
  DeviceBuffer keys, values;

 private:
  const CudaForward& fwd_;
};

class CudaForward final : public ForwardBackend {
 public:
  CudaForward(const Model& model, const CudaOptions& options);
  ~CudaForward() override {
    if (cublas_) cublasDestroy(cublas_);
  }
  const Model& model() const override { return model_; }
  const char* name() const override { return "cuda"; }
  void record(std::span<const int> tokens, const RecordShape& shape, PromptSink& sink) const override;
  std::unique_ptr<DecodeSequence> start(int capacity) const override {
    return std::make_unique<CudaSequence>(*this, capacity);
  }
  std::vector<float> decode_step(std::span<const int> tokens, CudaSequence& seq) const;
  std::size_t storage_bytes() const { return precision_bytes(precision_); }
  const std::string& device_label() const { return label_; }

 private:
  struct LayerDevice {
    DeviceBuffer w_qkv, w_o, w_gate_up, w_down;  // storage type, [out, in]
    DeviceBuffer f32;                            // attn_norm [D], ffn_norm [D], qkv bias [(H+2Hkv) d]
  };
  // One set of a layer's recorded tensors on the host (page-locked), storage type except colsum.
  struct HostSet {
    PinnedBuffer keys, values, queries, colsum;
  };

  // Y [n, out] fp32 (= beta Y +) X [n, in] · W [out, in]ᵀ, X and W in the storage type.
  void gemm(const void* x, const void* w, float* y, int n, int in, int out, float beta) const;
  void upload_inputs(std::span<const int> tokens, int pos0) const;
  void attention_block(int l, int n, int pos0, void* q, void* k, void* v, int cap, float* colsum, int T) const;
  void mlp_block(int l, int n) const;
  void* st(const DeviceBuffer& b, std::size_t elements) const { return b.at(elements * storage_bytes()); }

  const Model& model_;
  Precision precision_;
  DType dtype_;
  GpuLayout layout_;
  std::string label_;
  std::vector<LayerDevice> layers_;
  DeviceBuffer final_norm_, classifier_;
  // Workspace for one pass, shapes in GpuLayout (N = max_tokens): x_ [N, D] fp32, xn_ [N, D],
  // qkv_ [N, (H + 2 Hkv) d] fp32, att_ [N, H d], row_lse_ [H, N] fp32, gate_up_ [N, 2F] fp32,
  // mlp_ [N, F]; two sets (double buffering) of q_ [H, N, d], k_/v_ [Hkv, N, d], colsum_ [H, N]
  // fp32. Storage type where no type is given.
  DeviceBuffer x_, xn_, qkv_, att_, row_lse_, gate_up_, mlp_, q_[2], k_[2], v_[2], colsum_[2];
  // logits_ [min(N, kLogitRowBlock), V] fp32; row_logprob_, row_lse_out_, target_ [N];
  // topk_ids_/topk_vals_ [N, K]; rope_ cos and sin [N, d/2] each; cublas_ws_ cuBLAS's workspace.
  DeviceBuffer logits_, row_logprob_, row_lse_out_, target_, topk_ids_, topk_vals_, rope_, cublas_ws_;
  PinnedBuffer x_host_;
  HostSet host_[2];
  Stream compute_, copy_;
  Event computed_[2], copied_[2];
  cublasHandle_t cublas_ = nullptr;
  mutable std::vector<float> decoded_[4];  // keys, values, q_window, q_cont in fp32 (reused)
};

CudaForward::CudaForward(const Model& model, const CudaOptions& options)
    : model_(model), precision_(options.precision), dtype_(dtype_of(options.precision)) {
  const ModelConfig& c = model.config;
  if (options.max_tokens <= 0) fail<InputError>("--device cuda: max_tokens must be positive, got ", options.max_tokens);
  KVSIM_CUDA_CALL(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  KVSIM_CUDA_CALL(cudaGetDeviceProperties(&prop, options.device));
  label_ = "cuda:" + std::to_string(options.device) + " (" + prop.name + ")";
  layout_ = gpu_layout(c, options.max_tokens, 2, options.max_topk);
  const GpuMemoryPlan plan = plan_gpu_memory(layout_, c, precision_);
  std::size_t free_bytes = 0, total_bytes = 0;
  KVSIM_CUDA_CALL(cudaMemGetInfo(&free_bytes, &total_bytes));
  require_fits(plan, free_bytes, label_);

  const GpuLayout& g = layout_;
  const std::size_t s = storage_bytes();
  for (const LayerWeights& w : model.layers) {
    LayerDevice d;
    d.w_qkv = upload_stacked({&w.wq, &w.wk, &w.wv}, precision_);
    d.w_o = upload_stacked({&w.wo}, precision_);
    d.w_gate_up = upload_stacked({&w.w_gate, &w.w_up}, precision_);
    d.w_down = upload_stacked({&w.w_down}, precision_);
    std::vector<float> f32(w.attn_norm.data(), w.attn_norm.data() + c.hidden);
    f32.insert(f32.end(), w.ffn_norm.data(), w.ffn_norm.data() + c.hidden);
    for (const VectorF* b : {&w.bq, &w.bk, &w.bv}) f32.insert(f32.end(), b->data(), b->data() + b->size());
    d.f32 = upload_f32(f32);
    layers_.push_back(std::move(d));
  }
  final_norm_ = upload_f32(std::vector<float>(model.final_norm.data(), model.final_norm.data() + c.hidden));
  classifier_ = upload_stacked({&model.output_matrix()}, precision_);

  x_ = DeviceBuffer(g.x * 4);
  xn_ = DeviceBuffer(g.xn * s);
  qkv_ = DeviceBuffer(g.qkv * 4);
  att_ = DeviceBuffer(g.att * s);
  row_lse_ = DeviceBuffer(g.row_lse * 4);
  gate_up_ = DeviceBuffer(g.gate_up * 4);
  mlp_ = DeviceBuffer(g.mlp * s);
  for (int i = 0; i < 2; ++i) {
    q_[i] = DeviceBuffer(g.q_one * s);
    k_[i] = DeviceBuffer(g.kv_one * s);
    v_[i] = DeviceBuffer(g.kv_one * s);
    colsum_[i] = DeviceBuffer(g.colsum_one * 4);
    host_[i].keys = PinnedBuffer(g.kv_one * s);
    host_[i].values = PinnedBuffer(g.kv_one * s);
    host_[i].queries = PinnedBuffer(g.q_one * s);
    host_[i].colsum = PinnedBuffer(g.colsum_one * 4);
  }
  const std::size_t N = g.n_tokens;
  logits_ = DeviceBuffer(g.logits * 4);
  row_logprob_ = DeviceBuffer(N * 4);
  row_lse_out_ = DeviceBuffer(N * 4);
  target_ = DeviceBuffer(N * 4);
  topk_ids_ = DeviceBuffer(g.topk * 4);
  topk_vals_ = DeviceBuffer(g.topk * 4);
  rope_ = DeviceBuffer(g.rope * 4);
  cublas_ws_ = DeviceBuffer(kCublasWorkspaceBytes);
  x_host_ = PinnedBuffer(g.x * 4);

  check_cublas(cublasCreate(&cublas_), "create");
  check_cublas(cublasSetStream(cublas_, compute_), "set stream");
  check_cublas(cublasSetWorkspace(cublas_, cublas_ws_.get(), kCublasWorkspaceBytes), "set workspace");
}

void CudaForward::gemm(const void* x, const void* w, float* y, int n, int in, int out, float beta) const {
  // Row-major Y [n, out] is column-major Yᵀ [out, n] = W (col-major [in, out])ᵀ · Xᵀ (col-major [in, n]).
  const float alpha = 1.0f;
  const cudaDataType ab = dtype_ == DType::kF32 ? CUDA_R_32F : dtype_ == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  // fp32 mode is the check against the CPU reference: no TF32, no reduced-precision shortcuts.
  const cublasComputeType_t compute = dtype_ == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  check_cublas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, ab, in, x, ab, in, &beta, y,
                            CUDA_R_32F, out, compute, CUBLAS_GEMM_DEFAULT),
               "gemm");
}

void CudaForward::upload_inputs(std::span<const int> tokens, int pos0) const {
  const ModelConfig& c = model_.config;
  const int n = static_cast<int>(tokens.size()), D = c.hidden, half = c.head_dim / 2;
  float* xh = x_host_.get<float>();
  for (int t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      fail<InputError>("forward: token id ", tokens[t], " at position ", pos0 + t, " is outside the vocabulary [0, ",
                       c.vocab, ")");
    std::copy_n(model_.embed.row(tokens[t]).data(), D, xh + static_cast<std::size_t>(t) * D);
  }
  KVSIM_CUDA_CALL(cudaMemcpyAsync(x_.get(), xh, static_cast<std::size_t>(n) * D * 4, cudaMemcpyHostToDevice, compute_));
  // cos then sin [n, d/2], the CPU's fp32 angles (rope_frequencies).
  const std::vector<float> freq = rope_frequencies(c.head_dim, c.rope_theta);
  std::vector<float> table(static_cast<std::size_t>(2) * n * half);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos0 + t) * freq[i];
      table[static_cast<std::size_t>(t) * half + i] = std::cos(angle);
      table[static_cast<std::size_t>(n + t) * half + i] = std::sin(angle);
    }
  // From pageable memory: the call returns once `table` is staged, so it may be freed.
  KVSIM_CUDA_CALL(cudaMemcpyAsync(rope_.get(), table.data(), table.size() * 4, cudaMemcpyHostToDevice, compute_));
}

void CudaForward::attention_block(int l, int n, int pos0, void* q, void* k, void* v, int cap, float* colsum,
                                  int T) const {
  const ModelConfig& c = model_.config;
  const LayerDevice& w = layers_[l];
  const int D = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, d = c.head_dim;
  const float* f32 = w.f32.get<float>();
  const int half = d / 2;
  cuda::rms_norm(x_.get<float>(), f32, xn_.get(), dtype_, n, D, static_cast<float>(c.norm_eps), compute_);
  gemm(xn_.get(), w.w_qkv.get(), qkv_.get<float>(), n, D, static_cast<int>(layout_.qkv_dim), 0.0f);
  const float* rope = rope_.get<float>();
  cuda::qkv_rope(qkv_.get<float>(), c.qkv_bias ? f32 + 2 * D : nullptr, rope, rope + static_cast<std::size_t>(n) * half,
                 q, k, v, dtype_, n, H, Hkv, d, cap, pos0, c.rope_style == RopeStyle::kInterleaved, compute_);
  cuda::flash_attention(q, k, v, att_.get(), row_lse_.get<float>(), dtype_, n, H, Hkv, d, cap, pos0, compute_);
  if (colsum) cuda::attention_colsum(q, k, row_lse_.get<float>(), colsum, dtype_, n, T, H, Hkv, d, cap, compute_);
}

void CudaForward::mlp_block(int l, int n) const {
  const ModelConfig& c = model_.config;
  const LayerDevice& w = layers_[l];
  const int D = c.hidden, F = c.ffn_hidden;
  // Residual adds ride on the GEMMs (beta = 1 into the fp32 residual stream).
  gemm(att_.get(), w.w_o.get(), x_.get<float>(), n, c.q_dim(), D, 1.0f);
  cuda::rms_norm(x_.get<float>(), w.f32.get<float>() + D, xn_.get(), dtype_, n, D, static_cast<float>(c.norm_eps),
                 compute_);
  gemm(xn_.get(), w.w_gate_up.get(), gate_up_.get<float>(), n, D, 2 * F, 0.0f);
  cuda::swiglu(gate_up_.get<float>(), mlp_.get(), dtype_, n, F, compute_);
  gemm(mlp_.get(), w.w_down.get(), x_.get<float>(), n, F, D, 1.0f);
}

void CudaForward::record(std::span<const int> tokens, const RecordShape& shape, PromptSink& sink) const {
  const ModelConfig& c = model_.config;
  const int N = shape.n_tokens(), T = shape.T, M = shape.M, W = shape.W, K = shape.K;
  const int H = c.n_heads, Hkv = c.n_kv_heads, d = c.head_dim, D = c.hidden, V = c.vocab;
  if (N > layout_.n_tokens)
    fail<InputError>(label_, ": a ", N, "-token prompt exceeds the workspace sized for ", layout_.n_tokens,
                     " (CudaOptions::max_tokens)");
  if (static_cast<std::size_t>(M) * K > layout_.topk)
    fail<InputError>(label_, ": top-", K, " over ", M, " positions exceeds the workspace (CudaOptions::max_topk)");
  const std::size_t s = storage_bytes();
  upload_inputs(tokens, 0);
  std::vector<int> target(std::max(N - 1, 0));
  for (int t = 0; t + 1 < N; ++t) target[t] = tokens[t + 1];
  if (!target.empty())
    KVSIM_CUDA_CALL(cudaMemcpyAsync(target_.get(), target.data(), target.size() * 4, cudaMemcpyHostToDevice, compute_));

  const std::size_t kv_n = static_cast<std::size_t>(Hkv) * N * d;
  // Copies layer l's recorded tensors (set l % 2) to the host on the copy stream.
  auto enqueue_copy = [&](int set) {
    KVSIM_CUDA_CALL(cudaStreamWaitEvent(copy_, computed_[set], 0));
    const HostSet& h = host_[set];
    KVSIM_CUDA_CALL(cudaMemcpyAsync(h.keys.get(), k_[set].get(), kv_n * s, cudaMemcpyDeviceToHost, copy_));
    KVSIM_CUDA_CALL(cudaMemcpyAsync(h.values.get(), v_[set].get(), kv_n * s, cudaMemcpyDeviceToHost, copy_));
    // Queries [H, N, d] -> window rows T-W..T-1 [H, W, d], then continuation rows [H, M, d].
    const std::size_t row = static_cast<std::size_t>(d) * s, pitch = static_cast<std::size_t>(N) * row;
    KVSIM_CUDA_CALL(cudaMemcpy2DAsync(h.queries.get(), W * row, q_[set].at((T - W) * row), pitch, W * row, H,
                                      cudaMemcpyDeviceToHost, copy_));
    if (M > 0)
      KVSIM_CUDA_CALL(cudaMemcpy2DAsync(h.queries.at(static_cast<std::size_t>(H) * W * row), M * row,
                                        q_[set].at(T * row), pitch, M * row, H, cudaMemcpyDeviceToHost, copy_));
    KVSIM_CUDA_CALL(cudaMemcpyAsync(h.colsum.get(), colsum_[set].get(), static_cast<std::size_t>(H) * T * 4,
                                    cudaMemcpyDeviceToHost, copy_));
    KVSIM_CUDA_CALL(cudaEventRecord(copied_[set], copy_));
  };
  // Hands layer l to the sink (HDF5 writing happens here, while the device runs later layers).
  auto deliver = [&](int l) {
    const int set = l % 2;
    KVSIM_CUDA_CALL(cudaEventSynchronize(copied_[set]));
    const HostSet& h = host_[set];
    const std::size_t qw_n = static_cast<std::size_t>(H) * W * d, qc_n = static_cast<std::size_t>(H) * M * d;
    decode(h.keys.get(), precision_, kv_n, decoded_[0]);
    decode(h.values.get(), precision_, kv_n, decoded_[1]);
    decode(h.queries.get(), precision_, qw_n, decoded_[2]);
    decode(h.queries.at(qw_n * s), precision_, qc_n, decoded_[3]);
    LayerView view;
    view.keys = decoded_[0];
    view.values = decoded_[1];
    view.q_window = decoded_[2];
    view.q_cont = decoded_[3];
    view.attn_colsum = std::span<const float>(h.colsum.get<float>(), static_cast<std::size_t>(H) * T);
    sink.layer(l, view);
  };

  for (int l = 0; l < c.n_layers; ++l) {
    const int set = l % 2;
    // Set `set` was last copied out for layer l-2, which the host has already delivered.
    KVSIM_CUDA_CALL(cudaStreamWaitEvent(compute_, copied_[set], 0));
    attention_block(l, N, 0, q_[set].get(), k_[set].get(), v_[set].get(), N, colsum_[set].get<float>(), T);
    KVSIM_CUDA_CALL(cudaEventRecord(computed_[set], compute_));
    enqueue_copy(set);
    mlp_block(l, N);
    if (l > 0) deliver(l - 1);
  }
  deliver(c.n_layers - 1);

  // Log-probs of positions 0..N-2 (position t predicts token t+1) and top-K of the
  // continuation rows t >= T-1, from logits in blocks of kLogitRowBlock rows.
  cuda::rms_norm(x_.get<float>(), final_norm_.get<float>(), xn_.get(), dtype_, N, D, static_cast<float>(c.norm_eps),
                 compute_);
  const int rows = N - 1;
  for (int r0 = 0; r0 < rows; r0 += kLogitRowBlock) {
    const int nr = std::min(kLogitRowBlock, rows - r0);
    gemm(st(xn_, static_cast<std::size_t>(r0) * D), classifier_.get(), logits_.get<float>(), nr, D, V, 0.0f);
    cuda::row_logprob(logits_.get<float>(), target_.get<int>() + r0, row_logprob_.get<float>() + r0,
                      row_lse_out_.get<float>() + r0, nr, V, compute_);
    const int c0 = std::max(r0, T - 1);
    if (c0 < r0 + nr)
      cuda::topk(logits_.get<float>() + static_cast<std::size_t>(c0 - r0) * V,
                 topk_ids_.get<int>() + static_cast<std::size_t>(c0 - (T - 1)) * K,
                 topk_vals_.get<float>() + static_cast<std::size_t>(c0 - (T - 1)) * K, r0 + nr - c0, V, K, compute_);
  }
  std::vector<float> lp(rows), lse(rows);
  PromptOutputs out;
  out.tokens.assign(tokens.begin(), tokens.end());
  out.cont_topk_ids.assign(static_cast<std::size_t>(M) * K, 0);
  out.cont_topk_logits.assign(static_cast<std::size_t>(M) * K, 0.0f);
  if (rows > 0) {
    KVSIM_CUDA_CALL(cudaMemcpyAsync(lp.data(), row_logprob_.get(), rows * 4, cudaMemcpyDeviceToHost, compute_));
    KVSIM_CUDA_CALL(cudaMemcpyAsync(lse.data(), row_lse_out_.get(), rows * 4, cudaMemcpyDeviceToHost, compute_));
  }
  if (M > 0) {
    KVSIM_CUDA_CALL(cudaMemcpyAsync(out.cont_topk_ids.data(), topk_ids_.get(), out.cont_topk_ids.size() * 4,
                                    cudaMemcpyDeviceToHost, compute_));
    KVSIM_CUDA_CALL(cudaMemcpyAsync(out.cont_topk_logits.data(), topk_vals_.get(), out.cont_topk_logits.size() * 4,
                                    cudaMemcpyDeviceToHost, compute_));
  }
  // The residual stream before the final norm at the continuation positions (fp32), for the
  // logit-space Δ-NLL estimate (trace dataset cont_residual).
  out.cont_residual.assign(static_cast<std::size_t>(M) * D, 0.0f);
  if (M > 0)
    KVSIM_CUDA_CALL(cudaMemcpyAsync(out.cont_residual.data(), x_.get<float>() + static_cast<std::size_t>(T) * D,
                                    out.cont_residual.size() * 4, cudaMemcpyDeviceToHost, compute_));
  KVSIM_CUDA_CALL(cudaStreamSynchronize(compute_));
  out.prompt_logprob.assign(T, 0.0f);
  out.cont_logprob.assign(M, 0.0f);
  out.cont_logsumexp.assign(M, 0.0f);
  for (int t = 0; t + 1 < T; ++t) out.prompt_logprob[t + 1] = lp[t];
  for (int j = 0; j < M; ++j) {
    out.cont_logprob[j] = lp[T - 1 + j];
    out.cont_logsumexp[j] = lse[T - 1 + j];
  }
  sink.outputs(out);
}

std::vector<float> CudaForward::decode_step(std::span<const int> tokens, CudaSequence& seq) const {
  const ModelConfig& c = model_.config;
  const int n = static_cast<int>(tokens.size()), pos0 = seq.length;
  if (n == 0) fail<InputError>("forward: no tokens");
  if (pos0 + n > seq.capacity)
    fail<InputError>("forward: ", pos0 + n, " positions exceed the cache capacity ", seq.capacity);
  if (n > layout_.n_tokens)
    fail<InputError>(label_, ": ", n, " tokens in one pass exceed the workspace sized for ", layout_.n_tokens);
  upload_inputs(tokens, pos0);
  const std::size_t per_layer = static_cast<std::size_t>(c.n_kv_heads) * seq.capacity * c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    attention_block(l, n, pos0, q_[0].get(), st(seq.keys, l * per_layer), st(seq.values, l * per_layer), seq.capacity,
                    nullptr, 0);
    mlp_block(l, n);
  }
  seq.length = pos0 + n;
  const int D = c.hidden, V = c.vocab;
  cuda::rms_norm(x_.get<float>() + static_cast<std::size_t>(n - 1) * D, final_norm_.get<float>(), xn_.get(), dtype_, 1,
                 D, static_cast<float>(c.norm_eps), compute_);
  gemm(xn_.get(), classifier_.get(), logits_.get<float>(), 1, D, V, 0.0f);
  std::vector<float> logits(V);
  KVSIM_CUDA_CALL(cudaMemcpyAsync(logits.data(), logits_.get(), V * 4, cudaMemcpyDeviceToHost, compute_));
  KVSIM_CUDA_CALL(cudaStreamSynchronize(compute_));
  return logits;
}

CudaSequence::CudaSequence(const CudaForward& fwd, int cap) : capacity(cap), fwd_(fwd) {
  const ModelConfig& c = fwd.model().config;
  const std::size_t bytes =
      static_cast<std::size_t>(c.n_layers) * c.n_kv_heads * cap * c.head_dim * fwd.storage_bytes();
  std::size_t free_bytes = 0, total_bytes = 0;
  KVSIM_CUDA_CALL(cudaMemGetInfo(&free_bytes, &total_bytes));
  GpuMemoryPlan plan;
  plan.kv_cache = 2 * bytes;
  require_fits(plan, free_bytes, fwd.device_label());
  keys = DeviceBuffer(bytes);
  values = DeviceBuffer(bytes);
}

std::vector<float> CudaSequence::append(std::span<const int> tokens) { return fwd_.decode_step(tokens, *this); }

// The module's table (tracer/cuda/cuda_module.hpp).
CudaAvailability availability() {
  CudaAvailability a;
  a.built = true;
  a.devices = device_count(&a.reason);
  return a;
}

CudaDeviceInfo device_info(int device) {
  std::string reason;
  const int n = device_count(&reason);
  if (device < 0 || device >= n)
    fail<DeviceError>("--device cuda: no CUDA device ", device, " (", n == 0 ? reason : std::to_string(n) + " devices",
                      ")");
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  KVSIM_CUDA_CALL(cudaGetDeviceProperties(&prop, device));
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  KVSIM_CUDA_CALL(cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, device));
  KVSIM_CUDA_CALL(cudaDeviceGetAttribute(&info.clock_khz, cudaDevAttrClockRate, device));
  KVSIM_CUDA_CALL(cudaSetDevice(device));
  KVSIM_CUDA_CALL(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  return info;
}

std::unique_ptr<ForwardBackend> make_backend(const Model& model, const CudaOptions& options) {
  device_info(options.device);  // one clear error when there is no such device
  return std::make_unique<CudaForward>(model, options);
}

}  // namespace

}  // namespace kvsim

// The module's one exported symbol: the loader (tracer/cuda_backend.cpp) reaches the backend
// through this table only.
extern "C" __attribute__((visibility("default"))) const kvsim::CudaModule* kvsim_cuda_module() {
  static const kvsim::CudaModule m{kvsim::kCudaModuleAbi, kvsim::kToolVersion, kvsim::kGitSha, &kvsim::availability,
                                   &kvsim::device_info, &kvsim::make_backend};
  return &m;
}
