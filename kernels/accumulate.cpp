#include "kernels/accumulate.h"

#include "kernels/dispatch.h"
#include "kernels/indexing.h"

namespace sl::kernels {

void accumulate_(const Tensor& dst, const Tensor& src) {
  SL_CHECK_DEFINED("accumulate_", dst);
  SL_CHECK_DEFINED("accumulate_", src);
  SL_CHECK(dst.shape() == src.shape()) << "accumulate_: dst " << dst.shape_str() << " vs src "
                                       << src.shape_str();
  Tensor s = src.device() == dst.device() ? src : src.to(dst.device());
  AccumulateParams p{dst.data_ptr(), s.data_ptr(), dst.dtype(),  s.dtype(),
                     dst.numel(),    dst.shape(),  dst.strides(), s.strides()};
  if (p.n == 0) return;
  if (dst.is_cuda()) {
    SL_CUDA_CALL("accumulate_", accumulate_cuda(p, dst.device().index));
  } else {
    accumulate_cpu(p);
  }
}

Tensor sum_of(const Tensor& a, const Tensor& b) {
  Tensor out = a.clone();
  accumulate_(out, b);
  return out;
}

namespace {
template <class D, class S>
void accumulate_typed(const AccumulateParams& p) {
  D* dst = static_cast<D*>(p.dst);
  const S* src = static_cast<const S*>(p.src);
  using C = std::conditional_t<std::is_same_v<D, double>, double, float>;
  auto add = [](D& d, S s) {
    C sum = C(ScalarTraits<D>::to_compute(d)) + C(ScalarTraits<S>::to_compute(s));
    d = ScalarTraits<D>::from_compute(typename ScalarTraits<D>::compute(sum));
  };
  Dims cs = contiguous_strides(p.shape);
  if (p.dst_strides == cs && p.src_strides == cs) {
#pragma omp parallel for if (p.n > (1 << 18))
    for (int64_t i = 0; i < p.n; ++i) add(dst[i], src[i]);
    return;
  }
  StridedIndexer di(p.shape, p.dst_strides), si(p.shape, p.src_strides);
#pragma omp parallel for if (p.n > (1 << 16))
  for (int64_t i = 0; i < p.n; ++i) add(dst[di.offset(i)], src[si.offset(i)]);
}
template <class D>
void accumulate_into(const AccumulateParams& p) {
  SL_DISPATCH_FLOAT(p.src_dtype, "accumulate_", S, accumulate_typed<D, S>(p));
}
}  // namespace

void accumulate_cpu(const AccumulateParams& p) {
  SL_DISPATCH_FLOAT(p.dst_dtype, "accumulate_", D, accumulate_into<D>(p));
}

}  // namespace sl::kernels
