// Activation recomputation (autograd/checkpoint.h): gradcheck through one and several outputs,
// captured parameters accumulating across backward calls, the same dropout mask in the
// recomputation, grad mode off, no input needing a gradient, and a whole HybridLM (every block
// kind) whose loss and gradients are bit-identical with and without recomputation on the CPU.
#include "autograd/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "layers/hybrid_lm.h"
#include "tests/common/tolerance.h"
#include "tests/layers/tiny_model.h"

namespace sl {
namespace {
using ag::Var;

Var leaf(const Dims& shape, uint64_t seed, DType dt = DType::F64, bool grad = true) {
  Generator gen(seed);
  return Var(Tensor::randn(shape, gen, DType::F32).to(dt), grad);
}

::testing::AssertionResult BitEqual(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined())
    return ::testing::AssertionFailure() << "undefined: " << a.defined() << " " << b.defined();
  if (a.shape() != b.shape() || a.dtype() != b.dtype())
    return ::testing::AssertionFailure() << a.str() << " vs " << b.str();
  Tensor x = a.contiguous(), y = b.contiguous();
  if (std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) != 0)
    return ::testing::AssertionFailure() << "bits differ: " << test::AllClose(a, b, {}).message();
  return ::testing::AssertionSuccess();
}

// silu(x) * w, w broadcast over the rows of x.
Var gated(const std::vector<Var>& in) {
  return ag::mul(ag::silu(in[0]), in[1]);
}

TEST(Checkpoint, GradcheckOneOutput) {
  Var x = leaf({3, 5}, 1), w = leaf({5}, 2);
  ag::GradcheckResult r =
      ag::gradcheck([](const std::vector<Var>& in) { return ag::checkpoint(gated, in); }, {x, w});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Checkpoint, GradcheckSeveralOutputs) {
  Var x = leaf({3, 5}, 3), w = leaf({5}, 4);
  auto fn = [](const std::vector<Var>& in) {
    std::vector<Var> o = ag::checkpoint_outputs(
        [](const std::vector<Var>& v) {
          return std::vector<Var>{gated(v), ag::sum_all(ag::mul(v[0], v[0]))};
        },
        in);
    EXPECT_EQ(o[1].dim(), 0);
    return ag::add(o[0], o[1]);
  };
  ag::GradcheckResult r = ag::gradcheck(fn, {x, w});
  EXPECT_TRUE(r.ok) << r.message;
}

// Only one output of two reaches the loss: the other contributes nothing.
TEST(Checkpoint, AnOutputWithoutGradientContributesNothing) {
  Var x = leaf({4, 3}, 5), w = leaf({3}, 6);
  std::vector<Var> o = ag::checkpoint_outputs(
      [](const std::vector<Var>& v) {
        return std::vector<Var>{gated(v), ag::sum_all(ag::exp(v[0]))};
      },
      {x, w});
  ag::sum_all(o[0]).backward();
  Var x2(x.value(), true), w2(w.value(), true);
  ag::sum_all(gated({x2, w2})).backward();
  EXPECT_TRUE(test::AllClose(x.grad(), x2.grad(), {DType::F64}));
  EXPECT_TRUE(test::AllClose(w.grad(), w2.grad(), {DType::F64}));
}

// A parameter captured by fn (not an input) gets its gradient from the nested pass, accumulated
// across backward() calls by the usual rule; the same bits as without recomputation.
TEST(Checkpoint, CapturedParametersAccumulateAsUsual) {
  Var w = leaf({6, 5}, 7, DType::F32), w_ref(w.value().clone(), true);
  Var x = leaf({4, 6}, 8, DType::F32), x_ref(x.value(), true);
  int calls = 0;
  auto fn = [&w, &calls](const std::vector<Var>& in) {
    ++calls;
    return ag::silu(ag::matmul(in[0], w));
  };
  for (int pass = 0; pass < 2; ++pass) {
    ag::sum_all(ag::checkpoint(fn, {x})).backward();
    ag::sum_all(ag::silu(ag::matmul(x_ref, w_ref))).backward();
  }
  EXPECT_EQ(calls, 4) << "one forward and one recomputation per pass";
  EXPECT_TRUE(BitEqual(w.grad(), w_ref.grad()));
  EXPECT_TRUE(BitEqual(x.grad(), x_ref.grad()));
}

// No input needs a gradient, yet the captured parameter gets one.
TEST(Checkpoint, NoInputNeedsAGradient) {
  Var w = leaf({5, 3}, 9, DType::F32), w_ref(w.value(), true);
  Var x = leaf({2, 5}, 10, DType::F32, /*grad=*/false);
  Var y = ag::checkpoint([&w](const std::vector<Var>& in) { return ag::matmul(in[0], w); }, {x});
  ASSERT_TRUE(y.requires_grad());
  ag::sum_all(y).backward();
  ag::sum_all(ag::matmul(x, w_ref)).backward();
  EXPECT_TRUE(BitEqual(w.grad(), w_ref.grad()));
  EXPECT_FALSE(x.grad().defined());
}

TEST(Checkpoint, GradModeOffJustCallsFn) {
  Var x = leaf({3}, 11);
  int calls = 0;
  ag::NoGradGuard no_grad;
  Var y = ag::checkpoint(
      [&calls](const std::vector<Var>& in) {
        ++calls;
        return ag::exp(in[0]);
      },
      {x});
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(y.requires_grad());
}

// Dropout draws from a Generator: with it passed as rng, the recomputation sees the forward's
// mask and the Generator ends where the forward left it; without it the mask (and so the
// gradient) differs, which is what the test would catch.
TEST(Checkpoint, DropoutSeesTheSameRandomNumbers) {
  Var x = leaf({257}, 12, DType::F32);
  auto run = [&x](bool ckpt, bool pass_rng) {
    Generator gen(99, 5);
    Var xi(x.value(), true);
    auto fn = [&gen](const std::vector<Var>& in) {
      return ag::mul(ag::dropout(in[0], 0.5, gen), in[0]);
    };
    Var y = ckpt ? ag::checkpoint(fn, {xi}, pass_rng ? &gen : nullptr) : fn({xi});
    const uint64_t after_forward = gen.offset;
    ag::sum_all(y).backward();
    if (pass_rng) {
      EXPECT_EQ(gen.offset, after_forward);
    }
    return std::make_pair(y.value(), xi.grad());
  };
  auto [y_ref, g_ref] = run(false, false);
  auto [y, g] = run(true, true);
  EXPECT_TRUE(BitEqual(y, y_ref));
  EXPECT_TRUE(BitEqual(g, g_ref));
  auto [y_bad, g_bad] = run(true, false);
  EXPECT_TRUE(BitEqual(y_bad, y_ref));
  EXPECT_FALSE(BitEqual(g_bad, g_ref));
}

// ---- a whole model ----

layers::ModelConfig hybrid(const std::string& pattern) {
  return test::tiny_hybrid(pattern, 24);
}

struct Pass {
  Tensor ce, aux;
  std::vector<std::pair<std::string, Tensor>> grads;
};

// One forward and backward of a fresh model from `seed`, with `kinds` recomputed.
Pass forward_backward(const layers::ModelConfig& c, const std::string& kinds, DType dt,
                      const std::vector<std::string>& frozen = {}) {
  Generator gen(21);
  layers::HybridLM lm(c, gen);
  lm.to(Device::cpu(), dt);
  lm.set_recompute(kinds);
  for (auto& [name, p] : lm.named_parameters())
    for (const std::string& f : frozen)
      if (name == f) p.set_requires_grad(false);
  const int64_t B = 2, T = 19;
  Tensor ids = Tensor::empty({B, T}, DType::I32), targets = Tensor::empty({B, T}, DType::I32);
  std::vector<int32_t> seq(size_t(B * T), 0);
  for (int64_t i = 0; i < B * T; ++i) {
    ids.data<int32_t>()[i] = int32_t((i * 7 + 3) % c.vocab_size);
    targets.data<int32_t>()[i] = int32_t((i * 5 + 1) % c.vocab_size);
    seq[size_t(i)] = int32_t(i % T >= 11);  // two documents per row
  }
  layers::LmLoss l = lm.loss(ids, targets, {Tensor::from_vector(seq, {B, T})});
  l.total.backward();
  Pass p{l.ce.value(), l.aux.defined() ? l.aux.value() : Tensor(), {}};
  for (auto& [name, v] : lm.named_parameters()) p.grads.emplace_back(name, v.grad());
  return p;
}

void expect_same(const Pass& a, const Pass& b) {
  EXPECT_TRUE(BitEqual(a.ce, b.ce));
  if (a.aux.defined()) {
    EXPECT_TRUE(BitEqual(a.aux, b.aux));
  }
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    if (!a.grads[i].second.defined()) {
      EXPECT_FALSE(b.grads[i].second.defined()) << a.grads[i].first;
      continue;
    }
    EXPECT_TRUE(BitEqual(a.grads[i].second, b.grads[i].second)) << a.grads[i].first;
  }
}

TEST(CheckpointHybridLM, GradientsAreBitIdenticalF32) {
  layers::ModelConfig c = hybrid("M*S-E");
  Pass plain = forward_backward(c, "", DType::F32);
  int defined = 0;
  for (auto& [name, g] : plain.grads) defined += g.defined();
  EXPECT_GT(defined, 20);
  for (const char* kinds : {"M*S-E", "M*S", "E", "-"}) {
    SCOPED_TRACE(kinds);
    expect_same(plain, forward_backward(c, kinds, DType::F32));
  }
}

// The MoE's two outputs (f32 residual stream, bf16 aux loss) take the packed path with mixed
// dtypes.
TEST(CheckpointHybridLM, GradientsAreBitIdenticalBF16) {
  layers::ModelConfig c = hybrid("ME-");
  expect_same(forward_backward(c, "", DType::BF16), forward_backward(c, "ME-", DType::BF16));
}

// Frozen embeddings: the first block's input needs no gradient, its parameters still get theirs.
TEST(CheckpointHybridLM, FrozenEmbeddings) {
  layers::ModelConfig c = hybrid("M*-");
  const std::vector<std::string> frozen = {"backbone.embeddings.weight"};
  Pass plain = forward_backward(c, "", DType::F32, frozen);
  EXPECT_FALSE(plain.grads[0].second.defined());
  expect_same(plain, forward_backward(c, "M*-", DType::F32, frozen));
}

TEST(CheckpointHybridLM, SetRecomputeRejectsUnknownLetters) {
  Generator gen(1);
  layers::HybridLM lm(hybrid("M-"), gen);
  EXPECT_THROW(lm.set_recompute("MX"), Error);
}

}  // namespace
}  // namespace sl
