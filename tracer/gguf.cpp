#include "tracer/gguf.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/error.hpp"
#include "core/half.hpp"

namespace kvsim {

namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int kMaxDims = 4;                   // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;

// GGUF metadata value types.
enum : std::uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32v = 6,
  kBool = 7, kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64v = 12,
};
const char* value_type_name(std::uint32_t t) {
  static const char* const kNames[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
                                       "bool",  "string", "array",  "uint64", "int64", "float64"};
  return t < 13 ? kNames[t] : "unknown";
}

// Sequential little-endian reads over the mapped header; a read past the end is a cut file.
class Cursor {
 public:
  Cursor(const std::byte* data, std::size_t size, const std::string& where) : data_(data), size_(size), where_(where) {}
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }
  void need(std::size_t n, const std::string& what) const {
    if (n > remaining())
      fail<ModelError>(where_, ": truncated GGUF header: ", what, " needs ", n, " bytes at offset ", pos_, ", the file has ",
                       remaining(), " left");
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    const auto n = read<std::uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::byte* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  const std::string& where_;
};

GgufValue read_value(Cursor& c, std::uint32_t type, const std::string& key, const std::string& where, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case kU8: v.data = std::uint64_t{c.read<std::uint8_t>(key)}; break;
    case kI8: v.data = std::int64_t{c.read<std::int8_t>(key)}; break;
    case kU16: v.data = std::uint64_t{c.read<std::uint16_t>(key)}; break;
    case kI16: v.data = std::int64_t{c.read<std::int16_t>(key)}; break;
    case kU32: v.data = std::uint64_t{c.read<std::uint32_t>(key)}; break;
    case kI32: v.data = std::int64_t{c.read<std::int32_t>(key)}; break;
    case kU64: v.data = c.read<std::uint64_t>(key); break;
    case kI64: v.data = c.read<std::int64_t>(key); break;
    case kF32v: v.data = double{c.read<float>(key)}; break;
    case kF64v: v.data = c.read<double>(key); break;
    case kBool: v.data = c.read<std::uint8_t>(key) != 0; break;
    case kString: v.data = c.read_string(key); break;
    case kArray: {
      if (depth >= kMaxArrayDepth) fail<ModelError>(where, ": metadata ", key, ": arrays nested too deep");
      const auto elem = c.read<std::uint32_t>(key);
      const auto n = c.read<std::uint64_t>(key);
      // Every element takes at least one byte: a larger count is a cut (or corrupt) file.
      c.need(n, key + " (array of " + std::to_string(n) + ")");
      GgufArray a;
      a.reserve(n);
      for (std::uint64_t i = 0; i < n; ++i) a.push_back(read_value(c, elem, key, where, depth + 1));
      v.data = std::move(a);
      break;
    }
    default: fail<ModelError>(where, ": metadata ", key, " has unknown value type ", type);
  }
  return v;
}

// Widens an integer value; nullopt-like false when v is not an integer that fits int64.
bool as_int(const GgufValue& v, std::int64_t& out) {
  if (const auto* u = std::get_if<std::uint64_t>(&v.data)) {
    if (*u > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out = static_cast<std::int64_t>(*u);
    return true;
  }
  if (const auto* i = std::get_if<std::int64_t>(&v.data)) {
    out = *i;
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- block layouts
// From llama.cpp's ggml-common.h (block_q4_0 etc.); fp16 fields are little-endian binary16.

float f16_at(const std::byte* p) {
  half_bits h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

// Q8_0, 34 bytes: fp16 d, int8 qs[32]. x = d·q.
void dequant_q8_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const auto* qs = reinterpret_cast<const std::int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// Q4_0, 18 bytes: fp16 d, uint8 qs[16]; element j in the low nibble of qs[j], element j+16
// in the high nibble. x = d·(q − 8).
void dequant_q4_0(const std::byte* b, float* y) {
  const float d = f16_at(b);
  const auto* qs = reinterpret_cast<const std::uint8_t*>(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1, 20 bytes: fp16 d, fp16 m, uint8 qs[16] (nibbles as Q4_0). x = d·q + m.
void dequant_q4_1(const std::byte* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  const auto* qs = reinterpret_cast<const std::uint8_t*>(b + 4);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q4_K's 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes: j < 4 in the
// low 6 bits of bytes j and j+4; j >= 4 low nibble / high nibble of byte j+4, with their
// top two bits in the high bits of bytes j−4 and j (llama.cpp's get_scale_min_k4).
void scale_min_k4(int j, const std::uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K, 144 bytes per 256: fp16 d, fp16 dmin, uint8 scales[12], uint8 qs[128]. Eight
// sub-blocks of 32; each 32 bytes of qs hold sub-block 2k in the low nibbles and 2k+1 in
// the high ones. x = d·sc·q − dmin·m.
void dequant_q4_k(const std::byte* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const auto* scales = reinterpret_cast<const std::uint8_t*>(b + 4);
  const auto* q = reinterpret_cast<const std::uint8_t*>(b + 16);
  for (int k = 0; k < 4; ++k, q += 32, y += 64) {
    int sc, m;
    scale_min_k4(2 * k, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(2 * k + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

// Q6_K, 210 bytes per 256: uint8 ql[128] (low 4 bits), uint8 qh[64] (high 2 bits), int8
// scales[16] (one per 16 elements), fp16 d. Two halves of 128: within one, element l + 32s
// (s = 0..3) takes ql[l + 32(s&1)]'s low (s < 2) or high nibble and bits 2s..2s+1 of qh[l].
// x = d·scale·(q − 32).
void dequant_q6_k(const std::byte* b, float* y) {
  const auto* ql = reinterpret_cast<const std::uint8_t*>(b);
  const auto* qh = reinterpret_cast<const std::uint8_t*>(b + 128);
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
  }
}

template <typename BlockFn>
void per_block(const std::byte* src, float* dst, std::size_t n, std::size_t elems, std::size_t bytes, BlockFn fn) {
  for (std::size_t b = 0; b < n / elems; ++b) fn(src + b * bytes, dst + b * elems);
}

}  // namespace

std::string ggml_type_name(std::uint32_t type) {
  static const std::map<std::uint32_t, const char*> kNames = {
      {0, "F32"},      {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},     {6, "Q5_0"},    {7, "Q5_1"},
      {8, "Q8_0"},     {9, "Q8_1"},    {10, "Q2_K"},   {11, "Q3_K"},    {12, "Q4_K"},   {13, "Q5_K"},
      {14, "Q6_K"},    {15, "Q8_K"},   {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
      {20, "IQ4_NL"},  {21, "IQ3_S"},  {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},      {25, "I16"},
      {26, "I32"},     {27, "I64"},    {28, "F64"},    {29, "IQ1_M"},   {30, "BF16"},    {34, "TQ1_0"},
      {35, "TQ2_0"},   {39, "MXFP4"}};
  const auto it = kNames.find(type);
  return it != kNames.end() ? it->second : "type " + std::to_string(type);
}

bool ggml_type_supported(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kQ8_0:
    case GgmlType::kQ4_0: case GgmlType::kQ4_1: case GgmlType::kQ4_K: case GgmlType::kQ6_K:
      return true;
  }
  return false;
}

std::size_t ggml_block_elements(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: return 1;
    case GgmlType::kQ8_0: case GgmlType::kQ4_0: case GgmlType::kQ4_1: return 32;
    case GgmlType::kQ4_K: case GgmlType::kQ6_K: return 256;
  }
  fail<ModelError>("unsupported ggml type ", ggml_type_name(static_cast<std::uint32_t>(type)));
}

std::size_t ggml_block_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return 4;
    case GgmlType::kF16: case GgmlType::kBF16: return 2;
    case GgmlType::kQ8_0: return 34;
    case GgmlType::kQ4_0: return 18;
    case GgmlType::kQ4_1: return 20;
    case GgmlType::kQ4_K: return 144;
    case GgmlType::kQ6_K: return 210;
  }
  fail<ModelError>("unsupported ggml type ", ggml_type_name(static_cast<std::uint32_t>(type)));
}

void dequantize(GgmlType type, const std::byte* src, float* dst, std::size_t n) {
  const std::size_t elems = ggml_block_elements(type), bytes = ggml_block_bytes(type);
  KVSIM_CHECK(n % elems == 0, "dequantize: ", n, " elements is not a whole number of ", elems, "-element blocks");
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * 4);
      break;
    case GgmlType::kF16: half_bytes_to_float(src, std::span<float>(dst, n)); break;
    case GgmlType::kBF16: bf16_bytes_to_float(src, std::span<float>(dst, n)); break;
    case GgmlType::kQ8_0: per_block(src, dst, n, elems, bytes, dequant_q8_0); break;
    case GgmlType::kQ4_0: per_block(src, dst, n, elems, bytes, dequant_q4_0); break;
    case GgmlType::kQ4_1: per_block(src, dst, n, elems, bytes, dequant_q4_1); break;
    case GgmlType::kQ4_K: per_block(src, dst, n, elems, bytes, dequant_q4_k); break;
    case GgmlType::kQ6_K: per_block(src, dst, n, elems, bytes, dequant_q6_k); break;
  }
}

std::int64_t GgufTensorInfo::elements() const {
  std::int64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

std::vector<std::int64_t> GgufTensorInfo::shape() const { return {ne.rbegin(), ne.rend()}; }

GgufFile::GgufFile(const std::filesystem::path& path) : path_(path), map_(path, "GGUF file") {
  const std::string p = path.string();
  const std::byte* base = map_.data();
  const std::size_t file_size = map_.size();
  Cursor c(base, file_size, p);
  const auto magic = c.read<std::uint32_t>("magic");
  if (magic != kMagic) {
    std::string shown(reinterpret_cast<const char*>(base), 4);
    for (char& ch : shown)
      if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7E) ch = '?';
    fail<ModelError>(p, ": not a GGUF file (magic '", shown, "', expected 'GGUF')");
  }
  version_ = c.read<std::uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    fail<ModelError>(p, ": GGUF version ", version_, " is not supported (versions 2 and 3 are)");
  const auto n_tensors = c.read<std::uint64_t>("tensor_count");
  const auto n_kv = c.read<std::uint64_t>("kv_count");
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    const std::string where_kv = "metadata entry " + std::to_string(i) + " of " + std::to_string(n_kv);
    std::string key = c.read_string(where_kv);
    const auto type = c.read<std::uint32_t>(key);
    GgufValue v = read_value(c, type, key, p, 0);
    if (metadata_.count(key)) fail<ModelError>(p, ": metadata key ", key, " appears twice");
    metadata_.emplace(std::move(key), std::move(v));
  }
  if (has("general.alignment")) {
    const std::int64_t a = get_int("general.alignment");
    if (a <= 0 || (a & (a - 1)) != 0) fail<ModelError>(p, ": general.alignment ", a, " is not a power of two");
    alignment_ = static_cast<std::size_t>(a);
  }
  std::vector<GgufTensorInfo> infos;
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor info " + std::to_string(i) + " of " + std::to_string(n_tensors));
    const auto n_dims = c.read<std::uint32_t>(t.name);
    if (n_dims == 0 || n_dims > kMaxDims) fail<ModelError>(p, ": tensor ", t.name, " has ", n_dims, " dimensions");
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = c.read<std::uint64_t>(t.name);
      if (ne == 0 || ne > (1ull << 40)) fail<ModelError>(p, ": tensor ", t.name, " has dimension ", d, " of ", ne);
      t.ne.push_back(static_cast<std::int64_t>(ne));
    }
    std::int64_t n = 1;
    for (auto d : t.ne)
      if (__builtin_mul_overflow(n, d, &n) || n > (std::int64_t{1} << 48))
        fail<ModelError>(p, ": tensor ", t.name, " has an implausible shape ", shape_str(t.shape()));
    const auto type = c.read<std::uint32_t>(t.name);
    if (!ggml_type_supported(type))
      fail<ModelError>(p, ": tensor ", t.name, " has type ", ggml_type_name(type),
                       ", which kvsim does not support (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)");
    t.type = static_cast<GgmlType>(type);
    t.offset = c.read<std::uint64_t>(t.name);
    const std::size_t be = ggml_block_elements(t.type);
    if (static_cast<std::size_t>(t.ne[0]) % be != 0)
      fail<ModelError>(p, ": tensor ", t.name, " has rows of ", t.ne[0], " elements, not a multiple of ", ggml_type_name(type),
                       "'s block of ", be);
    t.bytes = static_cast<std::size_t>(t.elements()) / be * ggml_block_bytes(t.type);
    infos.push_back(std::move(t));
  }
  // The data section starts at the next multiple of the alignment after the index.
  const std::size_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensorInfo& t : infos) {
    if (t.offset % alignment_ != 0)
      fail<ModelError>(p, ": tensor ", t.name, " is at data offset ", t.offset, ", not a multiple of the alignment ",
                       alignment_);
    // Compared without sums that could wrap around on a corrupt offset.
    const bool inside = data_start <= file_size && t.offset <= file_size - data_start &&
                        t.bytes <= file_size - data_start - t.offset;
    if (!inside)
      fail<ModelError>(p, ": truncated file: tensor ", t.name, " (", ggml_type_name(static_cast<std::uint32_t>(t.type)),
                       " ", shape_str(t.shape()), ") ends at byte ", data_start + t.offset + t.bytes, " of a ", file_size,
                       "-byte file");
    t.offset += data_start;
    const std::string name = t.name;
    if (!tensors_.emplace(name, std::move(t)).second) fail<ModelError>(p, ": tensor ", name, " appears twice");
  }
}

const GgufValue& GgufFile::value(const std::string& key) const {
  const auto it = metadata_.find(key);
  if (it == metadata_.end()) fail<ModelError>(path_.string(), ": metadata key ", key, " is missing");
  return it->second;
}

std::int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = value(key);
  std::int64_t out;
  if (!as_int(v, out))
    fail<ModelError>(path_.string(), ": metadata key ", key, " is a ", value_type_name(v.type), ", expected an integer");
  return out;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* d = std::get_if<double>(&v.data)) return *d;
  std::int64_t i;
  if (as_int(v, i)) return static_cast<double>(i);
  fail<ModelError>(path_.string(), ": metadata key ", key, " is a ", value_type_name(v.type), ", expected a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* b = std::get_if<bool>(&v.data)) return *b;
  fail<ModelError>(path_.string(), ": metadata key ", key, " is a ", value_type_name(v.type), ", expected a bool");
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* s = std::get_if<std::string>(&v.data)) return *s;
  fail<ModelError>(path_.string(), ": metadata key ", key, " is a ", value_type_name(v.type), ", expected a string");
}

template <typename T, typename Get>
std::vector<T> GgufFile::array_of(const std::string& key, const char* what, Get get) const {
  const auto* a = std::get_if<GgufArray>(&value(key).data);
  std::vector<T> out;
  if (a) {
    out.reserve(a->size());
    T v;
    for (const GgufValue& e : *a) {
      if (!get(e, v)) break;
      out.push_back(std::move(v));
    }
  }
  if (!a || out.size() != a->size()) fail<ModelError>(path_.string(), ": metadata key ", key, " is not an array of ", what);
  return out;
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  return array_of<std::string>(key, "strings", [](const GgufValue& e, std::string& out) {
    const auto* s = std::get_if<std::string>(&e.data);
    if (s) out = *s;
    return s != nullptr;
  });
}

std::vector<std::int64_t> GgufFile::get_ints(const std::string& key) const {
  return array_of<std::int64_t>(key, "integers", as_int);
}

std::int64_t GgufFile::get_int(const std::string& key, std::int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail<ModelError>(path_.string(), ": tensor ", name, " is missing");
  return it->second;
}

void GgufFile::check_shape(const std::string& name, const std::vector<std::int64_t>& shape) const {
  const GgufTensorInfo& t = tensor(name);
  if (t.shape() != shape)
    fail<ModelError>(path_.string(), ": tensor ", name, " has shape ", shape_str(t.shape()), ", expected ",
                     shape_str(shape));
}

void GgufFile::read_f32(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const {
  check_shape(name, shape);
  const GgufTensorInfo& t = tensor(name);
  const std::size_t be = ggml_block_elements(t.type), bb = ggml_block_bytes(t.type);
  const std::size_t n_blocks = static_cast<std::size_t>(t.elements()) / be;
  const std::byte* src = map_.data() + t.offset;
  // Chunks of ~16k elements: enough work per task, and many tasks for a large tensor.
  const std::size_t grain = std::max<std::size_t>(1, 16384 / be);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_blocks, grain), [&](const tbb::blocked_range<std::size_t>& r) {
    float* out = dst + r.begin() * be;
    const std::size_t n = (r.end() - r.begin()) * be;
    dequantize(t.type, src + r.begin() * bb, out, n);
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(out[i]))
        fail<ModelError>(path_.string(), ": tensor ", name, " has a non-finite value at ", r.begin() * be + i);
  });
}

}  // namespace kvsim
