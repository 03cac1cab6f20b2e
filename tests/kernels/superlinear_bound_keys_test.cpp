// Bound keys (Note [bound keys]): the stream search's survivors are chosen by comparing these
// keys in integers, so the encoding must preserve the bounds' order, never round a bound down,
// and give back the stripe index. Checked on floats of every magnitude and sign, the zeros, the
// largest finite values and the infinities.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/superlinear_bound_keys.h"

namespace sl::kernels {
namespace {

// Finite and infinite floats of every binade and both signs, plus the edge cases.
std::vector<float> sample_floats() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {0.f,
                          -0.f,
                          1.f,
                          -1.f,
                          std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          std::nextafter(std::numeric_limits<float>::max(), 0.f),
                          inf,
                          -inf};
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
  while (v.size() < 4000) {
    const float f = bits_float(bits(rng));
    if (!std::isnan(f)) v.push_back(f);
  }
  return v;
}

TEST(SuperlinearBoundKeys, OrderedBitsOrderAsTheFloats) {
  const std::vector<float> v = sample_floats();
  for (size_t i = 0; i < v.size(); ++i) {
    // The round trip gives the float back (-0 comes back as +0, which compares equal).
    EXPECT_EQ(key_value(ordered_bits(v[i])), v[i]) << v[i];
    for (size_t j = i + 1; j < std::min(v.size(), i + 64); ++j) {
      const float a = v[i], b = v[j];
      EXPECT_EQ(a < b, ordered_bits(a) < ordered_bits(b)) << a << " " << b;
      EXPECT_EQ(a == b, ordered_bits(a) == ordered_bits(b)) << a << " " << b;
    }
  }
  EXPECT_EQ(ordered_bits(-0.f), ordered_bits(0.f));
  // Every finite or infinite float is above the empty slot, key 0.
  EXPECT_GT(ordered_bits(-std::numeric_limits<float>::infinity()), 0u);
}

TEST(SuperlinearBoundKeys, KeysRoundUpKeepTheStripeAndOrderByBucket) {
  const std::vector<float> v = sample_floats();
  for (int bits : {1, 5, 11, kMaxKeyBits}) {
    const uint32_t mask = (1u << bits) - 1u;
    for (size_t i = 0; i < v.size(); ++i) {
      const uint32_t j = uint32_t(i * 2654435761u) & mask;
      const uint32_t key = bound_key(v[i], j, mask);
      EXPECT_EQ(key_stripe(key, mask), j);
      // Never below the bound: in integers, and as a value (saturating at +inf).
      EXPECT_GE(key, ordered_bits(v[i])) << v[i] << " bits " << bits;
      EXPECT_GE(key_value(key), v[i]) << v[i] << " bits " << bits;
      EXPECT_FALSE(std::isnan(key_value(key)));
      // At most one rounding step above it.
      EXPECT_LE(uint64_t(key), uint64_t(ordered_bits(v[i])) + 2 * uint64_t(mask)) << v[i];
      // Bounds whose ordered bits fall in different rounding steps keep their order, whatever
      // their stripes.
      const float w = v[(i + 1) % v.size()];
      const uint32_t kw = bound_key(w, mask - j, mask);
      const uint32_t step_v = (ordered_bits(v[i]) + mask) >> bits;
      const uint32_t step_w = (ordered_bits(w) + mask) >> bits;
      if (step_v != step_w) EXPECT_EQ(step_v < step_w, key < kw) << v[i] << " " << w;
    }
  }
}

TEST(SuperlinearBoundKeys, ThresholdCompareKeepsEveryBoundThatReachesIt) {
  // The stream search keeps an entry when key >= ordered_bits(thr): every bound >= thr passes,
  // and a bound below thr passes only from within one rounding step.
  const std::vector<float> v = sample_floats();
  const uint32_t mask = (1u << 11) - 1u;
  for (size_t i = 0; i + 1 < v.size(); i += 2) {
    const float hi = v[i], thr = v[i + 1];
    const uint32_t key = bound_key(hi, uint32_t(i) & mask, mask);
    if (hi >= thr) EXPECT_GE(key, ordered_bits(thr)) << hi << " " << thr;
    if (key >= ordered_bits(thr))
      EXPECT_LE(uint64_t(ordered_bits(thr)), uint64_t(ordered_bits(hi)) + 2 * uint64_t(mask));
  }
}

TEST(SuperlinearBoundKeys, BitsForAStripeCount) {
  EXPECT_EQ(key_bits(0), 1);
  EXPECT_EQ(key_bits(1), 1);
  EXPECT_EQ(key_bits(2), 1);
  EXPECT_EQ(key_bits(3), 2);
  EXPECT_EQ(key_bits(1024), 10);
  EXPECT_EQ(key_bits(1025), 11);
  EXPECT_EQ(key_bits(65536), 16);
  EXPECT_EQ(key_bits(65537), 17);
  for (int64_t n = 1; n < 5000; ++n) {
    const int b = key_bits(n);
    EXPECT_GE(int64_t(1) << b, n);
    if (b > 1) EXPECT_LT(int64_t(1) << (b - 1), n);
  }
}

}  // namespace
}  // namespace sl::kernels
