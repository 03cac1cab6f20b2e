// Strided index math for kernels, host and device (see core/tensor.h for the layout rule).
#pragma once

#include <cstdint>

#include "core/macros.h"
#include "core/tensor.h"

namespace sl {

// Maps the linear (row-major) index of an element of `shape` to its storage offset under
// `strides`. Trivially copyable; pass by value into kernels.
struct StridedIndexer {
  int n = 0;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];

  StridedIndexer() = default;
  StridedIndexer(const Dims& sh, const Dims& st) : n(sh.n) {
    for (int i = 0; i < n; ++i) {
      shape[i] = sh[i];
      strides[i] = st[i];
    }
  }
  SL_HD int64_t offset(int64_t linear) const {
    int64_t off = 0;
    for (int i = n - 1; i >= 0; --i) {
      int64_t idx = linear % shape[i];
      linear /= shape[i];
      off += idx * strides[i];
    }
    return off;
  }
};

}  // namespace sl
