#include "kernels/embedding.h"

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "embedding";

EmbeddingParams make_params(const Tensor& ids, DType dtype, int64_t v, int64_t c) {
  EmbeddingParams p;
  p.dtype = dtype;
  p.ids = ids.data_ptr();
  p.id_dtype = ids.dtype();
  p.n = ids.numel();
  p.v = v;
  p.c = c;
  return p;
}

Dims out_shape(const Tensor& ids, int64_t c) {
  Dims s = ids.shape();
  s.push_back(c);
  return s;
}

}  // namespace

Tensor embedding_forward(const Tensor& weight_in, const Tensor& ids_in) {
  SL_CHECK_DEFINED(kOp, weight_in);
  SL_CHECK_DEFINED(kOp, ids_in);
  SL_CHECK_SHAPE(kOp, weight_in, -1, -1);
  SL_CHECK_DTYPE(kOp, weight_in, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK_DTYPE(kOp, ids_in, DType::I32, DType::I64);
  SL_CHECK_DEVICE(kOp, ids_in, weight_in.device());
  SL_CHECK(ids_in.dim() < kMaxDims) << kOp << ": ids " << ids_in.shape_str()
                                    << " has too many dimensions";
  Tensor weight = weight_in.contiguous(), ids = ids_in.contiguous();
  Tensor out = Tensor::empty(out_shape(ids, weight.size(1)), weight.dtype(), weight.device());
  EmbeddingParams p = make_params(ids, weight.dtype(), weight.size(0), weight.size(1));
  p.weight = weight.data_ptr();
  p.out = out.data_ptr();
  if (p.n == 0 || p.c == 0) return out;
  if (!weight.is_cuda()) {
    embedding_forward_cpu(p);
    return out;
  }
  Tensor bad = Tensor::empty({1}, DType::I64, weight.device());
  p.bad = reinterpret_cast<unsigned long long*>(bad.data<int64_t>());
  SL_CUDA_CALL(kOp, embedding_forward_cuda(p, weight.device().index));
  int64_t pos = bad.to_vector<int64_t>()[0];
  if (pos >= 0) {
    int64_t value = int64_t(ids.reshape({-1}).select(0, pos).item());
    SL_FAIL() << kOp << ": id " << value << " at position " << pos << " is outside [0, " << p.v
              << ")";
  }
  return out;
}

Tensor embedding_backward(const Tensor& dy_in, const Tensor& ids_in, int64_t num_embeddings) {
  SL_CHECK_DEFINED(kOp, dy_in);
  SL_CHECK_DEFINED(kOp, ids_in);
  SL_CHECK_DTYPE(kOp, dy_in, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK_DTYPE(kOp, ids_in, DType::I32, DType::I64);
  SL_CHECK_DEVICE(kOp, ids_in, dy_in.device());
  SL_CHECK(dy_in.dim() == ids_in.dim() + 1 && out_shape(ids_in, dy_in.size(-1)) == dy_in.shape())
      << kOp << ": dy " << dy_in.shape_str() << " must be ids " << ids_in.shape_str()
      << " followed by C";
  SL_CHECK(num_embeddings >= 0) << kOp << ": num_embeddings " << num_embeddings;
  Tensor dy = dy_in.contiguous(), ids = ids_in.contiguous();
  int64_t c = dy.size(-1);
  Tensor dw = Tensor::empty({num_embeddings, c}, dy.dtype(), dy.device());
  EmbeddingParams p = make_params(ids, dy.dtype(), num_embeddings, c);
  p.dy = dy.data_ptr();
  p.dweight = dw.data_ptr();
  if (p.n == 0 || c == 0 || num_embeddings == 0) {
    dw.zero_();
    return dw;
  }
  if (dy.is_cuda()) {
    SL_CUDA_CALL(kOp, embedding_backward_cuda(p, dy.device().index));
  } else {
    embedding_backward_cpu(p);
  }
  return dw;
}

}  // namespace sl::kernels
