// The NN ops through the autograd engine: a small chain (embedding -> gated RMSNorm -> RMSNorm ->
// cross-entropy) against gradcheck in f64, the same chain's gradients on the GPU against the CPU,
// dropout's use of the generator, and no graph when nothing requires grad.
#include "autograd/ops_nn.h"

#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

ag::Var chain(const std::vector<ag::Var>& in, const Tensor& ids, const Tensor& targets) {
  ag::Var h = ag::embedding(in[0], ids);
  ag::Var g = ag::gated_rmsnorm(h, in[1], in[2], 3, 1e-5);
  ag::Var logits = ag::rmsnorm(g, in[3], 1e-5);
  return ag::cross_entropy(logits, targets, -100);
}

std::vector<ag::Var> chain_inputs(DType dt, Device dev) {
  const int64_t v = 9, c = 6, n = 8;
  return {ag::Var(test::randn({v, c}, 1, dt, dev), true, "embedding"),
          ag::Var(test::randn({n, c}, 2, dt, dev, 2.0), true, "z"),
          ag::Var(test::rand({c}, 3, 0.5, 1.5, dt, dev), true, "w_gated"),
          ag::Var(test::rand({c}, 4, 0.5, 3.0, dt, dev), true, "w")};
}

TEST(OpsNn, ChainGradcheckF64) {
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 3, 3, 8, 1, 3, 0, 5}, {8});
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{1, 5, -100, 0, 2, 2, 4, -100}, {8});
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) { return chain(in, ids, targets); },
      chain_inputs(DType::F64, Device::cpu()));
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(OpsNn, NoGraphWithoutRequiresGradAndDropoutConsumesOffsets) {
  ag::Var x(test::randn({4, 6}, 5));
  ag::Var w(test::randn({6}, 6));
  EXPECT_TRUE(ag::rmsnorm(x, w).is_leaf());
  Generator gen(3);
  ag::Var a = ag::dropout(x, 0.5, gen), b = ag::dropout(x, 0.5, gen);
  EXPECT_EQ(gen.offset, 2u);
  EXPECT_FALSE(test::AllEqual(a.value(), b.value()));
  EXPECT_EQ(ag::dropout(x, 0.0, gen).value().storage(), x.value().storage());
  EXPECT_EQ(gen.offset, 2u);
}

TEST(OpsNnGpu, ChainGradientsMatchCpu) {
  SL_REQUIRE_GPU();
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 3, 3, 8, 1, 3, 0, 5}, {8});
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{1, 5, -100, 0, 2, 2, 4, -100}, {8});
  std::vector<ag::Var> cpu = chain_inputs(DType::F32, Device::cpu());
  std::vector<ag::Var> gpu = chain_inputs(DType::F32, kGpu);
  ag::Var lc = chain(cpu, ids, targets), lg = chain(gpu, ids.to(kGpu), targets.to(kGpu));
  EXPECT_TRUE(AllClose(lg.value(), lc.value(), Tol{DType::F32, 64}));
  lc.backward();
  lg.backward();
  for (size_t i = 0; i < cpu.size(); ++i)
    EXPECT_TRUE(AllClose(gpu[i].grad(), cpu[i].grad(), Tol{DType::F32, 64})) << cpu[i].name();
}

}  // namespace
}  // namespace sl
