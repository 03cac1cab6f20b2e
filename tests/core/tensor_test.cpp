// Views, strides, copies and dtype round trips of core/tensor.h.
#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllEqual;

Tensor iota(const Dims& shape, DType dt = DType::F32) {
  std::vector<float> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  return Tensor::from_vector(v, shape).to(dt);
}

TEST(Tensor, ContiguousStridesAndWorkedExample) {
  Tensor t = iota({2, 3, 4});
  EXPECT_EQ(t.strides(), Dims({12, 4, 1}));
  Tensor tt = t.transpose(1, 2);
  EXPECT_EQ(tt.shape(), Dims({2, 4, 3}));
  EXPECT_EQ(tt.strides(), Dims({12, 1, 4}));
  EXPECT_FALSE(tt.is_contiguous());
  // Element (1, 2, 3) of t is element (1, 3, 2) of tt, value 23.
  EXPECT_EQ(tt.contiguous().to_vector<float>()[1 * 12 + 3 * 3 + 2], 23.0f);
  Tensor s = t.slice(2, 1, 3);
  EXPECT_EQ(s.shape(), Dims({2, 3, 2}));
  EXPECT_EQ(s.offset(), 1);
  std::vector<float> sv = s.contiguous().to_vector<float>();
  EXPECT_EQ(sv[0], 1.0f);
  EXPECT_EQ(sv[1], 2.0f);
  EXPECT_EQ(sv[2], 5.0f);
}

TEST(Tensor, ViewReshapeAndErrors) {
  Tensor t = iota({2, 3, 4});
  Tensor v = t.view({6, -1});
  EXPECT_EQ(v.shape(), Dims({6, 4}));
  EXPECT_EQ(v.storage(), t.storage());
  // A transposed tensor cannot be flattened without a copy: view refuses, reshape copies.
  Tensor tt = t.transpose(0, 2);
  EXPECT_THROW(tt.view({24}), Error);
  Tensor r = tt.reshape({24});
  EXPECT_NE(r.storage(), t.storage());
  EXPECT_EQ(r.to_vector<float>()[1], 12.0f);
  // Splitting a dim of a transposed view is still a view.
  Tensor split = tt.view({2, 2, 3, 2});
  EXPECT_EQ(split.storage(), t.storage());
  EXPECT_TRUE(AllEqual(split.contiguous().reshape({24}), tt.contiguous().reshape({24})));
  EXPECT_THROW(t.view({5, 5}), Error);
  EXPECT_THROW(t.slice(1, 2, 1), Error);
  EXPECT_THROW(t.transpose(0, 3), Error);
}

TEST(Tensor, StepSliceSelectExpandPermute) {
  Tensor t = iota({4, 5});
  Tensor s = t.slice(1, 0, 5, 2);  // columns 0, 2, 4
  EXPECT_EQ(s.shape(), Dims({4, 3}));
  EXPECT_EQ(s.contiguous().to_vector<float>()[4], 7.0f);
  Tensor row = t.select(0, 2);
  EXPECT_EQ(row.shape(), Dims({5}));
  EXPECT_EQ(row.to_vector<float>()[0], 10.0f);
  Tensor e = row.unsqueeze(0).expand({3, 5});
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.contiguous().to_vector<float>()[14], 14.0f);
  Tensor p = iota({2, 3, 4}).permute({2, 0, 1});
  EXPECT_EQ(p.shape(), Dims({4, 2, 3}));
  EXPECT_EQ(p.contiguous().to_vector<float>()[1 * 6 + 1 * 3 + 2], 12.0f + 8.0f + 1.0f);
}

TEST(Tensor, DtypeRoundTripsAreExactWhereRepresentable) {
  // Small integers and halves are exact in every float dtype.
  std::vector<float> v = {0, 1, -2, 0.5f, 255, -1024, 3.25f};
  Tensor f = Tensor::from_vector(v, {7});
  for (DType dt : {DType::BF16, DType::F16, DType::F64, DType::F32})
    EXPECT_TRUE(AllEqual(f.to(dt).to(DType::F32), f)) << dtype_name(dt);
  std::vector<int64_t> iv = {0, -7, 1 << 20, 42};
  Tensor i64 = Tensor::from_vector(iv, {4});
  EXPECT_TRUE(AllEqual(i64.to(DType::I32).to(DType::I64), i64));
  EXPECT_TRUE(AllEqual(i64.to(DType::F64).to(DType::I64), i64));
}

TEST(Tensor, Bf16AndF16RoundToNearestEven) {
  // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)).bits, float_to_bf16(1.0f).bits);
  // 1 + 3*2^-8 is halfway between 1+2^-7 and 1+2^-6: ties to even -> 1 + 2^-6.
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))),
            1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(f16_to_float(float_to_f16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(f16_to_float(float_to_f16(65520.0f))));
  EXPECT_EQ(f16_to_float(float_to_f16(std::ldexp(1.0f, -24))), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_float(float_to_f16(std::ldexp(1.0f, -26))), 0.0f);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(NAN))));
  // Every f16 bit pattern survives f16 -> f32 -> f16.
  for (uint32_t b = 0; b < 65536; ++b) {
    f16 h{uint16_t(b)};
    float f = f16_to_float(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_f16(f).bits, h.bits) << "pattern " << b;
  }
}

TEST(Tensor, FillAndCopyIntoStridedView) {
  Tensor t = Tensor::zeros({3, 4}, DType::F32);
  t.slice(1, 1, 3).fill_(2.5);
  std::vector<float> v = t.to_vector<float>();
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_EQ(v[1], 2.5f);
  EXPECT_EQ(v[2], 2.5f);
  EXPECT_EQ(v[3], 0.0f);
  Tensor src = iota({4, 3}).transpose(0, 1);  // [3, 4] non-contiguous
  t.copy_(src);
  EXPECT_TRUE(AllEqual(t, src.contiguous()));
  EXPECT_THROW(t.copy_(iota({4, 3})), Error);
}

TEST(Tensor, CopiesAcrossDevicesKeepValuesAndLayout) {
  SL_REQUIRE_GPU();
  Tensor h = test::randn({5, 7, 3}, 11);
  Tensor d = h.to(Device::cuda(0));
  EXPECT_TRUE(d.is_cuda());
  EXPECT_TRUE(AllEqual(d.to(Device::cpu()), h));
  // Strided device view -> host, cast on the way.
  Tensor dv = d.transpose(0, 2).slice(1, 1, 6, 2);
  Tensor hv = h.transpose(0, 2).slice(1, 1, 6, 2);
  EXPECT_TRUE(AllEqual(dv.to(DType::BF16).to(Device::cpu()), hv.to(DType::BF16)));
  // Host -> strided device view.
  Tensor dz = Tensor::zeros({7, 5}, DType::F32, Device::cuda(0));
  dz.transpose(0, 1).copy_(h.select(2, 1));
  EXPECT_TRUE(AllEqual(dz.to(Device::cpu()), h.select(2, 1).transpose(0, 1).contiguous()));
  Tensor pinned = Tensor::empty_pinned({5, 7, 3}, DType::F32);
  pinned.copy_(d);
  EXPECT_TRUE(AllEqual(pinned, h));
}

TEST(Tensor, DeviceCastMatchesHostCastBitForBit) {
  SL_REQUIRE_GPU();
  Tensor h = test::randn({1000}, 5, DType::F32, Device::cpu(), 100.0);
  for (DType dt : {DType::BF16, DType::F16, DType::I32}) {
    Tensor on_gpu = h.to(Device::cuda(0)).to(dt).to(Device::cpu());
    EXPECT_TRUE(AllEqual(on_gpu, h.to(dt))) << dtype_name(dt);
  }
}

// Fills on the device: zero of a contiguous tensor (a memset), -0.0 (not all-zero bits, so the
// kernel), other values, and a strided view (the indexer), each against the same fill on the host.
TEST(Tensor, DeviceFillMatchesHostFill) {
  SL_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16, DType::I32}) {
    Tensor h = test::randn({6, 5}, 3).to(dt);
    Tensor d = h.to(Device::cuda(0));
    for (double v : {0.0, -0.0, 2.5}) {
      if (v == 0.0 && std::signbit(v) && dt == DType::I32) continue;
      h.fill_(v);
      d.fill_(v);
      EXPECT_TRUE(AllEqual(d.to(Device::cpu()), h)) << dtype_name(dt) << " fill " << v;
      if (dt != DType::I32) {
        const std::vector<double> x = d.to(Device::cpu()).to(DType::F64).to_vector<double>();
        EXPECT_EQ(std::signbit(x[0]), std::signbit(v)) << dtype_name(dt) << " fill " << v;
      }
    }
    h.transpose(0, 1).slice(0, 1, 4, 2).fill_(7);
    d.transpose(0, 1).slice(0, 1, 4, 2).fill_(7);
    EXPECT_TRUE(AllEqual(d.to(Device::cpu()), h)) << dtype_name(dt) << " strided fill";
  }
}

}  // namespace
}  // namespace sl
