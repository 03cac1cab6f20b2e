// Storage: one reference-counted block of bytes on one device.
//
// Tensors share a Storage through std::shared_ptr; the block returns to its allocator when the
// last tensor viewing it is destroyed. A Storage never changes size or device.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device.h"

namespace sl {

class Storage {
 public:
  // Allocates nbytes on `device` (through the caching allocator for CUDA). `pinned` asks for
  // page-locked host memory (only meaningful for CPU storage when CUDA is available).
  Storage(size_t nbytes, Device device, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
};

}  // namespace sl
