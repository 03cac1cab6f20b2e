// Shape ops: concat, split, gather and scatter-add along one dimension.
//
// concat is one strided copy per input into a slice of the output (kernels/copy), and split
// returns views, so neither has a kernel of its own. gather and scatter_add follow torch.gather
// and torch.Tensor.scatter_add_ exactly; for dim 0 of a 3-d index:
//
//     gather:       out[i][j][k]               = x[index[i][j][k]][j][k]
//     scatter_add:  dst[index[i][j][k]][j][k] += src[i][j][k]
//
// index is i32 or i64 and has the same number of dims as x / dst; index.size(d) <= x.size(d)
// (dst.size(d)) for d != dim, and index.size(d) <= src.size(d) for all d. An index outside
// [0, x.size(dim)) is an sl::Error naming the op, the index position (row) and the value; the
// CPU checks before writing anything, the GPU too: see Note [index range check on the GPU].
//
// Note [deterministic scatter_add]
// The framework promises bitwise-reproducible runs, so scatter_add never uses float atomics. The
// summation order is fixed and the same on both devices: every destination element starts from
// its value in f32 (f64 for f64), adds its contributions in increasing row-major order of their
// index position, and is rounded to the destination dtype once at the end. The CPU reference loops
// in that order; the GPU sorts (destination offset, position) pairs with a stable radix sort (CUB)
// and gives each run of equal destinations to one thread, which adds in position order. So GPU
// and CPU agree bit for bit in f32 and bf16, and a run repeats bit for bit. The cost is the sort
// (about 4 passes over 16 bytes per element) and serial work proportional to the longest run.
//
// Note [index range check on the GPU]
// The GPU kernels never read or write out of bounds: an out-of-range index is skipped, and the
// smallest offending position is recorded in a device-side flag (atomicMin). The launcher reads the
// flag back after the kernel (one small device-to-host copy, which waits for the stream) and throws
// the same sl::Error as the CPU. So gather and scatter_add synchronise the host with the stream.
// scatter_add checks before it touches dst; gather's output is simply not returned.
#pragma once

#include <vector>

#include "core/macros.h"
#include "core/tensor.h"

namespace sl::kernels {

// Inputs: same dtype, device and number of dims; sizes equal except along dim. Contiguous output.
Tensor concat(const std::vector<Tensor>& xs, int dim);
// Views of x along dim with the given sizes (which must sum to x.size(dim)); no copy.
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);
// Contiguous output with index's shape and x's dtype. Any dtype (the op moves bytes).
Tensor gather(const Tensor& x, int dim, const Tensor& index);
// dst += scattered src in place (Note [deterministic scatter_add]). dst and src: same float dtype.
// dst must not overlap itself (no broadcast views).
void scatter_add_(const Tensor& dst, int dim, const Tensor& index, const Tensor& src);
// Functional form: a contiguous copy of dst with src scattered into it.
Tensor scatter_add(const Tensor& dst, int dim, const Tensor& index, const Tensor& src);

// Parameters shared by the CPU reference and the CUDA kernels. Sizes and strides are in elements;
// `shape` is index's shape (the iteration space of both ops).
struct GatherParams {
  void* out;
  const void* x;
  const void* index;
  size_t elem_size;  // 2, 4 or 8: gather moves elements without looking at their values
  DType index_dtype;
  int dim;
  int64_t n;          // index.numel()
  int64_t dim_size;   // x.size(dim)
  Dims shape, out_strides, x_strides, index_strides;
};
struct ScatterAddParams {
  void* dst;
  const void* src;
  const void* index;
  DType dtype, index_dtype;
  int dim;
  int64_t n;
  int64_t dim_size;  // dst.size(dim)
  Dims shape, dst_strides, src_strides, index_strides;
};

// Both throw sl::Error on an out-of-range index, leaving scatter_add's dst untouched.
void gather_cpu(const GatherParams& p);
void scatter_add_cpu(const ScatterAddParams& p);
#if SL_WITH_CUDA
void gather_cuda(const GatherParams& p, int device);
void scatter_add_cuda(const ScatterAddParams& p, int device);
#endif

// The error both devices raise: names the op, the index position (in index's coordinates), the
// value and the valid range. `target` names the indexed argument ("x", "dst").
[[noreturn]] void throw_index_error(const char* op, const char* target, const Dims& shape,
                                    int64_t position, int64_t value, int64_t dim_size, int dim);

// Storage offsets of one position of the iteration space `shape` (index's shape) in three
// tensors: `a` (out or src: all dims), `b` (x or dst: every dim but `dim`; the caller adds
// index * b's stride along dim) and the index tensor. Host and device; trivially copyable.
struct AxisIndexer {
  int n = 0, dim = 0;
  int64_t shape[kMaxDims], a[kMaxDims], b[kMaxDims], idx[kMaxDims];

  AxisIndexer() = default;
  AxisIndexer(const Dims& sh, int d, const Dims& sa, const Dims& sb, const Dims& si)
      : n(sh.n), dim(d) {
    for (int i = 0; i < n; ++i) {
      shape[i] = sh[i];
      a[i] = sa[i];
      b[i] = i == d ? 0 : sb[i];
      idx[i] = si[i];
    }
  }
  SL_HD void at(int64_t linear, int64_t& oa, int64_t& ob, int64_t& oi) const {
    oa = ob = oi = 0;
    for (int i = n - 1; i >= 0; --i) {
      int64_t c = linear % shape[i];
      linear /= shape[i];
      oa += c * a[i];
      ob += c * b[i];
      oi += c * idx[i];
    }
  }
};

}  // namespace sl::kernels
