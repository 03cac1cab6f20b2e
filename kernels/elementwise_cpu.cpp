// CPU reference for elementwise ops: one strided loop per op kind, math from elementwise.h.
#include "kernels/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/indexing.h"

namespace sl::kernels {
namespace {

template <class T>
void elementwise_typed(const ElementwiseParams& p) {
  using C = typename ScalarTraits<T>::compute;
  using Tr = ScalarTraits<T>;
  T* out = static_cast<T*>(p.out);
  const T* in0 = static_cast<const T*>(p.in0);
  const T* in1 = static_cast<const T*>(p.in1);
  StridedIndexer i0(p.shape, p.in0_strides), i1(p.shape, p.in1_strides);
  C alpha = C(p.alpha);
#pragma omp parallel for if (p.n > (1 << 16))
  for (int64_t i = 0; i < p.n; ++i) {
    C x = Tr::to_compute(in0[i0.offset(i)]);
    C y = 0;
    switch (p.kind) {
      case EwKind::UnaryFwd:
        y = ew::unary_fwd(UnaryOp(p.op), x, alpha);
        break;
      case EwKind::UnaryBwd:
        y = ew::unary_bwd(UnaryOp(p.op), x, C(Tr::to_compute(in1[i1.offset(i)])), alpha);
        break;
      case EwKind::Binary:
        y = ew::binary(BinaryOp(p.op), x, C(Tr::to_compute(in1[i1.offset(i)])));
        break;
    }
    out[i] = Tr::from_compute(y);
  }
}

}  // namespace

void elementwise_cpu(const ElementwiseParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "elementwise", T, elementwise_typed<T>(p));
}

}  // namespace sl::kernels
