// SSD scan: the sequential CPU recurrence against the explicit quadratic (attention-like) form in
// f64; the chunked CPU algorithm against the sequential one (forward and backward, odd T, G < H,
// initial state, document resets); packed documents against separate runs; GPU forward and
// backward against the CPU chunked reference (f32 and bf16), the backward run twice for
// bit-identical results; errors for bad arguments.
#include "kernels/ssd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using kernels::SsdOptions;
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

struct Shape {
  int64_t b, t, h, p, g, n;
};

// "B2_T301_H8_G2_P64_N32_chunk64" (+ what the case adds): a test name for gtest.
std::string case_name(const Shape& s, int64_t chunk, bool init, bool seq) {
  std::ostringstream n;
  n << "B" << s.b << "_T" << s.t << "_H" << s.h << "_G" << s.g << "_P" << s.p << "_N" << s.n
    << "_chunk" << chunk << (init ? "_init" : "") << (seq ? "_resets" : "");
  return n.str();
}

struct Inputs {
  Tensor x, dt, A, Bm, Cm, D, init, seq;
  Inputs to(Device d) const {
    Inputs o{x.to(d), dt.to(d), A.to(d), Bm.to(d), Cm.to(d), D.to(d), Tensor(), Tensor()};
    if (init.defined()) o.init = init.to(d);
    if (seq.defined()) o.seq = seq.to(d);
    return o;
  }
};

// dt in (0.05, 0.6) as after softplus, A in (-1.5, -0.3); f32 unless told.
Inputs make_inputs(const Shape& s, uint64_t seed, bool with_init, bool with_seq,
                   DType dt = DType::F32) {
  Inputs in;
  in.x = test::randn({s.b, s.t, s.h, s.p}, seed, dt);
  in.dt = test::rand({s.b, s.t, s.h}, seed + 1, 0.05, 0.6, dt);
  in.A = test::rand({s.h}, seed + 2, -1.5, -0.3, dt);
  in.Bm = test::randn({s.b, s.t, s.g, s.n}, seed + 3, dt, Device::cpu(), 0.5);
  in.Cm = test::randn({s.b, s.t, s.g, s.n}, seed + 4, dt, Device::cpu(), 0.5);
  in.D = test::randn({s.h}, seed + 5, dt);
  if (with_init)
    in.init = test::randn({s.b, s.h, s.p, s.n}, seed + 6, kernels::ssd_state_dtype(dt));
  if (with_seq) in.seq = test::random_seq_idx(s.b, s.t, std::max<int64_t>(2, s.t / 3), seed + 7);
  return in;
}

kernels::SsdResult forward(const Inputs& in, const SsdOptions& o) {
  return kernels::ssd_forward(in.x, in.dt, in.A, in.Bm, in.Cm, in.D, in.init, in.seq, o);
}
kernels::SsdGrads backward(const Inputs& in, const Tensor& dy, const Tensor& dfin,
                           const SsdOptions& o) {
  return kernels::ssd_backward(dy, dfin, in.x, in.dt, in.A, in.Bm, in.Cm, in.D, in.init, in.seq, o);
}

Inputs as_f64(const Inputs& in) {
  Inputs o{in.x.to(DType::F64),
           in.dt.to(DType::F64),
           in.A.to(DType::F64),
           in.Bm.to(DType::F64),
           in.Cm.to(DType::F64),
           in.D.to(DType::F64),
           Tensor(),
           in.seq};
  if (in.init.defined()) o.init = in.init.to(DType::F64);
  return o;
}

// y and the final state from the explicit quadratic form: every pair (s <= t) of one document
// weighted by (C_t . B_s) * exp(A * sum_{r in (s, t]} dt_r) * dt_s, in f64.
kernels::SsdResult dense_form(const Inputs& in_any, const Shape& s) {
  const Inputs in = as_f64(in_any);
  auto X = in.x.to_vector<double>(), DT = in.dt.to_vector<double>(), A = in.A.to_vector<double>();
  auto Bv = in.Bm.to_vector<double>(), Cv = in.Cm.to_vector<double>(), D = in.D.to_vector<double>();
  std::vector<double> I(size_t(s.b * s.h * s.p * s.n), 0.0);
  if (in.init.defined()) I = in.init.to_vector<double>();
  std::vector<int32_t> seq(size_t(s.b * s.t), 0);
  if (in.seq.defined()) seq = in.seq.to_vector<int32_t>();
  std::vector<double> Y(X.size()), F(I.size());
  const int64_t hpg = s.h / s.g;
  auto xi = [&](int64_t b, int64_t t, int64_t h, int64_t p) {
    return X[size_t(((b * s.t + t) * s.h + h) * s.p + p)];
  };
  auto bc = [&](const std::vector<double>& M, int64_t b, int64_t t, int64_t h, int64_t n) {
    return M[size_t(((b * s.t + t) * s.g + h / hpg) * s.n + n)];
  };
  auto dtv = [&](int64_t b, int64_t t, int64_t h) { return DT[size_t((b * s.t + t) * s.h + h)]; };
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t h = 0; h < s.h; ++h) {
      // Decay over (s0, t] and whether a document starts in (s0, t].
      auto decay = [&](int64_t s0, int64_t t) {
        double sum = 0;
        for (int64_t r = s0 + 1; r <= t; ++r) {
          if (r >= 1 && seq[size_t(b * s.t + r)] != seq[size_t(b * s.t + r - 1)]) return 0.0;
          sum += dtv(b, r, h);
        }
        return std::exp(A[size_t(h)] * sum);
      };
      const int64_t io = (b * s.h + h) * s.p * s.n;
      for (int64_t t = 0; t <= s.t; ++t) {
        const bool fin = t == s.t;
        const int64_t tt = fin ? s.t - 1 : t;
        for (int64_t p = 0; p < s.p; ++p) {
          std::vector<double> st(size_t(s.n), 0.0);  // the state S_tt, row p
          for (int64_t n = 0; n < s.n; ++n)
            st[size_t(n)] = decay(-1, tt) * I[size_t(io + p * s.n + n)];
          for (int64_t s0 = 0; s0 <= tt; ++s0) {
            const double w = decay(s0, tt) * dtv(b, s0, h) * xi(b, s0, h, p);
            for (int64_t n = 0; n < s.n; ++n) st[size_t(n)] += w * bc(Bv, b, s0, h, n);
          }
          if (fin) {
            for (int64_t n = 0; n < s.n; ++n) F[size_t(io + p * s.n + n)] = st[size_t(n)];
            continue;
          }
          double y = D[size_t(h)] * xi(b, t, h, p);
          for (int64_t n = 0; n < s.n; ++n) y += st[size_t(n)] * bc(Cv, b, t, h, n);
          Y[size_t(((b * s.t + t) * s.h + h) * s.p + p)] = y;
        }
      }
    }
  return {Tensor::from_vector(Y, in.x.shape()), Tensor::from_vector(F, {s.b, s.h, s.p, s.n})};
}

TEST(SsdCpu, SequentialMatchesQuadraticForm) {
  const Shape s{2, 23, 4, 3, 2, 5};
  for (int variant = 0; variant < 4; ++variant) {
    Inputs in = as_f64(make_inputs(s, 11 + variant, variant & 1, variant & 2));
    kernels::SsdResult ref = dense_form(in, s);
    kernels::SsdResult out = forward(in, SsdOptions{1, true});
    EXPECT_TRUE(AllClose(out.y, ref.y, Tol{DType::F64, s.t * s.n})) << "variant " << variant;
    EXPECT_TRUE(AllClose(out.final_state, ref.final_state, Tol{DType::F64, s.t * s.n}))
        << "variant " << variant;
  }
}

struct ChunkCase {
  Shape s;
  int64_t chunk;
  bool init, seq;
};

class SsdChunkedCpu : public ::testing::TestWithParam<ChunkCase> {};

TEST_P(SsdChunkedCpu, MatchesSequential) {
  const ChunkCase c = GetParam();
  const Shape s = c.s;
  Inputs in = make_inputs(s, 100 + uint64_t(c.chunk), c.init, c.seq);
  // Forward: f32 chunked against the f64 sequential oracle.
  kernels::SsdResult ref = forward(as_f64(in), SsdOptions{c.chunk, true});
  kernels::SsdResult out = forward(in, SsdOptions{c.chunk, false});
  const Tol tol{DType::F32, s.t * s.n};
  EXPECT_TRUE(AllClose(out.y, ref.y, tol));
  EXPECT_TRUE(AllClose(out.final_state, ref.final_state, tol));
  // Backward, with gradients reaching both outputs.
  Tensor dy = test::randn(in.x.shape(), 200, DType::F32);
  Tensor dfin = test::randn({s.b, s.h, s.p, s.n}, 201, DType::F32);
  kernels::SsdGrads gr =
      backward(as_f64(in), dy.to(DType::F64), dfin.to(DType::F64), SsdOptions{c.chunk, true});
  kernels::SsdGrads go = backward(in, dy, dfin, SsdOptions{c.chunk, false});
  // dt and A gradients add exp-weighted sums over the whole sequence and every state element.
  const Tol wide{DType::F32, s.t * s.p * s.n};
  EXPECT_TRUE(AllClose(go.dx, gr.dx, tol)) << "dx";
  EXPECT_TRUE(AllClose(go.ddt, gr.ddt, wide)) << "ddt";
  EXPECT_TRUE(AllClose(go.dA, gr.dA, Tol{DType::F32, s.b * s.t * s.p * s.n})) << "dA";
  EXPECT_TRUE(AllClose(go.dBm, gr.dBm, wide)) << "dBm";
  EXPECT_TRUE(AllClose(go.dCm, gr.dCm, wide)) << "dCm";
  EXPECT_TRUE(AllClose(go.dD, gr.dD, Tol{DType::F32, s.b * s.t * s.p})) << "dD";
  if (c.init) {
    EXPECT_TRUE(AllClose(go.d_init_state, gr.d_init_state, tol)) << "dinit";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SsdChunkedCpu,
    ::testing::Values(ChunkCase{{2, 77, 4, 8, 2, 16}, 16, false, false},
                      ChunkCase{{2, 77, 4, 8, 2, 16}, 16, true, false},
                      ChunkCase{{2, 77, 4, 8, 2, 16}, 16, true, true},
                      ChunkCase{{1, 130, 6, 5, 3, 7}, 64, true, true},
                      ChunkCase{{1, 40, 2, 4, 1, 6}, 64, true, true},  // one short chunk
                      ChunkCase{{3, 33, 4, 4, 4, 4}, 1, true, true}),  // chunk of one
    [](const ::testing::TestParamInfo<ChunkCase>& i) {
      return case_name(i.param.s, i.param.chunk, i.param.init, i.param.seq);
    });

// A packed row gives, on each document, what the document gives alone (the first document
// continuing from the initial state, the others from zero).
TEST(SsdCpu, PackedDocumentsEqualSeparateRuns) {
  const Shape s{1, 50, 4, 4, 2, 8};
  Inputs in = make_inputs(s, 300, true, false);
  std::vector<int32_t> ids(size_t(s.t));
  const int64_t starts[] = {0, 9, 10, 31, 50};
  for (int d = 0; d < 4; ++d)
    for (int64_t t = starts[d]; t < starts[d + 1]; ++t) ids[size_t(t)] = 7 + d;
  in.seq = Tensor::from_vector(ids, {1, s.t});
  kernels::SsdResult packed = forward(in, SsdOptions{16, false});
  for (int d = 0; d < 4; ++d) {
    const int64_t a = starts[d], e = starts[d + 1];
    Inputs part{in.x.slice(1, a, e),
                in.dt.slice(1, a, e),
                in.A,
                in.Bm.slice(1, a, e),
                in.Cm.slice(1, a, e),
                in.D,
                d == 0 ? in.init : Tensor(),
                Tensor()};
    kernels::SsdResult alone = forward(part, SsdOptions{1, true});
    EXPECT_TRUE(AllClose(packed.y.slice(1, a, e), alone.y, Tol{DType::F32, s.t * s.n}))
        << "document " << d;
    if (d == 3) {
      EXPECT_TRUE(AllClose(packed.final_state, alone.final_state, Tol{DType::F32, s.t * s.n}));
    }
  }
}

TEST(SsdCpu, BadArgumentsThrowNamingTheOp) {
  const Shape s{1, 8, 4, 2, 2, 3};
  Inputs in = make_inputs(s, 400, true, true);
  auto expect_error = [](auto&& f) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ssd_scan"), std::string::npos) << e.what();
    }
  };
  expect_error([&] {  // G = 3 does not divide H = 4
    Inputs b = in;
    b.Bm = test::randn({1, 8, 3, 3}, 1);
    b.Cm = b.Bm;
    forward(b, {});
  });
  expect_error([&] {
    Inputs b = in;
    b.dt = test::rand({1, 7, 4}, 1, 0.1, 0.5);
    forward(b, {});
  });
  expect_error([&] {
    Inputs b = in;
    b.init = in.init.to(DType::BF16);
    forward(b, {});
  });
  expect_error([&] {
    Inputs b = in;
    b.seq = in.seq.to(DType::I64);
    forward(b, {});
  });
  expect_error([&] { forward(in, SsdOptions{0, false}); });
  expect_error([&] { backward(in, test::randn({1, 8, 4, 3}, 2), Tensor(), {}); });
}

// ---- GPU against the CPU chunked reference ----

struct GpuCase {
  DType dtype;
  Shape s;
  int64_t chunk;
  bool init, seq;
  bool dfinal = true;  // a gradient reaching the final state
};

std::string gpu_case_name(const ::testing::TestParamInfo<GpuCase>& i) {
  const GpuCase& c = i.param;
  return case_name(c.s, c.chunk, c.init, c.seq) + "_" + dtype_name(c.dtype) +
         (c.dfinal ? "" : "_no_dfinal");
}

class SsdGpu : public ::testing::TestWithParam<GpuCase> {};

// The GPU inputs, and the f32 CPU reference inputs holding the same (rounded) values.
struct GpuSetup {
  Inputs in, ref_in;
  SsdOptions o;
  Tensor dy, dfin;
};
GpuSetup gpu_setup(const GpuCase& c) {
  GpuSetup g;
  g.in = make_inputs(c.s, 500 + uint64_t(c.s.t), c.init, c.seq, c.dtype);
  g.o = SsdOptions{c.chunk, false};
  g.dy = test::randn(g.in.x.shape(), 600, c.dtype);
  if (c.dfinal) g.dfin = test::randn({c.s.b, c.s.h, c.s.p, c.s.n}, 601, DType::F32);
  g.ref_in = g.in;
  for (Tensor* u :
       {&g.ref_in.x, &g.ref_in.dt, &g.ref_in.A, &g.ref_in.Bm, &g.ref_in.Cm, &g.ref_in.D})
    *u = u->to(DType::F32);
  return g;
}

Tensor on_gpu(const Tensor& t) {
  return t.defined() ? t.to(kGpu) : t;
}

TEST_P(SsdGpu, ForwardMatchesCpu) {
  SL_REQUIRE_GPU();
  const GpuCase c = GetParam();
  const Shape s = c.s;
  GpuSetup g = gpu_setup(c);
  kernels::SsdResult ref = forward(g.ref_in, g.o);
  kernels::SsdResult out = forward(g.in.to(kGpu), g.o);
  // bf16: outputs are rounded once; intermediate products may be rounded to bf16 for the tensor
  // cores, whose errors add over a chunk.
  const Tol tol{c.dtype, c.dtype == DType::F32 ? s.t * s.n : c.chunk};
  EXPECT_TRUE(AllClose(out.y, ref.y, tol)) << "y";
  EXPECT_TRUE(AllClose(out.final_state, ref.final_state, Tol{DType::F32, s.t * s.n}))
      << "final state";
}

// The tolerance of one gradient against the f32 CPU reference on the same inputs. f32: both
// sides round every partial sum; n_f32 counts the products summed into one gradient (its sums
// over time, over P and N, over the heads of a group). bf16: every sum is f32 on both sides and
// the output is rounded to bf16 once, so n_reduce is 1 (the f32 part is far below bf16's eps).
Tol grad_tol(DType dtype, int64_t n_f32) {
  return dtype == DType::F32 ? Tol{DType::F32, n_f32} : Tol{dtype, 1};
}

TEST_P(SsdGpu, BackwardMatchesCpu) {
  SL_REQUIRE_GPU();
  const GpuCase c = GetParam();
  const Shape s = c.s;
  GpuSetup g = gpu_setup(c);
  kernels::SsdGrads ref = backward(g.ref_in, g.dy.to(DType::F32), g.dfin, g.o);
  const Inputs in = g.in.to(kGpu);
  const Tensor dy = g.dy.to(kGpu), dfin = on_gpu(g.dfin);
  kernels::SsdGrads out = backward(in, dy, dfin, g.o);
  const int64_t T = s.t, hpg = s.h / s.g;
  // dx sums dy over later positions through the state (T x N products); dBm, dCm sum over
  // positions, P and the group's heads; ddt and dA go through <S, dS> (P x N) at every position.
  EXPECT_TRUE(AllClose(out.dx, ref.dx, grad_tol(c.dtype, T * s.n))) << "dx";
  EXPECT_TRUE(AllClose(out.dBm, ref.dBm, grad_tol(c.dtype, hpg * T * s.p))) << "dBm";
  EXPECT_TRUE(AllClose(out.dCm, ref.dCm, grad_tol(c.dtype, hpg * T * s.p))) << "dCm";
  EXPECT_TRUE(AllClose(out.ddt, ref.ddt, grad_tol(c.dtype, T * s.p * s.n))) << "ddt";
  EXPECT_TRUE(AllClose(out.dA, ref.dA, grad_tol(c.dtype, s.b * T * s.p * s.n))) << "dA";
  EXPECT_TRUE(AllClose(out.dD, ref.dD, grad_tol(c.dtype, s.b * T * s.p))) << "dD";
  ASSERT_EQ(out.d_init_state.defined(), c.init);
  if (c.init) {
    EXPECT_TRUE(AllClose(out.d_init_state, ref.d_init_state, Tol{DType::F32, T})) << "d_init_state";
  }
  // Deterministic: the same inputs give the same bits (no reduction depends on scheduling).
  kernels::SsdGrads again = backward(in, dy, dfin, g.o);
  EXPECT_TRUE(test::AllEqual(again.dx, out.dx)) << "dx";
  EXPECT_TRUE(test::AllEqual(again.ddt, out.ddt)) << "ddt";
  EXPECT_TRUE(test::AllEqual(again.dA, out.dA)) << "dA";
  EXPECT_TRUE(test::AllEqual(again.dBm, out.dBm)) << "dBm";
  EXPECT_TRUE(test::AllEqual(again.dCm, out.dCm)) << "dCm";
  EXPECT_TRUE(test::AllEqual(again.dD, out.dD)) << "dD";
  if (c.init) {
    EXPECT_TRUE(test::AllEqual(again.d_init_state, out.d_init_state)) << "d_init_state";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SsdGpu,
    ::testing::Values(
        GpuCase{DType::F32, {2, 301, 8, 64, 2, 32}, 64, false, false},
        GpuCase{DType::F32, {2, 301, 8, 64, 2, 32}, 64, true, true},
        GpuCase{DType::F32, {1, 517, 4, 24, 1, 40}, 128, true, true},
        GpuCase{DType::F32, {3, 37, 6, 16, 3, 16}, 64, true, false},          // one short chunk
        GpuCase{DType::F32, {1, 700, 2, 72, 1, 80}, 256, true, true},         // P, N over a tile
        GpuCase{DType::F32, {2, 200, 4, 32, 4, 24}, 32, false, true, false},  // G = H
        GpuCase{DType::BF16, {2, 301, 8, 64, 2, 32}, 64, true, true},
        GpuCase{DType::BF16, {1, 1000, 4, 64, 2, 128}, 128, true, true}),
    gpu_case_name);

TEST(SsdGpuErrors, ChunkAbove256Throws) {
  SL_REQUIRE_GPU();
  const Shape s{1, 300, 2, 4, 1, 8};
  const Inputs in = make_inputs(s, 700, false, false).to(kGpu);
  try {
    forward(in, SsdOptions{257, false});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ssd_scan"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sl
