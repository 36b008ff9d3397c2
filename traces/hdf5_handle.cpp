#include "traces/hdf5_handle.hpp"

namespace kvsim::h5 {

std::recursive_mutex& library_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {
herr_t take_first_message(unsigned n, const H5E_error2_t* err, void* out) {
  auto* message = static_cast<std::string*>(out);
  if (n == 0 && err != nullptr && err->desc != nullptr) *message = err->desc;
  return 0;
}
}  // namespace

std::string error_detail() {
  std::string message;
  // Upward starts at the function that detected the error (the most specific message);
  // downward would start at the API call ("unable to open file").
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first_message, &message);
  H5Eclear2(H5E_DEFAULT);
  return message;
}

}  // namespace kvsim::h5
