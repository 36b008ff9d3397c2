// kvsim: the command-line entry point. Subcommands live in cli/cmd_*.cpp.
#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "core/version.hpp"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("kvsim %s (%s)\n", kvsim::kToolVersion, kvsim::kGitSha);
    return 0;
  }
  std::fprintf(stderr, "usage: kvsim <command> [options]\n");
  return 2;
}
