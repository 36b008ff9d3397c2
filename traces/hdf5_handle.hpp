#pragma once
// RAII ownership of HDF5 identifiers and the one lock around the HDF5 library.
//
// Debian 12's libhdf5 (1.10, serial) is built with --enable-threadsafe (H5pubconf.h defines
// H5_HAVE_THREADSAFE 1): it serialises every API call behind a global lock of its own, so
// concurrent calls are safe but never parallel. kvsim still makes every HDF5 call in traces/
// while holding library_mutex(): it keeps a sequence of calls (open, check, read, close a
// dataset) atomic, it keeps kvsim correct on an HDF5 built without thread safety (the default
// of a source build), and it costs nothing the library's own lock does not already cost. It is
// recursive because a Handle closes its identifier under the lock, and handles are often
// released inside a function that already holds it. This mutex is the only global state in
// kvsim: it guards a global library, it does not hold data of its own.
#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>

namespace kvsim::h5 {

std::recursive_mutex& library_mutex();

using LibraryLock = std::lock_guard<std::recursive_mutex>;

// Turns off HDF5's automatic printing of its error stack to stderr: traces/ reports every
// failure as a TraceError instead. Caller holds library_mutex().
void silence_errors();

// The most specific message on HDF5's error stack of this thread ("" when empty), so a
// TraceError can say why HDF5 failed (e.g. "truncated file: eof = ..."). Caller holds the lock.
std::string error_detail();

// Owns one hid_t and closes it with the matching H5?close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);

  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(id >= 0 ? closer : nullptr) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(std::exchange(other.closer_, nullptr)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      close();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = std::exchange(other.closer_, nullptr);
    }
    return *this;
  }
  ~Handle() { close(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Closes now; returns the closer's status (>= 0 on success, also when nothing was held).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0 && closer_ != nullptr) {
      LibraryLock lock(library_mutex());
      status = closer_(id_);
    }
    id_ = H5I_INVALID_HID;
    closer_ = nullptr;
    return status;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

inline Handle file_handle(hid_t id) { return {id, H5Fclose}; }
inline Handle group_handle(hid_t id) { return {id, H5Gclose}; }
inline Handle dataset_handle(hid_t id) { return {id, H5Dclose}; }
inline Handle dataspace_handle(hid_t id) { return {id, H5Sclose}; }
inline Handle type_handle(hid_t id) { return {id, H5Tclose}; }
inline Handle plist_handle(hid_t id) { return {id, H5Pclose}; }
inline Handle attribute_handle(hid_t id) { return {id, H5Aclose}; }

}  // namespace kvsim::h5
