// The basic layers every block is built from: Linear, Embedding, RMSNorm, a ModuleList for
// numbered children ("layers.3", "experts.17"), and cast, a differentiable dtype conversion.
//
// Initialisation (Hugging Face NemotronH _init_weights): Linear and Embedding weights are
// normal(0, init_std), biases zeros, norm weights ones. Parameters are made in f32 on the CPU,
// drawn from the caller's Generator in construction order (so a model built from the same seed is
// the same model); Module::to() moves and casts them afterwards.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/module.h"

namespace sl::layers {

// x converted to dtype (Tensor::to); the gradient is converted back to x's dtype. The identity
// (no node) when x already has that dtype.
ag::Var cast(const ag::Var& x, DType dtype);

// y = x Wᵀ + b over any leading dims. Parameters "weight" [out, in] and, with bias, "bias" [out].
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, double init_std, Generator& gen);
  ag::Var forward(const ag::Var& x) const;

  ag::Var weight() const { return weight_; }
  ag::Var bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  ag::Var weight_, bias_;
};

// out[..., :] = weight[ids[...], :]. Parameter "weight" [num_embeddings, dim]; ids i32/i64.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, double init_std, Generator& gen);
  ag::Var forward(const Tensor& ids) const;
  ag::Var weight() const { return weight_; }

 private:
  ag::Var weight_;
};

// y = x / sqrt(mean(x^2) + eps) * weight over the last dim (kernels/rmsnorm.h). Parameter
// "weight" [dim], ones. x is cast to the weight's dtype first (HF: norm(x.to(norm.weight.dtype))).
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps);
  ag::Var forward(const ag::Var& x) const;
  ag::Var weight() const { return weight_; }

 private:
  double eps_;
  ag::Var weight_;
};

// Children registered under their index: "0", "1", ... (torch.nn.ModuleList).
template <class M>
class ModuleList : public Module {
 public:
  M& append(std::unique_ptr<M> m) {
    M& ref = register_module(std::to_string(items_.size()), std::move(m));
    items_.push_back(&ref);
    return ref;
  }
  int64_t size() const { return int64_t(items_.size()); }
  M& operator[](int64_t i) const { return *items_[size_t(i)]; }

 private:
  std::vector<M*> items_;
};

}  // namespace sl::layers
