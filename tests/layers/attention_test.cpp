// Attention: HF parameter names and shapes, the forward against explicit softmax loops with the
// causal, sliding-window and document masks (GQA, RoPE, bias), packed documents equal to separate
// rows, gradcheck w.r.t. the input and every parameter, and GPU against CPU.
#include "layers/attention.h"

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

struct Case {
  int64_t window;
  bool docs, rope, bias;
};

ModelConfig config(const Case& c, int64_t d = 8, int64_t hq = 4, int64_t hkv = 2, int64_t hd = 4) {
  ModelConfig m;
  m.d_model = d;
  m.attention.n_heads = hq;
  m.attention.n_kv_heads = hkv;
  m.attention.head_dim = hd;
  m.attention.sliding_window = c.window;
  m.attention.rope = c.rope;
  m.attention.rope_theta = 500.0;
  m.attention.bias = c.bias;
  return m;
}

using test::randomize;

// The parameter as f64 values, zeros of size n when it does not exist (no bias).
std::vector<double> param(const Module& m, const std::string& name, int64_t n) {
  ag::Var v = m.find_parameter(name);
  if (!v.defined()) return std::vector<double>(size_t(n), 0.0);
  return v.value().to(kF64).contiguous().to_vector<double>();
}

// y[b, t, o] = x[b, t, :] . w[o, :] + bias[o]
std::vector<double> linear(const std::vector<double>& x, int64_t rows, int64_t in,
                           const std::vector<double>& w, const std::vector<double>& bias,
                           int64_t out) {
  std::vector<double> y(size_t(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias[size_t(o)];
      for (int64_t i = 0; i < in; ++i) s += x[size_t(r * in + i)] * w[size_t(o * in + i)];
      y[size_t(r * out + o)] = s;
    }
  return y;
}

// Rotate-half RoPE of every head vector in place; pos[b * T + t].
void rope(std::vector<double>& x, int64_t B, int64_t T, int64_t H, int64_t D, double theta,
          const std::vector<int64_t>& pos) {
  const int64_t half = D / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        double* v = &x[size_t(((b * T + t) * H + h) * D)];
        for (int64_t i = 0; i < half; ++i) {
          double ang =
              double(pos[size_t(b * T + t)]) * std::pow(theta, -2.0 * double(i) / double(D));
          double a = v[i], c = v[i + half];
          v[i] = a * std::cos(ang) - c * std::sin(ang);
          v[i + half] = c * std::cos(ang) + a * std::sin(ang);
        }
      }
}

// HF NemotronHAttention with explicit loops, in f64; seq empty: one document per row.
std::vector<double> reference(const Module& m, const ModelConfig& c, const std::vector<double>& x,
                              int64_t B, int64_t T, const std::vector<int32_t>& seq) {
  const AttentionConfig& a = c.attention;
  const int64_t d = c.d_model, Hq = a.n_heads, Hkv = a.n_kv_heads, D = a.head_dim;
  const int64_t r = Hq / Hkv;
  auto proj = [&](const std::vector<double>& in, const char* name, int64_t nin, int64_t nout) {
    return linear(in, B * T, nin, param(m, std::string(name) + ".weight", nout * nin),
                  param(m, std::string(name) + ".bias", nout), nout);
  };
  std::vector<double> q = proj(x, "q_proj", d, Hq * D), k = proj(x, "k_proj", d, Hkv * D),
                      v = proj(x, "v_proj", d, Hkv * D);
  std::vector<int64_t> pos(size_t(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0, s = 0; t < T; ++t) {
      if (!seq.empty() && t > 0 && seq[size_t(b * T + t)] != seq[size_t(b * T + t - 1)]) s = t;
      pos[size_t(b * T + t)] = t - s;
    }
  if (a.rope) {
    rope(q, B, T, Hq, D, a.rope_theta, pos);
    rope(k, B, T, Hkv, D, a.rope_theta, pos);
  }
  std::vector<double> o(size_t(B * T * Hq * D), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> s(size_t(T), -INFINITY);
        double mx = -INFINITY;
        for (int64_t u = 0; u <= t; ++u) {
          if (a.sliding_window > 0 && t - u >= a.sliding_window) continue;
          if (!seq.empty() && seq[size_t(b * T + u)] != seq[size_t(b * T + t)]) continue;
          double dot = 0;
          for (int64_t i = 0; i < D; ++i)
            dot += q[size_t(((b * T + t) * Hq + h) * D + i)] *
                   k[size_t(((b * T + u) * Hkv + h / r) * D + i)];
          s[size_t(u)] = dot / std::sqrt(double(D));
          mx = std::max(mx, s[size_t(u)]);
        }
        double z = 0;
        for (int64_t u = 0; u <= t; ++u) z += std::exp(s[size_t(u)] - mx);
        for (int64_t u = 0; u <= t; ++u) {
          const double p = std::exp(s[size_t(u)] - mx) / z;
          for (int64_t i = 0; i < D; ++i)
            o[size_t(((b * T + t) * Hq + h) * D + i)] +=
                p * v[size_t(((b * T + u) * Hkv + h / r) * D + i)];
        }
      }
  return proj(o, "o_proj", Hq * D, d);
}

TEST(Attention, ParameterNamesAndShapesAreHfs) {
  Generator gen(1);
  Attention a(config({0, false, false, true}, 8, 6, 2, 4), gen);
  const std::vector<std::pair<std::string, Dims>> want = {
      {"q_proj.weight", Dims{24, 8}}, {"q_proj.bias", Dims{24}},     {"k_proj.weight", Dims{8, 8}},
      {"k_proj.bias", Dims{8}},       {"v_proj.weight", Dims{8, 8}}, {"v_proj.bias", Dims{8}},
      {"o_proj.weight", Dims{8, 24}}, {"o_proj.bias", Dims{8}}};
  auto got = a.named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_EQ(got[i].second.shape(), want[i].second) << want[i].first;
  }
  Attention nb(config({0, false, false, false}, 8, 6, 2, 4), gen);
  EXPECT_EQ(nb.named_parameters().size(), 4u);
}

const std::vector<int32_t> kSeq = {0, 0, 0, 1, 1, 1, 1, 2, 2, 5, 5, 5, 5, 5, 5, 5, 5, 5};

class AttentionForward : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionForward, MatchesExplicitSoftmaxLoops) {
  const Case c = GetParam();
  ModelConfig cfg = config(c);
  Generator gen(2);
  Attention a(cfg, gen);
  randomize(a, 50);
  a.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 9;
  Tensor x = test::randn({B, T, cfg.d_model}, 3, kF64);
  SequenceInfo si;
  if (c.docs) si.seq_idx = Tensor::from_vector(kSeq, {B, T});
  Tensor out = a.forward(ag::Var(x), si).value();
  std::vector<double> ref =
      reference(a, cfg, x.to_vector<double>(), B, T, c.docs ? kSeq : std::vector<int32_t>{});
  EXPECT_TRUE(test::AllClose(out, Tensor::from_vector(ref, out.shape()), {kF64, 64}));
}

INSTANTIATE_TEST_SUITE_P(Masks, AttentionForward,
                         ::testing::Values(Case{0, false, false, false}, Case{0, true, false, true},
                                           Case{3, false, false, false}, Case{3, true, true, false},
                                           Case{0, false, true, true},
                                           Case{1, false, false, false}));

TEST(Attention, PackedDocumentsEqualSeparateRows) {
  ModelConfig cfg = config({0, true, true, true});
  Generator gen(4);
  Attention a(cfg, gen);
  randomize(a, 60);
  a.to(Device::cpu(), kF64);
  const int64_t T1 = 4, T2 = 7;
  Tensor x = test::randn({1, T1 + T2, cfg.d_model}, 5, kF64);
  std::vector<int32_t> seq(size_t(T1 + T2), 3);
  for (int64_t t = T1; t < T1 + T2; ++t) seq[size_t(t)] = 4;
  Tensor packed = a.forward(ag::Var(x), {Tensor::from_vector(seq, {1, T1 + T2})}).value();
  Tensor first = a.forward(ag::Var(x.slice(1, 0, T1).contiguous()), {}).value();
  Tensor second = a.forward(ag::Var(x.slice(1, T1, T1 + T2).contiguous()), {}).value();
  EXPECT_TRUE(test::AllClose(packed.slice(1, 0, T1), first, {kF64, 64}));
  EXPECT_TRUE(test::AllClose(packed.slice(1, T1, T1 + T2), second, {kF64, 64}));
}

TEST(Attention, GradcheckInputAndEveryParameter) {
  ModelConfig cfg = config({3, true, true, true}, 4, 4, 2, 2);
  Generator gen(5);
  Attention a(cfg, gen);
  randomize(a, 70);
  a.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 6;
  SequenceInfo si{
      Tensor::from_vector(std::vector<int32_t>{0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2}, {B, T})};
  std::vector<ag::Var> inputs{ag::Var(test::randn({B, T, cfg.d_model}, 7, kF64), true, "x")};
  for (auto& [n, v] : a.named_parameters()) inputs.push_back(v);
  auto res =
      ag::gradcheck([&](const std::vector<ag::Var>& in) { return a.forward(in[0], si); }, inputs);
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Attention, BadArgumentsNameTheLayer) {
  Generator gen(6);
  try {
    Attention(config({0, false, false, false}, 8, 3, 2, 4), gen);
    FAIL() << "expected sl::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Attention"), std::string::npos) << e.what();
  }
  ag::Var q(Tensor::zeros({1, 5, 4, 8}, DType::F32)), k(Tensor::zeros({1, 5, 3, 8}, DType::F32));
  try {
    attention_core(q, k, k, {});
    FAIL() << "expected sl::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention_core"), std::string::npos) << e.what();
  }
}

// ---- GPU against the CPU (tests/layers/layer_check.h) ----

class AttentionGpu : public ::testing::TestWithParam<DType> {};

TEST_P(AttentionGpu, ForwardBackwardMatchCpu) {
  SL_REQUIRE_GPU();
  const int64_t B = 2, T = 37;
  std::vector<int32_t> ids(size_t(B * T), 0);
  for (int64_t t = 0; t < T; ++t) ids[size_t(T + t)] = t < 11 ? 1 : (t < 30 ? 2 : 3);
  const Tensor seq = Tensor::from_vector(ids, {B, T});
  // No biases: the k_proj.bias gradient is exactly zero (softmax is shift invariant), so a
  // comparison with the naive run would measure rounding noise only.
  for (const Case c : {Case{0, true, false, false}, Case{7, false, true, false}}) {
    SCOPED_TRACE("window " + std::to_string(c.window));
    const ModelConfig cfg = config(c, 48, 6, 2, 16);
    test::expect_gpu_matches_cpu<Attention>(
        [&] {
          Generator gen(8);
          auto a = std::make_unique<Attention>(cfg, gen);
          randomize(*a, 80, 0.2);
          return a;
        },
        [&](Attention& a, const ag::Var& x) {
          SequenceInfo si;
          if (c.docs) si.seq_idx = seq.to(x.device());
          return a.forward(x, si);
        },
        {B, T, cfg.d_model}, GetParam(), 21);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AttentionGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl::layers
