// kvsim trace: one prefill per prompt (CPU, or CUDA with --device cuda), recorded into an HDF5 trace (format v3, checksummed; --storage fp16|fp32|bf16).
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/version.hpp"
#include "tracer/inputs.hpp"
#include "tracer/trace_output.hpp"

namespace kvsim::cli {

int cmd_trace(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, out_path, task, tmpl, device, precision, storage_text;
  std::vector<std::string> inputs;
  int window, cont_len, prompt_len, max_len, topk, limit, threads, compression;
  bool overwrite = false, chat = false, quiet = false, beyond_context = false;
  po::options_description opts("trace options");
  opts.add_options()
      ("model,m", po::value(&model_path)->required(), "checkpoint: llama2.c .bin, a HF directory (config.json + safetensors), or a .gguf")
      ("tokenizer", po::value(&tokenizer_path), "tokenizer.bin / tokenizer.json / .gguf (default: the model's own or found beside it)")
      ("input,i", po::value(&inputs)->multitoken()->required(), "input files: text (.txt), or LongBench/RULER .jsonl")
      ("out,o", po::value(&out_path)->required(), "output trace file (.h5); written as OUT.partial, renamed when complete. "
       "Under mpirun: each rank writes OUT.parts/part-R-of-N.h5, OUT is their index (docs/trace-format.md)")
      ("window,w", po::value(&window)->default_value(64), "observation window W: queries of the last W prompt positions")
      ("cont-len", po::value(&cont_len)->default_value(32), "text inputs: continuation tokens M per prompt")
      ("prompt-len", po::value(&prompt_len)->default_value(512), "text inputs: prompt tokens T per chunk (BOS included)")
      ("max-len", po::value(&max_len)->default_value(0), "JSONL inputs: truncate longer prompts in the middle (0 = no limit)")
      ("allow-beyond-context", po::bool_switch(&beyond_context),
       "trace prompts longer than the model's context (max_seq_len / max_position_embeddings / context_length) "
       "and accept --max-len above it; refused by default. The continuation may always run past the context")
      ("topk", po::value(&topk)->default_value(64), "top-K logits recorded per continuation position")
      ("limit", po::value(&limit)->default_value(0), "at most this many prompts per input file (0 = all)")
      ("task", po::value(&task), "task label (default: the input file's stem)")
      ("template", po::value(&tmpl), "LongBench prompt template with {context} and {input}")
      ("chat", po::bool_switch(&chat), "JSONL inputs: wrap each prompt as a ChatML user turn (system default from the tokenizer's chat template)")
      ("compression", po::value(&compression)->default_value(4), "deflate level 0-9 (0 = none)")
      ("storage", po::value(&storage_text)->default_value("fp16"), "element type of keys, values and queries: fp16, fp32 or bf16")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing OUT (and discard OUT.partial and OUT.parts)")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("quiet,q", po::bool_switch(&quiet), "no progress lines");
  add_backend_options(opts, device, precision);
  po::positional_options_description pos;
  pos.add("input", -1);
  const auto vm = parse("trace", "Records one prefill per prompt into an HDF5 trace.", opts, args, &pos);
  if (!vm) return 0;
  const bool vm_has_template = vm->count("template") != 0;
  // In an MPI job rank 0 speaks for every rank (trace_prompts hands out the prompts).
  if (!dist::is_root()) quiet = true;
  auto thread_limit = limit_threads(threads);
  require_at_least("--window", window, 1);
  require_at_least("--topk", topk, 1);
  require_at_least("--prompt-len", prompt_len, 1);
  require_at_least("--cont-len", cont_len, 0);
  require_at_least("--max-len", max_len, 0);
  require_at_least("--limit", limit, 0);
  // LongBench's templates all hold {context} (some, as lcc's, no {input}); one without it would
  // trace the question alone.
  if (vm_has_template && tmpl.find("{context}") == std::string::npos)
    fail<InputError>("--template '", tmpl, "' has no {context} placeholder (expected e.g. '{context}\\n\\nQuestion: {input}\\nAnswer:')");
  if (compression < 0 || compression > 9) fail<InputError>("--compression must be in 0..9, got ", compression);
  KvStorage storage = KvStorage::kFp16;
  if (!parse_storage(storage_text, storage))
    fail<InputError>("--storage must be fp16, fp32 or bf16, got '", storage_text, "'");
  const BackendChoice backend_choice = choose_backend(device, precision);
  check_output_file(out_path, "--out", true);
  if (std::filesystem::exists(out_path) && !overwrite)
    fail<InputError>(out_path, ": already exists (pass --overwrite to replace it)");

  const Model model = load_model(model_path);
  const auto tokenizer = resolve_tokenizer(model_path, tokenizer_path, model.config.vocab);
  if (tokenizer->vocab_size() > model.config.vocab)
    fail<ModelError>(model_path, ": tokenizer has ", tokenizer->vocab_size(), " tokens, the model only ", model.config.vocab);
  if (topk > model.config.vocab) fail<InputError>("--topk ", topk, " exceeds the vocabulary (", model.config.vocab, ")");
  // The model's trained context (0: the checkpoint does not say); prompts beyond it are refused.
  const int context = model.config.max_seq_len;
  if (context > 0 && max_len > context && !beyond_context)
    fail<InputError>("--max-len ", max_len, " is larger than the context of ", model_path, " (", context,
                     " tokens); use --max-len <= ", context, " or pass --allow-beyond-context");

  // Every input is read and tokenized before any work starts (fail fast).
  InputOptions io;
  io.prompt_len = prompt_len;
  io.cont_len = cont_len;
  io.max_len = max_len;
  io.limit = limit;
  io.task = task;
  if (!tmpl.empty()) io.longbench_template = tmpl;
  if (chat) io.chat = chat_format_from_template(tokenizer->chat_template(), model_path);
  std::vector<PromptSpec> prompts;
  for (const auto& in : inputs) {
    auto p = load_prompts(in, *tokenizer, io);
    for (auto& s : p) prompts.push_back(std::move(s));
  }
  std::size_t truncated = 0, total_tokens = 0, longest = 1, past_context = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const PromptSpec& p = prompts[i];
    if (context > 0 && p.n_prompt > context && !beyond_context)
      fail<InputError>(p.source, ": prompt ", p.sample_id.empty() ? std::to_string(i) : p.sample_id, " has ", p.n_prompt,
                       " tokens, more than the context of ", model_path, " (", context,
                       " tokens); shorten it (--prompt-len, --max-len) or pass --allow-beyond-context");
    past_context += context > 0 && static_cast<int>(p.tokens.size()) > context;
    truncated += p.truncated_from > p.n_prompt;
    total_tokens += p.tokens.size();
    longest = std::max(longest, p.tokens.size());
  }
  // Before the output file exists: a device that cannot hold the model fails here.
  const auto backend = make_backend(model, backend_choice, static_cast<int>(longest), topk);
  if (!quiet)
    std::fprintf(stderr, "[trace] %s: %zu prompts, %zu tokens (%zu truncated in the middle)\n", model.source.c_str(),
                 prompts.size(), total_tokens, truncated);
  // The prompt (the cache being simulated) fits; only the scored continuation runs past it.
  if (!quiet && past_context > 0)
    std::fprintf(stderr, "[trace] note: %zu prompts' continuations run past the model's context (%d tokens)\n",
                 past_context, context);

  TraceFileOptions o;
  o.record.window = window;
  o.record.topk = topk;
  o.writer.compression_level = compression;
  o.writer.storage = storage;
  o.writer.overwrite = overwrite;
  o.producer = TraceProducer{kToolVersion, kGitSha, "", utc_now_iso8601()};
  Progress progress("trace", prompts.size());
  if (!quiet)
    o.progress = [&](const TraceProgress& p) {
      char detail[96];
      std::snprintf(detail, sizeof detail, "prompts, %.0f tok/s", p.seconds > 0 ? p.tokens / p.seconds : 0.0);
      progress.update(p.done, detail);
    };
  const TraceFileResult r = trace_prompts(*backend, prompts, out_path, o);
  if (quiet) return 0;
  const std::string resumed_from = dist::size() > 1 ? trace_parts_dir(out_path).string() : out_path + ".partial";
  char detail[512];
  std::snprintf(detail, sizeof detail, "%zu prompts traced (%zu resumed from %s) -> %s", r.traced, r.resumed,
                resumed_from.c_str(), out_path.c_str());
  progress.finish(detail + ranks_note());
  return 0;
}

}  // namespace kvsim::cli
