// Op-level concat, split, gather and scatter_add: argument checks and device dispatch
// (kernels/shape_ops.h). concat is built from strided copies, so it has no kernel of its own.
#include "kernels/shape_ops.h"

#include <sstream>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

void check_index(const char* op, const Tensor& index, const Tensor& target, const char* target_name,
                 int dim) {
  SL_CHECK_DTYPE(op, index, DType::I32, DType::I64);
  SL_CHECK_DEVICE(op, index, target.device());
  SL_CHECK(index.dim() == target.dim())
      << op << ": index " << index.shape_str() << " and " << target_name << " "
      << target.shape_str() << " must have the same number of dims";
  for (int d = 0; d < index.dim(); ++d)
    SL_CHECK(d == dim || index.size(d) <= target.size(d))
        << op << ": index " << index.shape_str() << " is larger than " << target_name << " "
        << target.shape_str() << " in dim " << d << " (only dim " << dim << " may differ)";
}

}  // namespace

void throw_index_error(const char* op, const char* target, const Dims& shape, int64_t position,
                       int64_t value, int64_t dim_size, int dim) {
  std::ostringstream at;
  at << "[";
  int64_t rest = position;
  std::vector<int64_t> coords(size_t(shape.n));
  for (int i = shape.n - 1; i >= 0; --i) {
    coords[size_t(i)] = rest % shape[i];
    rest /= shape[i];
  }
  for (int i = 0; i < shape.n; ++i) at << (i ? ", " : "") << coords[size_t(i)];
  at << "]";
  std::ostringstream msg;
  msg << op << ": index out of range: index" << at.str() << " = " << value << ", but " << target
      << ".size(" << dim << ") = " << dim_size << " (valid 0.." << dim_size - 1 << ")";
  throw Error(msg.str());
}

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  SL_CHECK(!xs.empty()) << "concat: no inputs";
  const Tensor& x0 = xs[0];
  SL_CHECK_DEFINED("concat", x0);
  SL_CHECK(x0.dim() >= 1) << "concat: inputs must have at least one dim, got " << x0.str();
  int d = x0.wrap_dim(dim);
  Dims shape = x0.shape();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    SL_CHECK_DEFINED("concat", x);
    SL_CHECK(x.dtype() == x0.dtype() && x.device() == x0.device() && x.dim() == x0.dim())
        << "concat: input " << i << " is " << x.str() << ", input 0 is " << x0.str()
        << " (dtype, device and number of dims must match)";
    for (int k = 0; k < x.dim(); ++k)
      SL_CHECK(k == d || x.size(k) == x0.size(k))
          << "concat: input " << i << " has shape " << x.shape_str() << ", input 0 has "
          << x0.shape_str() << "; only dim " << d << " may differ";
    total += x.size(d);
  }
  shape[d] = total;
  Tensor out = Tensor::empty(shape, x0.dtype(), x0.device());
  int64_t off = 0;
  for (const Tensor& x : xs) {
    int64_t n = x.size(d);
    if (n > 0 && x.numel() > 0) out.slice(d, off, off + n).copy_(x);
    off += n;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
  SL_CHECK_DEFINED("split", x);
  int d = x.wrap_dim(dim);
  int64_t total = 0;
  for (int64_t s : sizes) {
    SL_CHECK(s >= 0) << "split: negative size " << s << " for " << x.str();
    total += s;
  }
  SL_CHECK(total == x.size(d)) << "split: sizes sum to " << total << " but " << x.str()
                               << " has " << x.size(d) << " in dim " << d;
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(x.slice(d, off, off + s));
    off += s;
  }
  return out;
}

Tensor gather(const Tensor& x, int dim, const Tensor& index) {
  SL_CHECK_DEFINED("gather", x);
  SL_CHECK_DEFINED("gather", index);
  int d = x.wrap_dim(dim);
  check_index("gather", index, x, "x", d);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  GatherParams p{out.data_ptr(), x.data_ptr(),  index.data_ptr(), dtype_size(x.dtype()),
                 index.dtype(),  d,             index.numel(),    x.size(d),
                 index.shape(),  out.strides(), x.strides(),      index.strides()};
  if (p.n == 0) return out;
  SL_CHECK(p.dim_size > 0) << "gather: x " << x.shape_str() << " is empty in dim " << d
                           << " but index " << index.shape_str() << " is not";
  if (x.is_cuda()) {
    SL_CUDA_CALL("gather", gather_cuda(p, x.device().index));
  } else {
    gather_cpu(p);
  }
  return out;
}

void scatter_add_(const Tensor& dst, int dim, const Tensor& index, const Tensor& src) {
  SL_CHECK_DEFINED("scatter_add", dst);
  SL_CHECK_DEFINED("scatter_add", src);
  SL_CHECK_DEFINED("scatter_add", index);
  int d = dst.wrap_dim(dim);
  SL_CHECK(dtype_is_float(dst.dtype()) && src.dtype() == dst.dtype())
      << "scatter_add: dst " << dst.str() << " and src " << src.str()
      << " must have the same float dtype";
  SL_CHECK_DEVICE("scatter_add", src, dst.device());
  check_index("scatter_add", index, dst, "dst", d);
  for (int k = 0; k < index.dim(); ++k) {
    SL_CHECK(index.size(k) <= src.size(k))
        << "scatter_add: index " << index.shape_str() << " is larger than src "
        << src.shape_str() << " in dim " << k;
    SL_CHECK(dst.stride(k) != 0 || dst.size(k) <= 1)
        << "scatter_add: dst " << dst.str() << " overlaps itself (stride 0 in dim " << k << ")";
  }
  ScatterAddParams p{dst.data_ptr(),  src.data_ptr(),   index.data_ptr(), dst.dtype(),
                     index.dtype(),   d,                index.numel(),    dst.size(d),
                     index.shape(),   dst.strides(),    src.strides(),    index.strides()};
  if (p.n == 0) return;
  SL_CHECK(p.dim_size > 0) << "scatter_add: dst " << dst.shape_str() << " is empty in dim " << d
                           << " but index " << index.shape_str() << " is not";
  if (dst.is_cuda()) {
    SL_CUDA_CALL("scatter_add", scatter_add_cuda(p, dst.device().index));
  } else {
    scatter_add_cpu(p);
  }
}

Tensor scatter_add(const Tensor& dst, int dim, const Tensor& index, const Tensor& src) {
  SL_CHECK_DEFINED("scatter_add", dst);
  Tensor out = dst.clone();
  scatter_add_(out, dim, index, src);
  return out;
}

}  // namespace sl::kernels
