// Embedding: CPU forward against row copies, backward against per-id sums and gradcheck (repeated
// ids), GPU against the CPU reference (f32, bf16; 16-byte, 4-byte and 2-byte row paths), GPU
// backward determinism with many repeated ids, and out-of-range / shape errors.
#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include <random>

#include "autograd/gradcheck.h"
#include "autograd/ops_nn.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::AllEqual;
using test::Tol;

const Device kGpu = Device::cuda(0);

Tensor random_ids(const Dims& shape, int64_t v, uint64_t seed, DType dt = DType::I64) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids(size_t(shape.numel()));
  for (auto& e : ids) e = int64_t(rng() % uint64_t(v));
  return Tensor::from_vector(ids, shape).to(dt);
}

TEST(Embedding, CpuForwardCopiesRowsAndBackwardSumsPerId) {
  const int64_t v = 6, c = 5;
  Tensor w = test::randn({v, c}, 1);
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, 0, 3, 5, 3, 1}, {2, 3});
  Tensor out = kernels::embedding_forward(w, ids);
  ASSERT_EQ(out.shape(), Dims({2, 3, c}));
  std::vector<float> wv = w.to_vector<float>(), ov = out.to_vector<float>();
  std::vector<int32_t> iv = ids.to_vector<int32_t>();
  for (size_t i = 0; i < iv.size(); ++i)
    for (int64_t j = 0; j < c; ++j) EXPECT_EQ(ov[i * c + size_t(j)], wv[size_t(iv[i] * c + j)]);
  Tensor dy = test::randn({2, 3, c}, 2);
  Tensor dw = kernels::embedding_backward(dy, ids, v);
  std::vector<double> expect(size_t(v * c), 0.0);
  std::vector<float> dyv = dy.to_vector<float>();
  for (size_t i = 0; i < iv.size(); ++i)
    for (int64_t j = 0; j < c; ++j) expect[size_t(iv[i] * c + j)] += dyv[i * c + size_t(j)];
  EXPECT_TRUE(AllClose(dw, Tensor::from_vector(expect, {v, c}), Tol{DType::F32, 3}));
}

TEST(Embedding, GradcheckF64RepeatedIds) {
  ag::Var w(test::randn({7, 4}, 3, DType::F64), true, "weight");
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{2, 2, 6, 0, 2, 6, 6, 1}, {2, 4});
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) { return ag::embedding(in[0], ids); }, {w});
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Embedding, BadIdsAndShapesThrow) {
  Tensor w = test::randn({5, 3}, 4);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 4, 5}, {3});
  try {
    kernels::embedding_forward(w, bad);
    ADD_FAILURE() << "no error for id 5 >= V";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("embedding"), std::string::npos) << what;
    EXPECT_NE(what.find("position 2"), std::string::npos) << what;
  }
  EXPECT_THROW(kernels::embedding_forward(w, Tensor::from_vector(std::vector<int64_t>{-1}, {1})),
               Error);
  EXPECT_THROW(kernels::embedding_forward(w, Tensor::zeros({3}, DType::F32)), Error);
  try {
    kernels::embedding_backward(test::randn({4, 3}, 5), Tensor::zeros({3}, DType::I64), 5);
    ADD_FAILURE() << "no error for dy of the wrong shape";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("embedding"), std::string::npos) << e.what();
  }
}

struct GpuCase {
  DType dtype;
  int64_t v, c, n;
};

class EmbeddingGpu : public ::testing::TestWithParam<GpuCase> {};

TEST_P(EmbeddingGpu, MatchesCpuAndBackwardIsDeterministic) {
  SL_REQUIRE_GPU();
  const GpuCase k = GetParam();
  Tensor w = test::randn({k.v, k.c}, uint64_t(k.c), k.dtype);
  // Ids from a small range so most of them repeat many times.
  Tensor ids = random_ids({k.n / 7, 7}, std::min<int64_t>(k.v, 13), uint64_t(k.n), DType::I32);
  Tensor out = kernels::embedding_forward(w.to(kGpu), ids.to(kGpu));
  EXPECT_TRUE(AllEqual(out, kernels::embedding_forward(w, ids)));
  Tensor dy = test::randn(out.shape(), 99, k.dtype);
  Tensor ref = kernels::embedding_backward(dy, ids, k.v);
  Tensor d1 = kernels::embedding_backward(dy.to(kGpu), ids.to(kGpu), k.v);
  Tensor d2 = kernels::embedding_backward(dy.to(kGpu), ids.to(kGpu), k.v);
  EXPECT_TRUE(AllClose(d1, ref, Tol{k.dtype, k.n}));
  EXPECT_TRUE(AllEqual(d1, d2));
}

INSTANTIATE_TEST_SUITE_P(Shapes, EmbeddingGpu,
                         ::testing::Values(GpuCase{DType::F32, 1003, 129, 7 * 37},
                                           GpuCase{DType::BF16, 1003, 129, 7 * 37},
                                           GpuCase{DType::BF16, 50, 1000, 7 * 300},
                                           GpuCase{DType::F32, 32000, 256, 7 * 1000},
                                           GpuCase{DType::BF16, 17, 2, 7 * 5}));

TEST(EmbeddingGpuErrors, OutOfRangeIdThrows) {
  SL_REQUIRE_GPU();
  Tensor w = test::randn({10, 8}, 6, DType::BF16, kGpu);
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 9, 10, 3}, {4}).to(kGpu);
  try {
    kernels::embedding_forward(w, ids);
    ADD_FAILURE() << "no error for id 10 >= V on the GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("position 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sl
