// CPU reference for copy, cast and fill.
#include "core/philox_normal.h"
#include "kernels/copy.h"
#include "kernels/dispatch.h"
#include "kernels/indexing.h"

#include <algorithm>

namespace sl::kernels {
namespace {

template <class D, class S>
D convert(S v) {
  using DC = typename ScalarTraits<D>::compute;
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else {
    // Integer <-> float conversions go through double so int64 values survive where they can.
    return ScalarTraits<D>::from_compute(DC(double(ScalarTraits<S>::to_compute(v))));
  }
}

// Row-major strides: the element at linear index i sits at offset i (the fast path).
bool dense(const Dims& shape, const Dims& strides) {
  return strides == contiguous_strides(shape) || shape.numel() <= 1;
}

template <class D, class S>
void copy_typed(const CopyParams& p) {
  D* dst = static_cast<D*>(p.dst);
  const S* src = static_cast<const S*>(p.src);
  if (dense(p.shape, p.dst_strides) && dense(p.shape, p.src_strides)) {
#pragma omp parallel for if (p.n > (1 << 18))
    for (int64_t i = 0; i < p.n; ++i) dst[i] = convert<D, S>(src[i]);
    return;
  }
  StridedIndexer di(p.shape, p.dst_strides), si(p.shape, p.src_strides);
#pragma omp parallel for if (p.n > (1 << 16))
  for (int64_t i = 0; i < p.n; ++i) dst[di.offset(i)] = convert<D, S>(src[si.offset(i)]);
}

template <class D>
void copy_to(const CopyParams& p) {
  SL_DISPATCH_ALL(p.src_dtype, "copy", S, copy_typed<D, S>(p));
}

template <class T>
void fill_typed(const FillParams& p) {
  StridedIndexer idx(p.shape, p.strides);
  T* data = static_cast<T*>(p.data);
  using C = typename ScalarTraits<T>::compute;
  if (!p.random) {
    T v = ScalarTraits<T>::from_compute(C(p.value));
    if (dense(p.shape, p.strides)) {
      std::fill(data, data + p.n, v);
      return;
    }
#pragma omp parallel for if (p.n > (1 << 16))
    for (int64_t i = 0; i < p.n; ++i) data[idx.offset(i)] = v;
    return;
  }
#pragma omp parallel for if (p.n > (1 << 14))
  for (int64_t i = 0; i < p.n; ++i) {
    float r = p.normal ? philox_normal_at(p.seed, p.offset, uint64_t(i))
                       : philox_uniform_at(p.seed, p.offset, uint64_t(i));
    data[idx.offset(i)] = ScalarTraits<T>::from_compute(C(p.a + p.b * double(r)));
  }
}

}  // namespace

void copy_strided_cpu(const CopyParams& p) { SL_DISPATCH_ALL(p.dst_dtype, "copy", D, copy_to<D>(p)); }

void fill_cpu(const FillParams& p) { SL_DISPATCH_ALL(p.dtype, "fill", T, fill_typed<T>(p)); }

}  // namespace sl::kernels
