// The reverse-mode engine (autograd/variable.h): Note [gradient accumulation rule], grad mode,
// detach, undefined gradients and argument errors. The ops are small CPU f64 ops defined here with
// ag::make_result, so the test depends on nothing but the engine.
#include "autograd/variable.h"

#include <gtest/gtest.h>

#include "tests/common/tolerance.h"

namespace sl {
namespace {
using ag::Var;
using test::AllEqual;

Tensor vec(std::vector<double> v) {
  int64_t n = int64_t(v.size());
  return Tensor::from_vector(v, {n});
}
std::vector<double> values(const Tensor& t) { return t.to(DType::F64).contiguous().to_vector<double>(); }

// Elementwise product of two same-shape f64 vectors.
Var mul(const Var& a, const Var& b) {
  std::vector<double> av = values(a.value()), bv = values(b.value()), out(av.size());
  for (size_t i = 0; i < av.size(); ++i) out[i] = av[i] * bv[i];
  Tensor at = a.value(), bt = b.value();
  return ag::make_result("test_mul", vec(out), {a, b},
                         [at, bt](const Tensor& g, const std::vector<bool>& needs) {
                           std::vector<double> gv = values(g), x = values(at), y = values(bt);
                           std::vector<double> ga(gv.size()), gb(gv.size());
                           for (size_t i = 0; i < gv.size(); ++i) ga[i] = gv[i] * y[i], gb[i] = gv[i] * x[i];
                           return std::vector<Tensor>{needs[0] ? vec(ga) : Tensor(),
                                                      needs[1] ? vec(gb) : Tensor()};
                         });
}

// c * a.
Var scale(const Var& a, double c, int* calls = nullptr) {
  std::vector<double> av = values(a.value());
  for (double& x : av) x *= c;
  return ag::make_result("test_scale", vec(av), {a},
                         [c, calls](const Tensor& g, const std::vector<bool>&) {
                           if (calls) ++*calls;
                           std::vector<double> gv = values(g);
                           for (double& x : gv) x *= c;
                           return std::vector<Tensor>{vec(gv)};
                         });
}

Var add(const Var& a, const Var& b) {
  std::vector<double> av = values(a.value()), bv = values(b.value());
  for (size_t i = 0; i < av.size(); ++i) av[i] += bv[i];
  return ag::make_result("test_add", vec(av), {a, b},
                         [](const Tensor& g, const std::vector<bool>&) {
                           return std::vector<Tensor>{g, g};
                         });
}

// Sum to a one-element tensor of shape [1].
Var sum(const Var& a) {
  double s = 0;
  for (double x : values(a.value())) s += x;
  Dims shape = a.shape();
  return ag::make_result("test_sum", vec({s}), {a},
                         [shape](const Tensor& g, const std::vector<bool>&) {
                           return std::vector<Tensor>{Tensor::full(shape, g.item(), DType::F64)};
                         });
}

TEST(Engine, InputUsedTwiceGetsTheSumOfBothGradients) {
  Var x(vec({1, -2, 3}), true, "x");
  sum(mul(x, x)).backward();  // d/dx sum(x^2) = 2x
  EXPECT_EQ(values(x.grad()), (std::vector<double>{2, -4, 6}));
  // Two paths through separate nodes: 2x + 3x.
  Var y(vec({1, 1}), true, "y");
  sum(add(scale(y, 2), scale(y, 3))).backward();
  EXPECT_EQ(values(y.grad()), (std::vector<double>{5, 5}));
}

TEST(Engine, SharedNodeRunsOnceAfterAllItsConsumers) {
  Var x(vec({1, 2}), true);
  int calls = 0;
  Var a = scale(x, 2, &calls);  // consumed twice
  Var d = add(scale(a, 3), scale(a, 4));
  sum(d).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(values(x.grad()), (std::vector<double>{14, 14}));
}

TEST(Engine, LeafGradAccumulatesAcrossBackwardCallsUntilZeroGrad) {
  Var x(vec({1, 2, 3}), true);
  Var loss = sum(scale(x, 3));
  loss.backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{3, 3, 3}));
  loss.backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{6, 6, 6}));
  sum(mul(x, x)).backward();  // a different graph adds 2x
  EXPECT_EQ(values(x.grad()), (std::vector<double>{8, 10, 12}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  loss.backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{3, 3, 3}));
}

TEST(Engine, LeafGradDoesNotAliasTheIncomingGradient) {
  Var x(vec({1, 2}), true);
  Var y = add(x, Var(vec({0, 0})));  // backward hands grad_out straight through
  Tensor g = vec({5, 7});
  y.backward(g);
  EXPECT_NE(x.grad().storage(), g.storage());
  g.fill_(0);
  EXPECT_EQ(values(x.grad()), (std::vector<double>{5, 7}));
}

TEST(Engine, NoGradGuardRecordsNothingAndRestores) {
  Var x(vec({1, 2}), true);
  EXPECT_TRUE(ag::grad_enabled());
  {
    ag::NoGradGuard ng;
    EXPECT_FALSE(ag::grad_enabled());
    Var y = scale(x, 2);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(y.grad_fn());
    EXPECT_EQ(values(y.value()), (std::vector<double>{2, 4}));
    {
      ag::NoGradGuard nested;
    }
    EXPECT_FALSE(ag::grad_enabled());  // the nested guard restores "off", not "on"
  }
  EXPECT_TRUE(ag::grad_enabled());
  EXPECT_TRUE(scale(x, 2).requires_grad());
}

TEST(Engine, DetachCutsTheGraph) {
  Var x(vec({2, 3}), true);
  Var h = scale(x, 5);
  Var hd = h.detach();
  EXPECT_FALSE(hd.requires_grad());
  EXPECT_TRUE(hd.is_leaf());
  EXPECT_EQ(hd.value().storage(), h.value().storage());  // same value, no copy
  EXPECT_FALSE(scale(hd, 2).requires_grad());
  // x * detach(5x): only the direct path carries gradient, d/dx = 5x (not 10x).
  sum(mul(x, hd)).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{10, 15}));
}

TEST(Engine, OnlyInputsThatRequireGradAreAskedFor) {
  Var a(vec({1, 2}), true), b(vec({3, 4}), false);
  std::vector<bool> seen;
  Var y = ag::make_result("test_probe", vec({0, 0}), {a, b, Var()},
                          [&seen](const Tensor& g, const std::vector<bool>& needs) {
                            seen = needs;
                            return std::vector<Tensor>{g, Tensor(), Tensor()};
                          });
  y.backward(vec({1, 1}));
  EXPECT_EQ(seen, (std::vector<bool>{true, false, false}));
  EXPECT_FALSE(b.grad().defined());
  // No input requires grad: no node, a plain leaf.
  Var z = ag::make_result("test_probe", vec({0}), {b}, [](const Tensor&, const std::vector<bool>&) {
    return std::vector<Tensor>{Tensor()};
  });
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(z.is_leaf());
}

TEST(Engine, UndefinedGradientsFromConsumersDoNotCrash) {
  Var x(vec({1, 2}), true), w(vec({3, 4}), true);
  Var h = scale(x, 2);
  // A consumer of h that returns no gradient for it (e.g. an integer-valued output).
  auto blocker = [](const Var& in, const Var& other) {
    return ag::make_result("test_blocker", other.value().clone(), {in, other},
                           [](const Tensor& g, const std::vector<bool>&) {
                             return std::vector<Tensor>{Tensor(), g};
                           });
  };
  sum(blocker(h, w)).backward();
  EXPECT_FALSE(x.grad().defined());  // h's node got nothing and was skipped
  EXPECT_EQ(values(w.grad()), (std::vector<double>{1, 1}));
  // Same, with a second consumer that does send a gradient to h: that one arrives alone.
  x.zero_grad();
  sum(add(blocker(h, w), scale(h, 3))).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{6, 6}));
}

TEST(Engine, LeafGradientTakesTheLeafsShapeDtypeAndDevice) {
  Tensor v = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Var x(v, true);
  // An op whose backward produces an f64 gradient for an f32 leaf.
  Var y = ag::make_result("test_f64_grad", Tensor::zeros({1}, DType::F32), {x},
                          [](const Tensor&, const std::vector<bool>&) {
                            return std::vector<Tensor>{Tensor::full({2, 3}, 0.25, DType::F64)};
                          });
  y.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().shape(), Dims({2, 3}));
  EXPECT_EQ(x.grad().dtype(), DType::F32);
  EXPECT_TRUE(x.grad().device().is_cpu());
  EXPECT_TRUE(AllEqual(x.grad(), Tensor::full({2, 3}, 0.25, DType::F32)));
  // A second contribution is added in place, still f32.
  y.backward();
  EXPECT_TRUE(AllEqual(x.grad(), Tensor::full({2, 3}, 0.5, DType::F32)));
  // A gradient of the wrong shape for a leaf is an error.
  Var bad = ag::make_result("test_bad_shape", Tensor::zeros({1}, DType::F32), {x},
                            [](const Tensor&, const std::vector<bool>&) {
                              return std::vector<Tensor>{Tensor::zeros({3, 2}, DType::F32)};
                            });
  EXPECT_THROW(bad.backward(), Error);
}

TEST(Engine, BackwardArgumentErrors) {
  Var x(vec({1, 2, 3}), true);
  Var y = scale(x, 2);
  // Non-scalar output without a gradient.
  try {
    y.backward();
    ADD_FAILURE() << "expected an sl::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3]"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(x.grad().defined());
  EXPECT_THROW(y.backward(vec({1, 1})), Error);             // gradient of the wrong shape
  EXPECT_THROW(Var(vec({1})).backward(), Error);            // does not require grad
  EXPECT_THROW(Var(vec({1}).to(DType::I64), true), Error);  // integers cannot require grad
  // A backward that returns the wrong number of gradients names its op.
  Var z = ag::make_result("test_wrong_count", vec({0}), {x},
                          [](const Tensor&, const std::vector<bool>&) {
                            return std::vector<Tensor>{};
                          });
  try {
    z.backward();
    ADD_FAILURE() << "expected an sl::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test_wrong_count"), std::string::npos) << e.what();
  }
  y.backward(vec({1, 1, 1}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{2, 2, 2}));
}

TEST(Engine, GraphDoesNotKeepLeavesAlive) {
  Var y;
  {
    Var x(vec({1, 2}), true);
    y = scale(x, 2);
  }
  EXPECT_NO_THROW(y.backward(vec({1, 1})));  // the leaf is gone; its gradient is dropped
}

}  // namespace
}  // namespace sl
