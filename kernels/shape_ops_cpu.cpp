// CPU reference for gather and scatter_add: plain loops over index positions in row-major order.
// Every index is checked before anything is written, so a bad index leaves dst untouched.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/shape_ops.h"

namespace sl::kernels {
namespace {

template <class I>
int64_t read_index(const void* index, int64_t off) {
  return int64_t(static_cast<const I*>(index)[off]);
}

// Throws for the first (row-major) out-of-range index position.
template <class I>
void check_range(const char* op, const char* target, const void* index, int64_t n,
                 const AxisIndexer& ix, int64_t dim_size) {
  for (int64_t i = 0; i < n; ++i) {
    int64_t oa, ob, oi;
    ix.at(i, oa, ob, oi);
    int64_t v = read_index<I>(index, oi);
    if (v < 0 || v >= dim_size)
      throw_index_error(op, target, Dims(std::vector<int64_t>(ix.shape, ix.shape + ix.n)), i, v,
                        dim_size, ix.dim);
  }
}

template <class E, class I>
void gather_typed(const GatherParams& p) {
  AxisIndexer ix(p.shape, p.dim, p.out_strides, p.x_strides, p.index_strides);
  check_range<I>("gather", "x", p.index, p.n, ix, p.dim_size);
  E* out = static_cast<E*>(p.out);
  const E* x = static_cast<const E*>(p.x);
  int64_t xs = p.x_strides[p.dim];
  for (int64_t i = 0; i < p.n; ++i) {
    int64_t oo, ox, oi;
    ix.at(i, oo, ox, oi);
    out[oo] = x[ox + read_index<I>(p.index, oi) * xs];
  }
}

template <class E>
void gather_elems(const GatherParams& p) {
  if (p.index_dtype == DType::I32)
    gather_typed<E, int32_t>(p);
  else
    gather_typed<E, int64_t>(p);
}

// Note [deterministic scatter_add]: per destination element, start from dst in the compute type,
// add contributions in row-major position order, round once.
template <class T, class I>
void scatter_add_typed(const ScatterAddParams& p) {
  using C = typename ScalarTraits<T>::compute;
  AxisIndexer ix(p.shape, p.dim, p.src_strides, p.dst_strides, p.index_strides);
  check_range<I>("scatter_add", "dst", p.index, p.n, ix, p.dim_size);
  T* dst = static_cast<T*>(p.dst);
  const T* src = static_cast<const T*>(p.src);
  int64_t ds = p.dst_strides[p.dim];
  // Accumulators keyed by the destination's offset relative to the smallest one reached.
  std::vector<int64_t> dst_off(size_t(p.n));
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (int64_t i = 0; i < p.n; ++i) {
    int64_t os, od, oi;
    ix.at(i, os, od, oi);
    od += read_index<I>(p.index, oi) * ds;
    dst_off[size_t(i)] = od;
    lo = std::min(lo, od);
    hi = std::max(hi, od);
  }
  std::vector<C> acc(size_t(hi - lo + 1));
  std::vector<char> touched(size_t(hi - lo + 1), 0);
  for (int64_t i = 0; i < p.n; ++i) {
    int64_t os, od, oi;
    ix.at(i, os, od, oi);
    size_t k = size_t(dst_off[size_t(i)] - lo);
    if (!touched[k]) {
      acc[k] = ScalarTraits<T>::to_compute(dst[dst_off[size_t(i)]]);
      touched[k] = 1;
    }
    acc[k] += ScalarTraits<T>::to_compute(src[os]);
  }
  for (size_t k = 0; k < acc.size(); ++k)
    if (touched[k]) dst[lo + int64_t(k)] = ScalarTraits<T>::from_compute(acc[k]);
}

template <class T>
void scatter_add_float(const ScatterAddParams& p) {
  if (p.index_dtype == DType::I32)
    scatter_add_typed<T, int32_t>(p);
  else
    scatter_add_typed<T, int64_t>(p);
}

}  // namespace

void gather_cpu(const GatherParams& p) {
  switch (p.elem_size) {
    case 2: gather_elems<uint16_t>(p); break;
    case 4: gather_elems<uint32_t>(p); break;
    case 8: gather_elems<uint64_t>(p); break;
    default: SL_FAIL() << "gather: unsupported element size " << p.elem_size;
  }
}

void scatter_add_cpu(const ScatterAddParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "scatter_add", T, scatter_add_float<T>(p));
}

}  // namespace sl::kernels
