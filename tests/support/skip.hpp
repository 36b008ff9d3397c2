#pragma once
// Skipping a test that cannot run here (no ../shared, no model, no GPU, no h5py). The
// "SKIPPED:" line makes ctest report the test as skipped (SKIP_REGULAR_EXPRESSION in
// CMakeLists.txt); the SUCCEED is the one assertion a skipped test makes, so the test also
// passes under ctest's `--warn NoAssertions`, which fails a test that asserts nothing.
#include <catch2/catch.hpp>

// Returns from the test case (in a SECTION: from this run of it).
#define KVSIM_SKIP(msg)                 \
  do {                                  \
    WARN("SKIPPED: " << msg);           \
    SUCCEED("skipped");                 \
    return;                             \
  } while (0)
