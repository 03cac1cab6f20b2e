// SuperlinearAttention: parameter names (HF attention names + qs_proj), config validation at
// construction, doc_starts from seq_idx, exact causal attention while no anchor exists (T <= W,
// spec §8), the layer's plumbing against the dense O(L^2) oracle when spans are active, Qs := Q
// conversion, gradcheck w.r.t. the input and every parameter, and the GPU path (compared with the
// CPU when its CUDA kernel exists, else its error must say so).
#include "layers/superlinear_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "layers/attention.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"
#include "tests/layers/layer_check.h"

namespace sl::layers {
namespace {

const DType kF64 = DType::F64;

ModelConfig config(kernels::SuperlinearConfig sl, bool bias = false, int64_t d = 8, int64_t hq = 4,
                   int64_t hkv = 2, int64_t hd = 4) {
  ModelConfig m;
  m.d_model = d;
  m.attention.n_heads = hq;
  m.attention.n_kv_heads = hkv;
  m.attention.head_dim = hd;
  m.attention.bias = bias;
  m.superlinear = sl;
  return m;
}

kernels::SuperlinearConfig balanced_s(int64_t s) {
  kernels::SuperlinearConfig c = kernels::SuperlinearConfig::balanced();
  c.s = s;
  return c;
}

using test::randomize;

using test::error_of;

TEST(SuperlinearAttention, ParameterNames) {
  Generator gen(1);
  SuperlinearAttention a(config(balanced_s(0), true, 8, 6, 2, 4), gen);
  const std::vector<std::pair<std::string, Dims>> want = {
      {"q_proj.weight", Dims{24, 8}},  {"q_proj.bias", Dims{24}},
      {"qs_proj.weight", Dims{24, 8}}, {"qs_proj.bias", Dims{24}},
      {"k_proj.weight", Dims{8, 8}},   {"k_proj.bias", Dims{8}},
      {"v_proj.weight", Dims{8, 8}},   {"v_proj.bias", Dims{8}},
      {"o_proj.weight", Dims{8, 24}},  {"o_proj.bias", Dims{8}}};
  auto got = a.named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_EQ(got[i].second.shape(), want[i].second) << want[i].first;
  }
}

TEST(SuperlinearAttention, ConfigWithoutCoverageIsRejectedWithTheReason) {
  Generator gen(2);
  kernels::SuperlinearConfig low_q{0, 0.5, 0.3, 0, 3, 2.0, 0.0};  // q < 1 - p
  kernels::SuperlinearConfig short_span = balanced_s(0);
  short_span.f_b = 1.0;  // q = 1 - p needs f_b + f_f >= 1 / p = 2
  for (const auto& sl : {low_q, short_span}) {
    ModelConfig cfg = config(sl);
    std::string msg = error_of([&] { SuperlinearAttention a(cfg, gen); });
    EXPECT_NE(msg.find("SuperlinearAttention"), std::string::npos) << msg;
    EXPECT_NE(msg.find("coverage (spec §10)"), std::string::npos) << msg;
    cfg.superlinear_allow_no_coverage = true;
    EXPECT_EQ(error_of([&] { SuperlinearAttention a(cfg, gen); }), "");
  }
  kernels::SuperlinearConfig bad_k = balanced_s(0);
  bad_k.k = 0;
  ModelConfig cfg = config(bad_k);
  cfg.superlinear_allow_no_coverage = true;
  EXPECT_NE(error_of([&] { SuperlinearAttention a(cfg, gen); }).find("SuperlinearAttention"),
            std::string::npos);
}

TEST(SuperlinearAttention, DocStartsFromSeqIdx) {
  Tensor seq =
      Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 2, 3, 3, 5, 3, 3, 3}, {2, 6});
  Tensor ds = doc_starts_from_seq_idx(seq, Device::cpu());
  EXPECT_TRUE(test::AllEqual(
      ds, Tensor::from_vector(std::vector<int32_t>{0, 0, 2, 2, 2, 5, 0, 0, 2, 3, 3, 3}, {2, 6})));
  EXPECT_FALSE(doc_starts_from_seq_idx(Tensor(), Device::cpu()).defined());
}

// Copies the parameters the two layers share (HF names) from `from` into `to`.
void copy_shared(const Module& from, Module& to) {
  for (auto& [n, v] : to.named_parameters()) {
    ag::Var src = from.find_parameter(n);
    if (src.defined()) v.set_value(src.value().clone());
  }
}

// T <= W: no query has an anchor, so the layer is dense causal attention (spec §8).
TEST(SuperlinearAttention, IsDenseCausalAttentionWhileTheWindowCoversEverything) {
  ModelConfig cfg = config(balanced_s(3), true);  // W = 15
  Generator gen(3);
  Attention dense(cfg, gen);
  SuperlinearAttention sl(cfg, gen);
  randomize(dense, 10);
  randomize(sl, 30);
  copy_shared(dense, sl);
  dense.to(Device::cpu(), kF64);
  sl.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 15;
  Tensor x = test::randn({B, T, cfg.d_model}, 4, kF64);
  std::vector<int32_t> seq(size_t(B * T), 1);
  for (int64_t t = 6; t < T; ++t) seq[size_t(t)] = 2;
  for (bool docs : {false, true}) {
    SequenceInfo si;
    if (docs) si.seq_idx = Tensor::from_vector(seq, {B, T});
    EXPECT_TRUE(test::AllClose(sl.forward(ag::Var(x), si).value(),
                               dense.forward(ag::Var(x), si).value(), {kF64, 64}))
        << (docs ? "documents" : "one document per row");
  }
}

// Spans active (W = 0, T = 20): the layer equals the dense oracle applied to its projections.
TEST(SuperlinearAttention, MatchesTheDenseOracleOnItsProjections) {
  ModelConfig cfg = config(balanced_s(0), true);
  Generator gen(4);
  SuperlinearAttention sl(cfg, gen);
  randomize(sl, 40);
  sl.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 20, Hq = 4, Hkv = 2, D = 4;
  Tensor x = test::randn({B, T, cfg.d_model}, 5, kF64);
  std::vector<int32_t> seq(size_t(B * T), 0);
  for (int64_t t = 0; t < T; ++t) seq[size_t(T + t)] = t < 7 ? 1 : 2;
  Tensor seq_idx = Tensor::from_vector(seq, {B, T});
  Tensor out = sl.forward(ag::Var(x), {seq_idx}).value();

  auto proj = [&](const char* name, int64_t H) {  // -> [B, H, T, D]
    Tensor w = sl.find_parameter(std::string(name) + ".weight").value();
    Tensor b = sl.find_parameter(std::string(name) + ".bias").value();
    return ag::linear(ag::Var(x), ag::Var(w), ag::Var(b))
        .value()
        .reshape({B, T, H, D})
        .transpose(1, 2)
        .contiguous();
  };
  kernels::SuperlinearOracle o = kernels::superlinear_dense_oracle(
      proj("q_proj", Hq), proj("qs_proj", Hq), proj("k_proj", Hkv), proj("v_proj", Hkv),
      cfg.superlinear, doc_starts_from_seq_idx(seq_idx, Device::cpu()));
  Tensor ref = ag::linear(ag::Var(o.out.transpose(1, 2).contiguous().reshape({B, T, Hq * D})),
                          sl.find_parameter("o_proj.weight"), sl.find_parameter("o_proj.bias"))
                   .value();
  EXPECT_TRUE(test::AllClose(out, ref, {kF64, 64}));
}

TEST(SuperlinearAttention, InitQsFromQCopiesTheQueryProjection) {
  Generator gen(5);
  SuperlinearAttention sl(config(balanced_s(0), true), gen);
  randomize(sl, 50);
  EXPECT_FALSE(test::AllEqual(sl.find_parameter("qs_proj.weight").value(),
                              sl.find_parameter("q_proj.weight").value()));
  sl.init_qs_from_q();
  EXPECT_TRUE(test::AllEqual(sl.find_parameter("qs_proj.weight").value(),
                             sl.find_parameter("q_proj.weight").value()));
  EXPECT_TRUE(test::AllEqual(sl.find_parameter("qs_proj.bias").value(),
                             sl.find_parameter("q_proj.bias").value()));
}

TEST(SuperlinearAttention, GradcheckInputAndEveryParameter) {
  ModelConfig cfg = config(balanced_s(0), true, 4, 4, 2, 2);
  Generator gen(6);
  SuperlinearAttention sl(cfg, gen);
  randomize(sl, 60);
  sl.to(Device::cpu(), kF64);
  const int64_t B = 2, T = 10;
  std::vector<int32_t> seq(size_t(B * T), 0);
  for (int64_t t = 4; t < T; ++t) seq[size_t(T + t)] = 1;
  SequenceInfo si{Tensor::from_vector(seq, {B, T})};
  std::vector<ag::Var> inputs{ag::Var(test::randn({B, T, cfg.d_model}, 7, kF64), true, "x")};
  for (auto& [n, v] : sl.named_parameters()) inputs.push_back(v);
  auto res =
      ag::gradcheck([&](const std::vector<ag::Var>& in) { return sl.forward(in[0], si); }, inputs);
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(SuperlinearAttention, BadInputNamesTheLayer) {
  Generator gen(7);
  SuperlinearAttention sl(config(balanced_s(0)), gen);
  std::string msg = error_of([&] {
    sl.forward(ag::Var(Tensor::zeros({1, 3, 5}, DType::F32)), {});
  });
  EXPECT_NE(msg.find("SuperlinearAttention"), std::string::npos) << msg;
}

// ---- GPU: against the CPU when the CUDA kernel exists; otherwise a clear error ----

class SuperlinearAttentionGpu : public ::testing::TestWithParam<DType> {};

TEST_P(SuperlinearAttentionGpu, ForwardBackwardMatchCpu) {
  SL_REQUIRE_GPU();
  // W = 3. No biases: the k_proj.bias gradient is exactly zero (every softmax, the gate's too,
  // is shift invariant), so comparing it would measure rounding noise only.
  const ModelConfig cfg = config(balanced_s(1), false, 48, 6, 2, 16);
  const int64_t B = 2, T = 45;
  std::vector<int32_t> ids(size_t(B * T), 0);
  for (int64_t t = 0; t < T; ++t) ids[size_t(T + t)] = t < 17 ? 1 : 2;
  const Tensor seq = Tensor::from_vector(ids, {B, T});
  test::expect_gpu_matches_cpu<SuperlinearAttention>(
      [&] {
        Generator gen(8);
        auto sl = std::make_unique<SuperlinearAttention>(cfg, gen);
        randomize(*sl, 90, 0.2);
        return sl;
      },
      [&](SuperlinearAttention& sl, const ag::Var& x) {
        return sl.forward(x, {seq.to(x.device())});
      },
      {B, T, cfg.d_model}, GetParam(), 21);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SuperlinearAttentionGpu,
                         ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl::layers
