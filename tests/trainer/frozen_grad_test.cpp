// Frozen parameters get no gradient computed at all: Var::set_requires_grad on leaves, and
// Optimizer::create turning it off for the parameters `freeze` matches (and on again for the
// others), so after a backward pass a frozen parameter's grad is still undefined.
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "layers/hybrid_lm.h"
#include "trainer/optimizer.h"

namespace sl::trainer {
namespace {

TEST(SetRequiresGrad, OpsRecordNothingForALeafThatWasTurnedOff) {
  ag::Var a(Tensor::full({3}, 2.0, DType::F32), true), b(Tensor::full({3}, 3.0, DType::F32), true);
  a.set_requires_grad(false);
  EXPECT_FALSE(a.requires_grad());
  ag::Var y = ag::sum_all(ag::mul(a, b));
  ASSERT_TRUE(y.requires_grad());
  y.backward();
  EXPECT_FALSE(a.grad().defined());
  ASSERT_TRUE(b.grad().defined());
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{2, 2, 2}));

  ag::Var only_a = ag::mul(a, a);
  EXPECT_FALSE(only_a.requires_grad()) << "no node when nothing needs a gradient";
  a.set_requires_grad(true);
  ag::sum_all(ag::mul(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{3, 3, 3}));

  EXPECT_THROW(y.set_requires_grad(false), Error) << "not a leaf";
  ag::Var ids(Tensor::zeros({2}, DType::I32));
  EXPECT_THROW(ids.set_requires_grad(true), Error) << "integer tensor";
}

TEST(SetRequiresGrad, FrozenModelParametersGetNoGradient) {
  layers::ModelConfig c;
  c.vocab_size = 16;
  c.d_model = 8;
  c.pattern = "M-";
  c.mamba.n_heads = 2;
  c.mamba.head_dim = 4;
  c.mamba.state_size = 4;
  c.mamba.chunk_size = 4;
  c.mlp.intermediate_size = 8;
  Generator gen(4);
  layers::HybridLM lm(c, gen);
  auto params = lm.named_parameters();
  StatusOr<std::unique_ptr<Optimizer>> opt = Optimizer::create(
      params, OptimizerConfig{}, {"backbone.embeddings.*", "*.1.mixer.*"}, DType::F32);
  ASSERT_TRUE(opt.ok()) << opt.status().message();
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {1, 6});
  lm.loss(ids, ids).total.backward();
  int frozen = 0, trained = 0;
  for (const ParamState& s : opt.value()->states()) {
    if (s.frozen) {
      ++frozen;
      EXPECT_FALSE(s.param.requires_grad()) << s.name;
      EXPECT_FALSE(s.param.grad().defined()) << s.name << " got a gradient";
    } else {
      ++trained;
      EXPECT_TRUE(s.param.grad().defined()) << s.name;
    }
  }
  EXPECT_EQ(frozen, 3);  // the embedding, the MLP's up_proj and down_proj
  EXPECT_GT(trained, 5);

  // A new optimizer without freeze makes them trainable again.
  lm.zero_grad();
  ASSERT_TRUE(Optimizer::create(params, OptimizerConfig{}, {}, DType::F32).ok());
  lm.loss(ids, ids).total.backward();
  for (auto& [name, p] : params) EXPECT_TRUE(p.grad().defined()) << name;
}

}  // namespace
}  // namespace sl::trainer
