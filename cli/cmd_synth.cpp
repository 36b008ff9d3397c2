// kvsim synth: a synthetic trace at a real model's shape (benchmarks, tests).
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "sim/synthetic.hpp"

namespace kvsim::cli {

int cmd_synth(const std::vector<std::string>& args) {
  std::string shape, out;
  SyntheticSpec spec;
  int threads = 0;
  po::options_description opts("synth options");
  opts.add_options()("shape", po::value(&shape)->default_value("llama3-8b"), "llama3-8b | qwen2-7b | smollm2-135m | tiny")
      ("prompts,n", po::value(&spec.n_prompts)->default_value(1), "number of prompts")
      ("prompt-len,T", po::value(&spec.T)->default_value(4096), "prompt tokens T")
      ("cont-len,M", po::value(&spec.M)->default_value(32), "continuation tokens M")
      ("window,w", po::value(&spec.W)->default_value(64), "recorded window W")
      ("seed", po::value(&spec.seed)->default_value(1), "seed")
      ("colsum-stride", po::value(&spec.colsum_stride)->default_value(0), "estimate attn_colsum from every k-th query (0: auto)")
      ("compression", po::value(&spec.compression_level)->default_value(0), "deflate level 0..9")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("out,o", po::value(&out)->required(), "output trace (.h5)");
  if (!parse("synth", "Writes a synthetic trace with structured attention (sinks, locality, heavy hitters).", opts, args))
    return 0;
  auto tbb_limit = limit_threads(threads);
  spec.model = synthetic_shape(shape);
  check_synthetic_spec(spec);  // before the progress line and the output file
  check_output_file(out, "--out", true);
  Progress progress("synth", spec.n_prompts);
  write_synthetic_trace(out, spec, [&](int done) { progress.update(done, ""); });
  progress.finish(std::to_string(spec.n_prompts) + " prompts -> " + out);
  return 0;
}

}  // namespace kvsim::cli
