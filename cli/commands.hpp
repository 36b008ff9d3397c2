#pragma once
#include <string>
#include <vector>

namespace kvsim::cli {
// Each returns the process exit code; errors propagate as kvsim::Error.
int cmd_trace(const std::vector<std::string>& args);
int cmd_inspect(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_policies(const std::vector<std::string>& args);
int cmd_synth(const std::vector<std::string>& args);
int cmd_compile(const std::vector<std::string>& args);
int cmd_diff(const std::vector<std::string>& args);
int cmd_transfer(const std::vector<std::string>& args);
int cmd_validate(const std::vector<std::string>& args);
int cmd_tasks(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);  // execs python3 -m kvsim_report
}  // namespace kvsim::cli
