#pragma once
// What the kvsim subcommands share, one header per concern: options.hpp (parsing and checks,
// the thread cap, the policy list, run/validate's shared options), progress.hpp (progress
// lines, time stamps), manifest.hpp (results manifests and provenance), backend.hpp (--device,
// --precision, the tokenizer), npy.hpp (.npy output). The subcommands include this one.
#include "cli/backend.hpp"
#include "cli/manifest.hpp"
#include "cli/npy.hpp"
#include "cli/options.hpp"
#include "cli/progress.hpp"
