// Placeholder translation unit until the tokenizers land.
#include "tracer/tokenizer.hpp"
