// Linear, Embedding, RMSNorm and cast: thin wrappers over the autograd ops (autograd/ops.h); the
// only code of their own is parameter creation (the documented initialisation) and cast's
// backward, a dtype conversion of the gradient.
#include "layers/linear.h"

#include "autograd/ops.h"

namespace sl::layers {

ag::Var cast(const ag::Var& x, DType dtype) {
  SL_CHECK(x.defined()) << "cast: undefined input";
  if (x.dtype() == dtype) return x;
  DType from = x.dtype();
  return ag::make_result("cast", x.value().to(dtype), {x},
                         [from](const Tensor& g, const std::vector<bool>&) {
                           return std::vector<Tensor>{g.to(from)};
                         });
}

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, double init_std,
               Generator& gen)
    : in_(in_features), out_(out_features) {
  SL_CHECK(in_features > 0 && out_features > 0)
      << "Linear: sizes must be positive, got in " << in_features << " out " << out_features;
  weight_ = register_parameter("weight", Tensor::randn({out_features, in_features}, gen, DType::F32,
                                                       Device::cpu(), 0, init_std));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}, DType::F32));
}

ag::Var Linear::forward(const ag::Var& x) const {
  SL_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_)
      << "Linear: input must be [..., " << in_ << "], got "
      << (x.defined() ? x.value().shape_str() : "undefined");
  return ag::linear(x, weight_, bias_);
}

Embedding::Embedding(int64_t num_embeddings, int64_t dim, double init_std, Generator& gen) {
  SL_CHECK(num_embeddings > 0 && dim > 0)
      << "Embedding: sizes must be positive, got " << num_embeddings << " x " << dim;
  weight_ = register_parameter(
      "weight", Tensor::randn({num_embeddings, dim}, gen, DType::F32, Device::cpu(), 0, init_std));
}

ag::Var Embedding::forward(const Tensor& ids) const {
  return ag::embedding(weight_, ids);
}

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  SL_CHECK(dim > 0 && eps > 0) << "RMSNorm: dim " << dim << " and eps " << eps
                               << " must be positive";
  weight_ = register_parameter("weight", Tensor::full({dim}, 1.0, DType::F32));
}

ag::Var RMSNorm::forward(const ag::Var& x) const {
  return ag::rmsnorm(cast(x, weight_.dtype()), weight_, eps_);
}

}  // namespace sl::layers
