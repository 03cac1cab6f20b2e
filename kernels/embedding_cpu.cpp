// CPU reference for embedding: a row copy per id, and the backward summing dy rows per id in
// increasing position order (f32 accumulation, f64 for f64).
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/embedding.h"

namespace sl::kernels {
namespace {

int64_t checked_id(const EmbeddingParams& p, int64_t i) {
  int64_t id = p.id_dtype == DType::I32 ? int64_t(static_cast<const int32_t*>(p.ids)[i])
                                        : static_cast<const int64_t*>(p.ids)[i];
  SL_CHECK(id >= 0 && id < p.v) << "embedding: id " << id << " at position " << i
                                << " is outside [0, " << p.v << ")";
  return id;
}

template <class T>
void forward_typed(const EmbeddingParams& p) {
  const T* w = static_cast<const T*>(p.weight);
  T* out = static_cast<T*>(p.out);
  for (int64_t i = 0; i < p.n; ++i) {
    const T* src = w + checked_id(p, i) * p.c;
    for (int64_t j = 0; j < p.c; ++j) out[i * p.c + j] = src[j];
  }
}

template <class T>
void backward_typed(const EmbeddingParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* dy = static_cast<const T*>(p.dy);
  std::vector<C> acc(static_cast<size_t>(p.v * p.c), C(0));
  for (int64_t i = 0; i < p.n; ++i) {
    C* dst = acc.data() + checked_id(p, i) * p.c;
    for (int64_t j = 0; j < p.c; ++j) dst[j] += ScalarTraits<T>::to_compute(dy[i * p.c + j]);
  }
  T* dw = static_cast<T*>(p.dweight);
  for (size_t k = 0; k < acc.size(); ++k) dw[k] = ScalarTraits<T>::from_compute(acc[k]);
}

}  // namespace

void embedding_forward_cpu(const EmbeddingParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "embedding", T, forward_typed<T>(p));
}

void embedding_backward_cpu(const EmbeddingParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "embedding", T, backward_typed<T>(p));
}

}  // namespace sl::kernels
