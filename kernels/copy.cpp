#include "kernels/copy.h"

#include <cstring>

#include "kernels/dispatch.h"
#if SL_WITH_CUDA
#include "core/cuda_context.h"
#endif

namespace sl::kernels {

void copy_strided(const Tensor& dst, const Tensor& src) {
  SL_CHECK(dst.device() == src.device()) << "copy_strided across devices";
  SL_CHECK(dst.shape() == src.shape()) << "copy_strided " << src.shape_str() << " -> "
                                       << dst.shape_str();
  CopyParams p{dst.data_ptr(), src.data_ptr(), dst.dtype(), src.dtype(), dst.numel(),
               dst.shape(),    dst.strides(),  src.strides()};
  if (p.n == 0) return;
  if (dst.is_cuda()) {
    SL_CUDA_CALL("copy", copy_strided_cuda(p, dst.device().index));
  } else {
    copy_strided_cpu(p);
  }
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    memcpy(dst, src, nbytes);
    return;
  }
#if SL_WITH_CUDA
  int dev = dst_dev.is_cuda() ? dst_dev.index : src_dev.index;
  cuda::set_device(dev);
  cudaStream_t s = cuda::stream(dev);
  SL_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, s));
  SL_CUDA_CHECK(cudaStreamSynchronize(s));
#else
  SL_FAIL() << "copy to or from " << (dst_dev.is_cuda() ? dst_dev : src_dev).str()
            << ": this build has no CUDA support";
#endif
}

void fill(const Tensor& t, double value) {
  FillParams p{t.data_ptr(), t.dtype(), t.numel(), t.shape(), t.strides(), value, 0, 0};
  if (p.n == 0) return;
  if (t.is_cuda()) {
    SL_CUDA_CALL("fill", fill_cuda(p, t.device().index));
  } else {
    fill_cpu(p);
  }
}

void fill_random(const Tensor& t, uint64_t seed, uint64_t offset, bool normal, double a,
                 double b) {
  SL_CHECK(dtype_is_float(t.dtype())) << "random fill of a " << dtype_name(t.dtype())
                                      << " tensor";
  FillParams p{t.data_ptr(), t.dtype(), t.numel(), t.shape(), t.strides(), 0, seed, offset};
  p.random = true;
  p.normal = normal;
  p.a = a;
  p.b = b;
  if (p.n == 0) return;
  if (t.is_cuda()) {
    SL_CUDA_CALL("fill_random", fill_cuda(p, t.device().index));
  } else {
    fill_cpu(p);
  }
}

}  // namespace sl::kernels
