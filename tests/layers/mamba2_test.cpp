// Mamba2Mixer: HF parameter names and shapes, HF initialisation, the forward against a literal
// sequential recurrence written from HF's formulas (f64), document resets (a packed row equals
// its documents run alone), gradcheck w.r.t. the input and every parameter, and GPU against CPU.
#include "layers/mamba2.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"
#include "tests/layers/layer_check.h"

namespace sl::layers {
namespace {

const DType kF64 = DType::F64;

ModelConfig tiny_config() {
  ModelConfig c;
  c.d_model = 6;
  c.norm_eps = 1e-5;
  c.mamba.n_heads = 4;
  c.mamba.head_dim = 2;
  c.mamba.state_size = 3;
  c.mamba.n_groups = 2;
  c.mamba.conv_kernel = 3;
  c.mamba.chunk_size = 4;
  c.mamba.use_bias = true;
  c.mamba.use_conv_bias = true;
  return c;
}

// Every parameter N(0, std) (fresh values, so the reference sees nothing the init made special).
using test::randomize;

std::vector<double> param(const Module& m, const std::string& name) {
  ag::Var v = m.find_parameter(name);
  EXPECT_TRUE(v.defined()) << name;
  return v.value().to(kF64).contiguous().to_vector<double>();
}

double softplus(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}
double silu(double x) {
  return x / (1 + std::exp(-x));
}

// HF NemotronHMamba2Mixer read literally, one token at a time, in f64. x [B, T, d].
std::vector<double> reference(const Module& m, const ModelConfig& c, const std::vector<double>& x,
                              int64_t B, int64_t T, const std::vector<int32_t>& seq) {
  const Mamba2Config& mc = c.mamba;
  const int64_t d = c.d_model, H = mc.n_heads, P = mc.head_dim, N = mc.state_size, G = mc.n_groups,
                K = mc.conv_kernel, I = H * P, Cc = I + 2 * G * N, proj = I + Cc + H;
  const std::vector<double> win = param(m, "in_proj.weight"), bin = param(m, "in_proj.bias"),
                            cw = param(m, "conv1d.weight"), cb = param(m, "conv1d.bias"),
                            dtb = param(m, "dt_bias"), alog = param(m, "A_log"), Dp = param(m, "D"),
                            nw = param(m, "norm.weight"), wout = param(m, "out_proj.weight"),
                            bout = param(m, "out_proj.bias");
  std::vector<double> out(size_t(B * T * d));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> zx(size_t(T * proj));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < proj; ++o) {
        double s = bin[size_t(o)];
        for (int64_t i = 0; i < d; ++i)
          s += x[size_t((b * T + t) * d + i)] * win[size_t(o * d + i)];
        zx[size_t(t * proj + o)] = s;
      }
    std::vector<double> S(size_t(H * P * N), 0.0);
    int64_t doc_start = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (!seq.empty() && t > 0 && seq[size_t(b * T + t)] != seq[size_t(b * T + t - 1)]) {
        doc_start = t;
        std::fill(S.begin(), S.end(), 0.0);
      }
      std::vector<double> xbc(static_cast<size_t>(Cc));
      for (int64_t ch = 0; ch < Cc; ++ch) {
        double s = cb[size_t(ch)];
        for (int64_t k = 0; k < K; ++k) {
          int64_t u = t - (K - 1) + k;
          if (u >= doc_start) s += cw[size_t(ch * K + k)] * zx[size_t(u * proj + I + ch)];
        }
        xbc[size_t(ch)] = silu(s);
      }
      std::vector<double> y(static_cast<size_t>(I));
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / G);
        double dt = softplus(zx[size_t(t * proj + I + Cc + h)] + dtb[size_t(h)]);
        if (mc.dt_limit_min > 0) dt = std::max(dt, mc.dt_limit_min);
        dt = std::min(dt, mc.dt_limit_max);
        const double a = std::exp(dt * -std::exp(alog[size_t(h)]));
        for (int64_t p = 0; p < P; ++p) {
          const double xv = xbc[size_t(h * P + p)];
          double acc = Dp[size_t(h)] * xv;
          for (int64_t n = 0; n < N; ++n) {
            double& s = S[size_t((h * P + p) * N + n)];
            s = a * s + dt * xv * xbc[size_t(I + g * N + n)];
            acc += s * xbc[size_t(I + G * N + g * N + n)];
          }
          y[size_t(h * P + p)] = acc;
        }
      }
      const int64_t gs = I / G;
      for (int64_t c0 = 0; c0 < I; c0 += gs) {
        double ss = 0;
        for (int64_t ci = c0; ci < c0 + gs; ++ci) {
          y[size_t(ci)] *= silu(zx[size_t(t * proj + ci)]);
          ss += y[size_t(ci)] * y[size_t(ci)];
        }
        const double rstd = 1 / std::sqrt(ss / double(gs) + c.norm_eps);
        for (int64_t ci = c0; ci < c0 + gs; ++ci) y[size_t(ci)] *= rstd * nw[size_t(ci)];
      }
      for (int64_t j = 0; j < d; ++j) {
        double s = bout[size_t(j)];
        for (int64_t ci = 0; ci < I; ++ci) s += wout[size_t(j * I + ci)] * y[size_t(ci)];
        out[size_t((b * T + t) * d + j)] = s;
      }
    }
  }
  return out;
}

TEST(Mamba2Mixer, ParameterNamesAndShapesAreHfs) {
  ModelConfig c = tiny_config();
  Generator gen(1);
  Mamba2Mixer m(c, gen);
  const int64_t I = 8, Cc = I + 2 * 2 * 3, H = 4;
  const std::vector<std::pair<std::string, Dims>> want = {{"dt_bias", Dims{H}},
                                                          {"A_log", Dims{H}},
                                                          {"D", Dims{H}},
                                                          {"conv1d.weight", Dims{Cc, 1, 3}},
                                                          {"conv1d.bias", Dims{Cc}},
                                                          {"in_proj.weight", Dims{I + Cc + H, 6}},
                                                          {"in_proj.bias", Dims{I + Cc + H}},
                                                          {"norm.weight", Dims{I}},
                                                          {"out_proj.weight", Dims{6, I}},
                                                          {"out_proj.bias", Dims{6}}};
  auto got = m.named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_EQ(got[i].second.shape(), want[i].second) << want[i].first;
  }
  c.mamba.use_bias = false;
  c.mamba.use_conv_bias = false;
  Mamba2Mixer nb(c, gen);
  EXPECT_EQ(nb.named_parameters().size(), 7u);
  EXPECT_FALSE(nb.find_parameter("conv1d.bias").defined());
  EXPECT_FALSE(nb.find_parameter("in_proj.bias").defined());
}

TEST(Mamba2Mixer, InitialisationFollowsHf) {
  ModelConfig c = tiny_config();
  c.d_model = 64;
  c.mamba.n_heads = 16;
  c.mamba.head_dim = 8;
  c.mamba.dt_min = 0.01;
  c.mamba.dt_max = 0.2;
  Generator gen(7);
  Mamba2Mixer m(c, gen);
  std::vector<double> alog = param(m, "A_log"), D = param(m, "D"), dtb = param(m, "dt_bias");
  for (int64_t h = 0; h < 16; ++h) {
    EXPECT_NEAR(alog[size_t(h)], std::log(double(h + 1)), 1e-6);
    EXPECT_EQ(D[size_t(h)], 1.0);
    const double dt = softplus(dtb[size_t(h)]);
    EXPECT_GE(dt, 0.01 * (1 - 1e-5));
    EXPECT_LE(dt, 0.2 * (1 + 1e-5));
  }
  for (double w : param(m, "norm.weight")) EXPECT_EQ(w, 1.0);
  for (double b : param(m, "in_proj.bias")) EXPECT_EQ(b, 0.0);
  const double bound = 1 / std::sqrt(3.0);
  for (const char* n : {"conv1d.weight", "conv1d.bias"})
    for (double w : param(m, n)) EXPECT_LE(std::fabs(w), bound) << n;
  for (const char* n : {"in_proj.weight", "out_proj.weight"}) {
    std::vector<double> w = param(m, n);
    double ss = 0;
    for (double v : w) ss += v * v;
    EXPECT_NEAR(std::sqrt(ss / double(w.size())), c.init_std, 0.1 * c.init_std) << n;
  }
}

struct FwdCase {
  bool docs;
  double dt_lo, dt_hi;
};

class Mamba2Forward : public ::testing::TestWithParam<FwdCase> {};

TEST_P(Mamba2Forward, MatchesSequentialRecurrence) {
  const FwdCase fc = GetParam();
  ModelConfig c = tiny_config();
  c.mamba.dt_limit_min = fc.dt_lo;
  c.mamba.dt_limit_max = fc.dt_hi;
  Generator gen(3);
  Mamba2Mixer m(c, gen);
  randomize(m, 100);
  m.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 11;
  Tensor x = test::randn({B, T, c.d_model}, 5, kF64);
  std::vector<int32_t> seq = {0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};
  SequenceInfo si;
  if (fc.docs) si.seq_idx = Tensor::from_vector(seq, {B, T});
  Tensor out = m.forward(ag::Var(x), si).value();
  std::vector<double> ref =
      reference(m, c, x.to_vector<double>(), B, T, fc.docs ? seq : std::vector<int32_t>{});
  EXPECT_TRUE(test::AllClose(out, Tensor::from_vector(ref, out.shape()), {kF64, 64}));
}

INSTANTIATE_TEST_SUITE_P(Cases, Mamba2Forward,
                         ::testing::Values(FwdCase{false, 0.0, INFINITY},
                                           FwdCase{true, 0.0, INFINITY},
                                           FwdCase{true, 0.375, 1.25}));

// A packed row of two documents equals each document run alone (the chunk of 4 splits both).
TEST(Mamba2Mixer, PackedDocumentsEqualSeparateRows) {
  ModelConfig c = tiny_config();
  Generator gen(4);
  Mamba2Mixer m(c, gen);
  randomize(m, 200);
  m.to(Device::cpu(), kF64);
  const int64_t T1 = 5, T2 = 6;
  Tensor x = test::randn({1, T1 + T2, c.d_model}, 9, kF64);
  std::vector<int32_t> seq(size_t(T1 + T2), 7);
  for (int64_t t = T1; t < T1 + T2; ++t) seq[size_t(t)] = 8;
  Tensor packed = m.forward(ag::Var(x), {Tensor::from_vector(seq, {1, T1 + T2})}).value();
  Tensor a = m.forward(ag::Var(x.slice(1, 0, T1).contiguous()), {}).value();
  Tensor b = m.forward(ag::Var(x.slice(1, T1, T1 + T2).contiguous()), {}).value();
  EXPECT_TRUE(test::AllClose(packed.slice(1, 0, T1), a, {kF64, 64}));
  EXPECT_TRUE(test::AllClose(packed.slice(1, T1, T1 + T2), b, {kF64, 64}));
  Tensor unpacked = m.forward(ag::Var(x), {}).value();
  EXPECT_FALSE(test::AllClose(unpacked.slice(1, T1, T1 + T2), b, {kF64, 64}))
      << "without seq_idx the second document must see the first";
}

TEST(Mamba2Mixer, GradcheckInputAndEveryParameter) {
  ModelConfig c = tiny_config();
  c.d_model = 4;
  c.mamba.n_heads = 2;
  c.mamba.head_dim = 2;
  c.mamba.state_size = 2;
  c.mamba.n_groups = 1;
  c.mamba.chunk_size = 3;
  c.mamba.dt_limit_min = 0.3125;
  c.mamba.dt_limit_max = 1.5;
  Generator gen(5);
  Mamba2Mixer m(c, gen);
  randomize(m, 300);
  m.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 6;
  SequenceInfo si{
      Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3}, {B, T})};
  std::vector<ag::Var> inputs{ag::Var(test::randn({B, T, c.d_model}, 11, kF64), true, "x")};
  for (auto& [n, v] : m.named_parameters()) inputs.push_back(v);
  auto res =
      ag::gradcheck([&](const std::vector<ag::Var>& in) { return m.forward(in[0], si); }, inputs);
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Mamba2Mixer, BadInputNamesTheLayer) {
  ModelConfig c = tiny_config();
  Generator gen(6);
  Mamba2Mixer m(c, gen);
  try {
    m.forward(ag::Var(Tensor::zeros({1, 3, 5}, DType::F32)), {});
    FAIL() << "expected sl::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Mamba2Mixer"), std::string::npos) << e.what();
  }
  c.mamba.n_groups = 3;
  EXPECT_THROW(Mamba2Mixer(c, gen), Error);
}

// ---- GPU against the CPU (tests/layers/layer_check.h) ----

class Mamba2Gpu : public ::testing::TestWithParam<DType> {};

TEST_P(Mamba2Gpu, ForwardBackwardMatchCpu) {
  SL_REQUIRE_GPU();
  ModelConfig c;
  c.d_model = 48;
  c.mamba.n_heads = 6;
  c.mamba.head_dim = 8;
  c.mamba.state_size = 16;
  c.mamba.n_groups = 2;
  c.mamba.conv_kernel = 4;
  c.mamba.chunk_size = 16;
  c.mamba.use_bias = true;
  const int64_t B = 3, T = 37;
  std::vector<int32_t> ids(size_t(B * T), 0);
  for (int64_t t = 0; t < T; ++t) ids[size_t(T + t)] = t < 13 ? 1 : (t < 30 ? 2 : 3);
  const Tensor seq = Tensor::from_vector(ids, {B, T});
  test::expect_gpu_matches_cpu<Mamba2Mixer>(
      [&] {
        Generator gen(8);
        auto m = std::make_unique<Mamba2Mixer>(c, gen);
        randomize(*m, 400, 0.3);
        return m;
      },
      [&](Mamba2Mixer& m, const ag::Var& x) { return m.forward(x, {seq.to(x.device())}); },
      {B, T, c.d_model}, GetParam(), 21);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Mamba2Gpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl::layers
