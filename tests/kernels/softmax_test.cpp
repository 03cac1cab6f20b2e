// Softmax and log-softmax (kernels/softmax.h): CPU forward against the definition in f64, shift
// invariance and extreme inputs, backward against the Jacobian written out, errors, and the CUDA
// kernels (warp rows, block rows with and without the shared-memory cache) against the CPU
// reference in f32 and bf16.
#include "kernels/softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kernels/elementwise.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::Tol;

TEST(Softmax, CpuForwardMatchesDefinition) {
  const int64_t R = 4, C = 9;
  Tensor x = test::randn({R, C}, 1, DType::F64, Device::cpu(), 4.0);
  std::vector<double> xv = x.to_vector<double>(), ev, lv;
  for (int64_t r = 0; r < R; ++r) {
    double z = 0;
    for (int64_t j = 0; j < C; ++j) z += std::exp(xv[size_t(r * C + j)]);
    for (int64_t j = 0; j < C; ++j) {
      ev.push_back(std::exp(xv[size_t(r * C + j)]) / z);
      lv.push_back(xv[size_t(r * C + j)] - std::log(z));
    }
  }
  EXPECT_TRUE(
      AllClose(kernels::softmax(x), Tensor::from_vector(ev, x.shape()), Tol{DType::F64, C}));
  EXPECT_TRUE(
      AllClose(kernels::log_softmax(x), Tensor::from_vector(lv, x.shape()), Tol{DType::F64, C}));
  // Last dim of a strided 3-D view.
  Tensor x3 = test::randn({3, 5, 4}, 2, DType::F64).transpose(1, 2);
  EXPECT_TRUE(AllClose(kernels::softmax(x3), kernels::softmax(x3.contiguous()), Tol{DType::F64}));
}

TEST(Softmax, StableForLargeInputs) {
  Tensor x = Tensor::from_vector<float>({1000, 1000, -1000, 0, 0, -INFINITY}, {2, 3});
  std::vector<float> y = kernels::softmax(x).to_vector<float>();
  EXPECT_FLOAT_EQ(y[0], 0.5f);
  EXPECT_FLOAT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[2], 0.f);
  EXPECT_FLOAT_EQ(y[3], 0.5f);
  EXPECT_EQ(y[5], 0.f);
  std::vector<float> l = kernels::log_softmax(x).to_vector<float>();
  EXPECT_FLOAT_EQ(l[0], -std::log(2.f));
  EXPECT_TRUE(std::isinf(l[5]) && l[5] < 0);
  // Adding a constant to a row changes nothing.
  Tensor a = test::randn({3, 11}, 3);
  EXPECT_TRUE(AllClose(kernels::softmax(kernels::add_scalar(a, 50)), kernels::softmax(a),
                       Tol{DType::F32, 11, 0, 64}));  // x + 50 is rounded to f32: ~2^6 ulp of x
}

TEST(Softmax, CpuBackwardMatchesJacobian) {
  const int64_t R = 3, C = 6;
  Tensor x = test::randn({R, C}, 4, DType::F64);
  Tensor dy = test::randn({R, C}, 5, DType::F64);
  Tensor y = kernels::softmax(x), ly = kernels::log_softmax(x);
  std::vector<double> yv = y.to_vector<double>(), gv = dy.to_vector<double>(), es, el;
  // J_softmax[i][j] = y_i (delta_ij - y_j); J_log_softmax[i][j] = delta_ij - y_j.
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < C; ++j) {
      double s = 0, l = 0;
      for (int64_t i = 0; i < C; ++i) {
        double yi = yv[size_t(r * C + i)], yj = yv[size_t(r * C + j)], gi = gv[size_t(r * C + i)];
        s += gi * yi * ((i == j) - yj);
        l += gi * ((i == j) - yj);
      }
      es.push_back(s);
      el.push_back(l);
    }
  EXPECT_TRUE(AllClose(kernels::softmax_backward(y, dy), Tensor::from_vector(es, x.shape()),
                       Tol{DType::F64, C}));
  EXPECT_TRUE(AllClose(kernels::log_softmax_backward(ly, dy), Tensor::from_vector(el, x.shape()),
                       Tol{DType::F64, C}));
}

TEST(Softmax, RejectsBadInput) {
  try {
    kernels::softmax(Tensor::zeros({2, 3}, DType::I32));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("softmax"), std::string::npos) << e.what();
  }
  try {
    kernels::log_softmax_backward(Tensor::zeros({2, 3}, DType::F32),
                                  Tensor::zeros({3, 2}, DType::F32));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("log_softmax"), std::string::npos) << e.what();
  }
}

// ---- GPU against the CPU reference ----

DType ref_dtype(DType dt) {
  return dt == DType::F32 ? DType::F64 : DType::F32;
}

struct Shape {
  int64_t rows, cols;
};
// Warp kernels (<= 128, <= 1024), block kernels packed and unpacked, with the shared-memory cache
// and (f32 50304 backward, 70000) without it.
const Shape kShapes[] = {{37, 1},   {37, 7},   {65, 128}, {9, 129},   {33, 1000}, {5, 1024},
                         {5, 1025}, {4, 4096}, {3, 5003}, {2, 32000}, {2, 50304}, {2, 70000}};

class SoftmaxGpu : public ::testing::TestWithParam<DType> {};

TEST_P(SoftmaxGpu, ForwardBackwardEveryPath) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  uint64_t seed = 10;
  for (const Shape& s : kShapes) {
    Tensor x = test::randn({s.rows, s.cols}, seed++, dt, Device::cuda(0), 3.0);
    Tensor dy = test::randn({s.rows, s.cols}, seed++, dt, Device::cuda(0));
    Tensor xr = x.to(Device::cpu()).to(ref_dtype(dt)), dyr = dy.to(Device::cpu()).to(ref_dtype(dt));
    std::string where = std::to_string(s.rows) + " x " + std::to_string(s.cols);
    Tol tol{dt, s.cols};
    Tensor y = kernels::softmax(x), ly = kernels::log_softmax(x);
    EXPECT_TRUE(AllClose(y, kernels::softmax(xr), tol)) << where;
    EXPECT_TRUE(AllClose(ly, kernels::log_softmax(xr), tol)) << where;
    // Backward from the same y on both sides (y rounded to dt).
    Tensor yr = y.to(Device::cpu()).to(ref_dtype(dt)), lyr = ly.to(Device::cpu()).to(ref_dtype(dt));
    EXPECT_TRUE(AllClose(kernels::softmax_backward(y, dy), kernels::softmax_backward(yr, dyr), tol))
        << where;
    EXPECT_TRUE(AllClose(kernels::log_softmax_backward(ly, dy),
                         kernels::log_softmax_backward(lyr, dyr), tol))
        << where;
  }
}

TEST_P(SoftmaxGpu, StridedAndUnalignedInputs) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  Tensor x = test::randn({6, 2050}, 50, dt, Device::cuda(0));
  for (Tensor v : {x.slice(1, 1, 2049), x.transpose(0, 1), x.slice(1, 3, 300)}) {
    Tensor vr = v.to(Device::cpu()).to(ref_dtype(dt));
    EXPECT_TRUE(AllClose(kernels::softmax(v), kernels::softmax(vr), Tol{dt, v.size(-1)}))
        << v.shape_str();
  }
  Tensor big = Tensor::full({2, 3000}, 1000.0, dt, Device::cuda(0));
  EXPECT_TRUE(AllClose(kernels::softmax(big), Tensor::full({2, 3000}, 1.0 / 3000, DType::F32),
                       Tol{dt, 3000}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SoftmaxGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl
