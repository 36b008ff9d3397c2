// Regressions found by the libFuzzer targets (fuzz/, docs/fuzzing.md): each input that crashed
// a parser or tripped a sanitizer, replayed through the same public API. Run under the debug
// preset (ASan + UBSan) they fail as the fuzzer did.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "tracer/gguf.hpp"
#include "tracer/model.hpp"
#include "tracer/safetensors.hpp"

namespace fs = std::filesystem;
using namespace kvsim;

namespace {

struct FuzzFile {
  fs::path path;
  FuzzFile(const std::string& name, const std::string& bytes)
      : path(fs::temp_directory_path() / ("kvsim_fuzzreg_" + std::to_string(::getpid()) + "_" + name)) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  ~FuzzFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

std::string safetensors_bytes(const std::string& header) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header;
}

}  // namespace

TEST_CASE("fuzz safetensors: an empty tensor reads into a null buffer", "[fuzz][errors]") {
  // Found by kvsim_fuzz_safetensors: read_f32 of a [0] tensor called memcpy(nullptr, src, 0)
  // (UBSan: null passed to a nonnull argument); an empty tensor now converts nothing.
  const FuzzFile f("empty.safetensors",
                   safetensors_bytes(R"({"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})"));
  const SafetensorsFile file(f.path);
  REQUIRE(file.contains("z"));
  std::vector<float> dst;
  CHECK_NOTHROW(file.read_f32("z", {0}, dst.data()));
}

TEST_CASE("fuzz llama2c: a header whose weight count wraps round 2^64", "[fuzz][errors]") {
  // dim 2^28, hidden_dim 2^31-1, 2 layers, 2^23 heads, vocab 2^31-1, seq_len 2^24: the weight
  // count wraps to 2^62, so 28 + 4·count wraps to 28, the size of a header-only file; the
  // loader then asked std::vector for 2^62 floats (std::length_error). Now a ModelError.
  const std::int32_t header[7] = {1 << 28, 2147483647, 2, 1 << 23, 1 << 23, 2147483647, 1 << 24};
  const FuzzFile f("wrap.bin", std::string(reinterpret_cast<const char*>(header), sizeof header));
  CHECK_THROWS_AS(load_llama2c(f.path), ModelError);
}

TEST_CASE("fuzz llama2c: vocab_size INT32_MIN", "[fuzz][errors]") {
  // Found by kvsim_fuzz_llama2c_model: a negative vocab_size means an untied classifier and was
  // negated, which overflows for INT32_MIN (UBSan). Now a ModelError.
  const std::int32_t header[7] = {8, 16, 1, 2, 2, INT32_MIN, 4};
  const FuzzFile f("vocab_min.bin", std::string(reinterpret_cast<const char*>(header), sizeof header));
  CHECK_THROWS_AS(load_llama2c(f.path), ModelError);
}

TEST_CASE("fuzz gguf_model: the seeds are checkpoints load_gguf accepts", "[fuzz]") {
  // fuzz/make_model_seeds.py writes them; a seed the loader refuses would let the fuzzer
  // start from errors only. Between them they hold every ggml type kvsim dequantizes.
  const fs::path dir = fs::path(KVSIM_SOURCE_DIR) / "fuzz" / "corpus" / "gguf_model";
  std::set<GgmlType> types;
  int seeds = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".gguf") continue;
    INFO(entry.path().filename().string());
    ++seeds;
    const Model m = load_gguf(entry.path());
    CHECK(m.layers.size() == 1);
    CHECK(m.embed.allFinite());
    const GgufFile file(entry.path());
    for (const auto& [name, info] : file.tensors()) types.insert(info.type);
  }
  CHECK(seeds == 3);
  CHECK(types.size() == 8);
}

namespace {

// An hf_model input (config.json and model.safetensors joined by the separator fuzz/hf_model.cpp
// splits at) as a checkpoint directory, removed at scope exit.
struct HfCheckpoint {
  fs::path dir = fs::temp_directory_path() / ("kvsim_fuzzreg_" + std::to_string(::getpid()) + "_hf");
  std::string config, weights;
  explicit HfCheckpoint(const fs::path& input) {
    std::ifstream in(input, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const std::string split = "\n--kvsim-fuzz-split--\n";
    const std::size_t at = bytes.find(split);
    REQUIRE(at != std::string::npos);
    config = bytes.substr(0, at);
    weights = bytes.substr(at + split.size());
  }
  const fs::path& write() const {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json", std::ios::binary) << config;
    std::ofstream(dir / "model.safetensors", std::ios::binary) << weights;
    return dir;
  }
  ~HfCheckpoint() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

const fs::path kHfSeeds = fs::path(KVSIM_SOURCE_DIR) / "fuzz" / "corpus" / "hf_model";

}  // namespace

TEST_CASE("fuzz hf_model: the seeds are checkpoints load_hf accepts", "[fuzz]") {
  // Llama (fp32, tied), Qwen2 (bf16, biases) and Mistral (fp16).
  std::set<std::string> archs;
  for (const auto& entry : fs::directory_iterator(kHfSeeds)) {
    INFO(entry.path().filename().string());
    const Model m = load_hf(HfCheckpoint(entry.path()).write());
    CHECK(m.layers.size() == 1);
    CHECK(m.embed.allFinite());
    archs.insert(m.config.arch);
  }
  CHECK(archs == std::set<std::string>{"llama", "qwen2", "mistral"});
}

TEST_CASE("fuzz hf_model: config sizes far beyond the tensors are refused before allocating", "[fuzz][errors]") {
  // Not found by the 1M-execution run: crafted after the gguf_model finding, from the same pattern
  // in load_hf, which sized the embedding [vocab_size, hidden_size] before reading any tensor.
  // Both sizes are within their bounds (2^24, 2^20), their product asked for 64 TB
  // (std::bad_alloc). Now every shape is checked first.
  HfCheckpoint c(kHfSeeds / "llama_f32");
  for (auto [from, to] : {std::pair{"\"hidden_size\": 4", "\"hidden_size\": 1000000"},
                          std::pair{"\"vocab_size\": 3", "\"vocab_size\": 16000000"}}) {
    const std::size_t at = c.config.find(from);
    REQUIRE(at != std::string::npos);
    c.config.replace(at, std::string(from).size(), to);
  }
  CHECK_THROWS_WITH(load_hf(c.write()),
                    Catch::Contains("model.embed_tokens.weight has shape [3,4], expected [16000000,1000000]"));
}

TEST_CASE("fuzz hf_model: a weight_map entry that is not a file name", "[fuzz][errors]") {
  // Found by reading TensorSource while fixing the above: a non-string weight_map value was a
  // nlohmann::json type_error, not a ModelError.
  const HfCheckpoint c(kHfSeeds / "llama_f32");
  std::ofstream(c.write() / "model.safetensors.index.json") << R"({"weight_map": {"model.norm.weight": 7}})";
  CHECK_THROWS_WITH(load_hf(c.dir), Catch::Contains("model.safetensors.index.json: weight_map entry model.norm.weight is 7, expected a file name"));
}
