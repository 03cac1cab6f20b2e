// CUDA gradient accumulation (dst += src), any strides, f32/bf16 operands.
#include "core/cuda_context.h"
#include "kernels/accumulate.h"
#include "kernels/dispatch.h"
#include "kernels/indexing.h"

namespace sl::kernels {
namespace {

template <class D, class S>
__global__ void accumulate_kernel(D* dst, const S* src, int64_t n, StridedIndexer di,
                                  StridedIndexer si, bool dense) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t od = dense ? i : di.offset(i), os = dense ? i : si.offset(i);
    float sum = ScalarTraits<D>::to_compute(dst[od]) + ScalarTraits<S>::to_compute(src[os]);
    dst[od] = ScalarTraits<D>::from_compute(sum);
  }
}

template <class D>
void launch_into(const AccumulateParams& p, cudaStream_t s) {
  StridedIndexer di(p.shape, p.dst_strides), si(p.shape, p.src_strides);
  Dims cs = contiguous_strides(p.shape);
  bool dense = p.dst_strides == cs && p.src_strides == cs;
  int64_t blocks = std::min<int64_t>((p.n + 255) / 256, 132 * 16);
  SL_DISPATCH_CUDA_FLOAT(p.src_dtype, "accumulate_", S, {
    accumulate_kernel<D, S><<<int(blocks), 256, 0, s>>>(static_cast<D*>(p.dst),
                                                        static_cast<const S*>(p.src), p.n, di, si,
                                                        dense);
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

void accumulate_cuda(const AccumulateParams& p, int device) {
  cuda::set_device(device);
  SL_DISPATCH_CUDA_FLOAT(p.dst_dtype, "accumulate_", D, launch_into<D>(p, cuda::stream(device)));
}

}  // namespace sl::kernels
