#include "kernels/cross_entropy.h"

#include <algorithm>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "cross_entropy";

DType stat_dtype(DType logits) { return logits == DType::F64 ? DType::F64 : DType::F32; }

void check_args(const Tensor& logits, const Tensor& targets) {
  SL_CHECK_DEFINED(kOp, logits);
  SL_CHECK_DEFINED(kOp, targets);
  SL_CHECK_SHAPE(kOp, logits, -1, -1);
  SL_CHECK_SHAPE(kOp, targets, logits.size(0));
  SL_CHECK_DTYPE(kOp, logits, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK_DTYPE(kOp, targets, DType::I32, DType::I64);
  SL_CHECK_DEVICE(kOp, targets, logits.device());
  SL_CHECK(logits.size(1) > 0) << kOp << ": logits " << logits.shape_str()
                               << " has an empty vocabulary dimension";
}

CrossEntropyParams make_params(const Tensor& logits, const Tensor& targets,
                               int64_t ignore_index, CeReduction reduction) {
  CrossEntropyParams p;
  p.logits = logits.data_ptr();
  p.dtype = logits.dtype();
  p.targets = targets.data_ptr();
  p.target_dtype = targets.dtype();
  p.n = logits.size(0);
  p.v = logits.size(1);
  p.ignore_index = ignore_index;
  p.reduction = reduction;
  return p;
}

}  // namespace

CrossEntropyResult cross_entropy_forward(const Tensor& logits_in, const Tensor& targets_in,
                                         int64_t ignore_index, CeReduction reduction) {
  check_args(logits_in, targets_in);
  Tensor logits = logits_in.contiguous(), targets = targets_in.contiguous();
  Device dev = logits.device();
  DType st = stat_dtype(logits.dtype());
  CrossEntropyResult r;
  r.loss = Tensor::empty({}, st, dev);
  r.lse = Tensor::empty({logits.size(0)}, st, dev);
  r.n_valid = Tensor::empty({1}, st, dev);
  CrossEntropyParams p = make_params(logits, targets, ignore_index, reduction);
  p.lse = r.lse.data_ptr();
  p.loss = r.loss.data_ptr();
  p.n_valid = r.n_valid.data_ptr();
  if (!dev.is_cuda()) {
    cross_entropy_forward_cpu(p);
    return r;
  }
  Tensor row_loss = Tensor::empty({std::max<int64_t>(p.n, 1)}, DType::F32, dev);
  Tensor bad = Tensor::empty({1}, DType::I64, dev);
  p.row_loss = row_loss.data<float>();
  p.bad_row = reinterpret_cast<unsigned long long*>(bad.data<int64_t>());
  SL_CUDA_CALL(kOp, cross_entropy_forward_cuda(p, dev.index));
  int64_t bad_row = bad.to_vector<int64_t>()[0];
  if (bad_row >= 0) {
    int64_t value = int64_t(targets.select(0, bad_row).item());
    SL_FAIL() << kOp << ": target " << value << " at row " << bad_row
              << " is outside [0, " << p.v << ") and is not ignore_index " << ignore_index;
  }
  return r;
}

Tensor cross_entropy_backward(const Tensor& logits_in, const Tensor& targets_in,
                              const Tensor& lse_in, const Tensor& n_valid_in,
                              const Tensor& dloss_in, int64_t ignore_index,
                              CeReduction reduction) {
  check_args(logits_in, targets_in);
  Tensor logits = logits_in.contiguous(), targets = targets_in.contiguous();
  Device dev = logits.device();
  DType st = stat_dtype(logits.dtype());
  SL_CHECK_SHAPE(kOp, lse_in, logits.size(0));
  SL_CHECK(n_valid_in.numel() == 1 && dloss_in.numel() == 1)
      << kOp << ": n_valid " << n_valid_in.shape_str() << " and dloss " << dloss_in.shape_str()
      << " must have one element";
  SL_CHECK_DEVICE(kOp, lse_in, dev);
  Tensor lse = lse_in.to(st).contiguous();
  Tensor n_valid = n_valid_in.to(dev).to(st).contiguous();
  Tensor dloss = dloss_in.to(dev).to(st).contiguous();
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), dev);
  CrossEntropyParams p = make_params(logits, targets, ignore_index, reduction);
  p.lse_in = lse.data_ptr();
  p.n_valid_in = n_valid.data_ptr();
  p.dloss = dloss.data_ptr();
  p.dlogits = dlogits.data_ptr();
  if (p.n == 0) return dlogits;
  if (dev.is_cuda()) {
    SL_CUDA_CALL(kOp, cross_entropy_backward_cuda(p, dev.index));
  } else {
    cross_entropy_backward_cpu(p);
  }
  return dlogits;
}

}  // namespace sl::kernels
