// ag::ssd_scan and ag::causal_conv1d_silu against central finite differences (f64, CPU): both
// SSD algorithms (sequential and chunked), gradients from y and from the final state, with an
// initial state and document resets; and the engine summing the two SSD outputs' gradients.
#include "autograd/ops_ssd.h"

#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "kernels/accumulate.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {

const DType kF64 = DType::F64;

struct SsdVars {
  std::vector<ag::Var> v;  // x, dt, A, Bm, Cm, D, init
  Tensor seq;
};

// B=2, T=7, H=4, G=2, P=2, N=3; documents [0, 3), [3, 7) in row 0 and one document in row 1.
SsdVars make_ssd(uint64_t seed) {
  const int64_t b = 2, t = 7, h = 4, g = 2, p = 2, n = 3;
  SsdVars s;
  s.v = {ag::Var(test::randn({b, t, h, p}, seed, kF64), true, "x"),
         ag::Var(test::rand({b, t, h}, seed + 1, 0.1, 0.7, kF64), true, "dt"),
         ag::Var(test::rand({h}, seed + 2, -1.2, -0.3, kF64), true, "A"),
         ag::Var(test::randn({b, t, g, n}, seed + 3, kF64), true, "Bm"),
         ag::Var(test::randn({b, t, g, n}, seed + 4, kF64), true, "Cm"),
         ag::Var(test::randn({h}, seed + 5, kF64), true, "D"),
         ag::Var(test::randn({b, h, p, n}, seed + 6, kF64), true, "init")};
  s.seq = Tensor::from_vector(std::vector<int32_t>{0, 0, 0, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 5},
                              {b, t});
  return s;
}

struct Algo {
  bool sequential;
  int64_t chunk;
};

class SsdScanGrad : public ::testing::TestWithParam<Algo> {};

TEST_P(SsdScanGrad, GradcheckFromOutputAndFinalState) {
  const Algo a = GetParam();
  const kernels::SsdOptions opt{a.chunk, a.sequential};
  for (bool with_seq : {false, true}) {
    SsdVars s = make_ssd(10 + uint64_t(with_seq));
    const Tensor seq = with_seq ? s.seq : Tensor();
    for (bool of_state : {false, true}) {
      auto res = ag::gradcheck(
          [&](const std::vector<ag::Var>& in) {
            ag::SsdScanResult r =
                ag::ssd_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], seq, opt);
            return of_state ? r.final_state : r.y;
          },
          s.v);
      EXPECT_TRUE(res.ok) << (of_state ? "final state" : "y") << (with_seq ? ", resets" : "")
                          << ": " << res.message;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Algos, SsdScanGrad,
                         ::testing::Values(Algo{true, 1}, Algo{false, 3}, Algo{false, 64}));

// Without an initial state the op has one input fewer and no state gradient.
TEST(SsdScanGrad, WithoutInitialState) {
  SsdVars s = make_ssd(30);
  s.v.pop_back();
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) {
        return ag::ssd_scan(in[0], in[1], in[2], in[3], in[4], in[5], ag::Var(), s.seq,
                            kernels::SsdOptions{4, false})
            .y;
      },
      s.v);
  EXPECT_TRUE(res.ok) << res.message;
}

// Gradients from both outputs in one backward: the sum of the two single-output backwards.
TEST(SsdScanGrad, BothOutputsAccumulate) {
  SsdVars s = make_ssd(40);
  const kernels::SsdOptions opt{3, false};
  ag::SsdScanResult r =
      ag::ssd_scan(s.v[0], s.v[1], s.v[2], s.v[3], s.v[4], s.v[5], s.v[6], s.seq, opt);
  Tensor dy = test::randn(r.y.shape(), 41, kF64);
  Tensor dfin = test::randn(r.final_state.shape(), 42, kF64);
  kernels::SsdGrads a = kernels::ssd_backward(dy, Tensor(), s.v[0].value(), s.v[1].value(),
                                              s.v[2].value(), s.v[3].value(), s.v[4].value(),
                                              s.v[5].value(), s.v[6].value(), s.seq, opt);
  kernels::SsdGrads b = kernels::ssd_backward(
      Tensor::zeros(dy.shape(), kF64), dfin, s.v[0].value(), s.v[1].value(), s.v[2].value(),
      s.v[3].value(), s.v[4].value(), s.v[5].value(), s.v[6].value(), s.seq, opt);
  r.y.backward(dy);
  r.final_state.backward(dfin);
  const Tensor expect[] = {a.dx, a.ddt, a.dA, a.dBm, a.dCm, a.dD, a.d_init_state};
  const Tensor expect2[] = {b.dx, b.ddt, b.dA, b.dBm, b.dCm, b.dD, b.d_init_state};
  for (size_t i = 0; i < s.v.size(); ++i) {
    Tensor sum = kernels::sum_of(expect[i], expect2[i]);
    EXPECT_TRUE(test::AllClose(s.v[i].grad(), sum, test::Tol{kF64, 64})) << s.v[i].name();
  }
}

TEST(CausalConv1dGrad, GradcheckWithStateAndResets) {
  const int64_t b = 2, t = 9, c = 5, w = 4;
  Tensor seq = Tensor::from_vector(
      std::vector<int32_t>{0, 0, 1, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4}, {b, t});
  for (bool with_state : {false, true}) {
    for (bool with_seq : {false, true}) {
      std::vector<ag::Var> in{ag::Var(test::randn({b, t, c}, 50, kF64), true, "x"),
                              ag::Var(test::randn({c, w}, 51, kF64, Device::cpu(), 0.6), true, "w"),
                              ag::Var(test::randn({c}, 52, kF64), true, "bias")};
      if (with_state) in.push_back(ag::Var(test::randn({b, c, w - 1}, 53, kF64), true, "state"));
      auto res = ag::gradcheck(
          [&](const std::vector<ag::Var>& v) {
            return ag::causal_conv1d_silu(v[0], v[1], v[2], with_state ? v[3] : ag::Var(),
                                          with_seq ? seq : Tensor());
          },
          in);
      EXPECT_TRUE(res.ok) << "state " << with_state << " resets " << with_seq << ": "
                          << res.message;
    }
  }
}

}  // namespace
}  // namespace sl
