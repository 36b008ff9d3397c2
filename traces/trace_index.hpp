#pragma once
// The index file of a trace recorded in parts (`mpirun -np N kvsim trace`: each rank writes its
// prompts into a part file of its own; docs/trace-format.md, "Index file and parts"). The index
// is an HDF5 file that every reader opens like a single trace: the root attributes of part 0,
// `/model` an external link to part 0's /model, `/prompts/<id>` external links to the part that
// holds each prompt, and the root attribute `parts` naming the parts. Links are relative to the
// index's directory, so the index and its parts move together.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace kvsim {

class TraceReader;

// Writes the index `out` of the finished traces `parts` (part 0 first): as out.partial,
// renamed to `out` when complete. Every complete prompt of every part gets a link. The parts
// must share format_version, storage and model (TraceError naming the part and the field that
// differs); a prompt id found in two parts is a TraceError naming both.
void write_trace_index(const std::filesystem::path& out, const std::vector<std::filesystem::path>& parts);

// What a file is: an index (root attribute `parts`), another HDF5 file (a trace, finished or
// not), or nothing HDF5 opens (absent, truncated).
enum class TraceFileKind { kUnreadable, kTrace, kIndex };
TraceFileKind trace_file_kind(const std::filesystem::path& path);

// The XXH3 (16 hex digits) that manifests record for a trace: of the file for a single trace;
// for an index, of the hashes of the index file and of each part in `parts` order (the content
// lives in the parts, the index alone would not change when a part does).
std::string trace_content_hash(const TraceReader& reader);

}  // namespace kvsim
