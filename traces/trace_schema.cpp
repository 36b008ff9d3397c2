// Placeholder translation unit until the writer and reader land.
#include "traces/trace_types.hpp"
