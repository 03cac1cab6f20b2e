// Flash attention: the CPU reference against the composite attention of layers/attention.h in f64
// (causal, sliding window, packed documents, GQA); chunked queries (q_offset) equal the rows of a
// full run; the CPU backward by finite differences; the GPU kernels (bf16, f16; D 64 and 128; GQA
// 1, 4 and 16; odd lengths) against the composite in the same precision under the literal
// flash-attention rule, against the CPU reference for chunks and non-causal runs, and the
// backward run twice for identical bits; errors.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "layers/attention.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {

using kernels::AttentionOptions;
using test::AllClose;
using test::AllCloseToNaive;
using test::Tol;

const Device kGpu = Device::cuda(0);

struct Case {
  int64_t b, t, hq, hkv, d, window;
  bool docs;
};

std::string name(const Case& c) {
  std::ostringstream n;
  n << "B" << c.b << "_T" << c.t << "_Hq" << c.hq << "_Hkv" << c.hkv << "_D" << c.d;
  if (c.window) n << "_W" << c.window;
  if (c.docs) n << "_docs";
  return n.str();
}

struct Inputs {
  Tensor q, k, v, dout, seq;
};
Inputs make_inputs(const Case& c, uint64_t seed, DType dt, Device dev = Device::cpu()) {
  Inputs in;
  in.q = test::randn({c.b, c.t, c.hq, c.d}, seed, dt, dev);
  in.k = test::randn({c.b, c.t, c.hkv, c.d}, seed + 1, dt, dev);
  in.v = test::randn({c.b, c.t, c.hkv, c.d}, seed + 2, dt, dev);
  in.dout = test::randn({c.b, c.t, c.hq, c.d}, seed + 3, dt, dev);
  if (c.docs) in.seq = test::random_seq_idx(c.b, c.t, std::max<int64_t>(2, c.t / 3), seed + 4);
  return in;
}

AttentionOptions options(const Case& c, const Tensor& seq, Device dev) {
  AttentionOptions o;
  o.sliding_window = c.window;
  if (seq.defined()) o.doc_start = kernels::doc_start_from_seq_idx(seq.to(dev));
  return o;
}

// The composite (matmul + mask + softmax) forward and gradients, on the inputs' device/dtype.
struct Result {
  Tensor out, dq, dk, dv;
};
Result composite(const Inputs& in, const Case& c, DType dt, Device dev) {
  ag::Var q(in.q.to(dev, dt), true), k(in.k.to(dev, dt), true), v(in.v.to(dev, dt), true);
  layers::AttentionMaskInfo m;
  m.sliding_window = c.window;
  if (in.seq.defined()) m.seq_idx = in.seq.to(dev);
  // attention_core picks the fused kernel on a GPU; the composite is forced by calling it on
  // f32 / f64 or on the CPU only, which is where this helper is used.
  ag::Var o = layers::attention_core(q, k, v, m);
  ag::sum_all(ag::mul(o, ag::Var(in.dout.to(dev, dt)))).backward();
  return {o.value(), q.grad(), k.grad(), v.grad()};
}

Result flash(const Inputs& in, const AttentionOptions& o) {
  kernels::AttentionOutput f = kernels::attention_forward(in.q, in.k, in.v, o);
  kernels::AttentionGrads g =
      kernels::attention_backward(in.q, in.k, in.v, f.out, f.lse, in.dout, o);
  return {f.out, g.dq, g.dk, g.dv};
}

TEST(AttentionCpu, ForwardAndBackwardMatchTheComposite) {
  for (const Case& c : {Case{2, 23, 4, 2, 8, 0, false}, Case{1, 31, 4, 1, 16, 7, false},
                        Case{2, 29, 2, 2, 8, 0, true}, Case{1, 40, 6, 3, 8, 9, true}}) {
    SCOPED_TRACE(name(c));
    Inputs in = make_inputs(c, 11, DType::F64);
    Result ref = composite(in, c, DType::F64, Device::cpu());
    Result got = flash(in, options(c, in.seq, Device::cpu()));
    const Tol tol{DType::F64, c.t};
    EXPECT_TRUE(AllClose(got.out, ref.out, tol));
    EXPECT_TRUE(AllClose(got.dq, ref.dq, tol));
    EXPECT_TRUE(AllClose(got.dk, ref.dk, tol));
    EXPECT_TRUE(AllClose(got.dv, ref.dv, tol));
  }
}

TEST(AttentionCpu, ChunkOfQueriesEqualsRowsOfTheFullRun) {
  const Case c{2, 37, 4, 2, 8, 6, true};
  Inputs in = make_inputs(c, 5, DType::F32);
  AttentionOptions o = options(c, in.seq, Device::cpu());
  Tensor full = kernels::attention_forward(in.q, in.k, in.v, o).out;
  const int64_t start = 20;
  AttentionOptions oc = o;
  oc.q_offset = start;
  Tensor qc = in.q.slice(1, start, c.t).contiguous();
  Tensor chunk = kernels::attention_forward(qc, in.k, in.v, oc).out;
  EXPECT_TRUE(test::AllEqual(chunk, full.slice(1, start, c.t)));
}

TEST(AttentionCpu, GradcheckThroughTheAutogradOp) {
  for (int64_t window : {0, 4}) {
    SCOPED_TRACE("window " + std::to_string(window));
    const Case c{1, 9, 4, 2, 4, window, true};
    Inputs in = make_inputs(c, 3, DType::F64);
    AttentionOptions o = options(c, in.seq, Device::cpu());
    auto fn = [&](const std::vector<ag::Var>& x) {
      return ag::flash_attention(x[0], x[1], x[2], o);
    };
    ag::GradcheckResult r =
        ag::gradcheck(fn, {ag::Var(in.q, true), ag::Var(in.k, true), ag::Var(in.v, true)});
    EXPECT_TRUE(r.ok) << r.message;
  }
}

TEST(AttentionCpu, DocStartFromSeqIdx) {
  Tensor seq = Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 4, 7, 7}, {1, 8});
  EXPECT_EQ(kernels::doc_start_from_seq_idx(seq).to_vector<int32_t>(),
            (std::vector<int32_t>{0, 0, 2, 2, 2, 5, 6, 6}));
}

TEST(AttentionErrors, BadArgumentsNameTheOp) {
  Tensor q = test::randn({1, 8, 4, 8}, 1), k = test::randn({1, 8, 3, 8}, 2);
  try {
    kernels::attention_forward(q, k, k);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention"), std::string::npos) << e.what();
  }
  Tensor k2 = test::randn({1, 4, 2, 8}, 3);
  AttentionOptions o;
  o.q_offset = 0;
  EXPECT_THROW(kernels::attention_forward(q, k2, k2, o), Error);  // causal keys missing
  Tensor qf = test::randn({1, 8, 4, 8}, 1, DType::F32);
  if (cuda_device_count() > 0) {
    Tensor g = qf.to(kGpu);
    EXPECT_THROW(kernels::attention_forward(g, g, g), Error);  // f32 has no GPU kernel
  }
}

class AttentionGpu : public ::testing::TestWithParam<std::tuple<Case, DType>> {};

TEST_P(AttentionGpu, MatchesTheCompositeInTheSamePrecision) {
  SL_REQUIRE_GPU();
  const auto [c, dt] = GetParam();
  Inputs in = make_inputs(c, 21, dt);
  // ref: the composite in f64 on the CPU; naive: the composite in dt on the CPU (bf16/f16
  // storage between the matmuls, as a plain PyTorch implementation would have).
  Result ref = composite(in, c, DType::F64, Device::cpu());
  Result naive = composite(in, c, dt, Device::cpu());
  Inputs g{in.q.to(kGpu), in.k.to(kGpu), in.v.to(kGpu), in.dout.to(kGpu), in.seq};
  Result got = flash(g, options(c, in.seq, kGpu));
  EXPECT_TRUE(AllCloseToNaive(got.out, naive.out, ref.out, dt));
  EXPECT_TRUE(AllCloseToNaive(got.dq, naive.dq, ref.dq, dt));
  EXPECT_TRUE(AllCloseToNaive(got.dk, naive.dk, ref.dk, dt));
  EXPECT_TRUE(AllCloseToNaive(got.dv, naive.dv, ref.dv, dt));
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionGpu,
                         ::testing::Combine(::testing::Values(Case{2, 333, 4, 4, 128, 0, false},
                                                              Case{1, 200, 16, 4, 64, 0, false},
                                                              Case{1, 257, 16, 1, 128, 0, false},
                                                              Case{2, 301, 8, 2, 64, 50, false},
                                                              Case{2, 290, 4, 2, 128, 0, true},
                                                              Case{1, 513, 4, 1, 128, 100, true}),
                                            ::testing::Values(DType::BF16, DType::F16)),
                         [](const auto& info) {
                           return name(std::get<0>(info.param)) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

TEST(AttentionGpuChunk, ChunkedAndNonCausalMatchTheCpuReference) {
  SL_REQUIRE_GPU();
  for (bool causal : {true, false}) {
    SCOPED_TRACE(causal ? "causal chunk" : "non-causal chunk");
    const Case c{2, 300, 8, 2, 128, 0, false};
    Inputs in = make_inputs(c, 31, DType::BF16);
    AttentionOptions o;
    o.causal = causal;
    o.q_offset = 170;
    Inputs chunk = in;
    chunk.q = in.q.slice(1, 170, 300).contiguous();
    chunk.dout = in.dout.slice(1, 170, 300).contiguous();
    Result ref = flash(chunk, o);  // CPU reference, f32 compute on the same bf16 inputs
    Inputs g{chunk.q.to(kGpu), chunk.k.to(kGpu), chunk.v.to(kGpu), chunk.dout.to(kGpu), Tensor()};
    Result got = flash(g, o);
    const Tol tol{DType::BF16, 64};
    EXPECT_TRUE(AllClose(got.out, ref.out, tol));
    EXPECT_TRUE(AllClose(got.dq, ref.dq, tol));
    EXPECT_TRUE(AllClose(got.dk, ref.dk, tol));
    EXPECT_TRUE(AllClose(got.dv, ref.dv, tol));
  }
}

TEST(AttentionGpuChunk, BackwardIsBitwiseReproducible) {
  SL_REQUIRE_GPU();
  const Case c{1, 700, 16, 2, 128, 0, true};
  Inputs in = make_inputs(c, 41, DType::BF16, kGpu);
  in.seq = test::random_seq_idx(1, 700, 200, 9);
  AttentionOptions o = options(c, in.seq, kGpu);
  Result a = flash(in, o), b = flash(in, o);
  EXPECT_TRUE(test::AllEqual(a.dq, b.dq));
  EXPECT_TRUE(test::AllEqual(a.dk, b.dk));
  EXPECT_TRUE(test::AllEqual(a.dv, b.dv));
}

}  // namespace
}  // namespace sl
