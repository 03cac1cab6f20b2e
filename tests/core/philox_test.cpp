// Philox4x32-10 (core/philox.h): the published Random123 known-answer vectors, CPU/GPU agreement
// of the fills built on it, their statistics, and stream separation by offset and seed.
#include "core/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/philox_normal.h"
#include "core/tensor.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {

// Random123's kat_vectors for philox4x32_10: counter words c0..c3 and key words k0, k1. Our
// mapping: c0, c1 = block lo, hi; c2, c3 = offset lo, hi; k0, k1 = seed lo, hi.
struct Kat {
  uint32_t ctr[4], key[2], out[4];
};
const Kat kKats[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

uint64_t join(uint32_t lo, uint32_t hi) { return uint64_t(lo) | (uint64_t(hi) << 32); }

TEST(Philox, MatchesRandom123KnownAnswers) {
  for (const Kat& k : kKats) {
    Philox4 r = philox4x32_10(join(k.ctr[0], k.ctr[1]), join(k.ctr[2], k.ctr[3]),
                              join(k.key[0], k.key[1]));
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(r.x[i], k.out[i]) << "word " << i << " for counter " << std::hex << k.ctr[0];
  }
}

TEST(Philox, FillsTakeLaneIModFourOfBlockIDivFour) {
  const uint64_t seed = 0x1234567890abcdefull, offset = 77;
  for (uint64_t i : {0ull, 1ull, 2ull, 3ull, 4ull, 1001ull, (1ull << 33) + 2}) {
    uint32_t lane = philox4x32_10(i / 4, offset, seed).x[i % 4];
    EXPECT_EQ(philox_uniform_at(seed, offset, i), float(lane >> 8) / 16777216.0f) << i;
  }
}

// Mean and variance of a sample, in double.
std::pair<double, double> moments(const std::vector<float>& v) {
  double s = 0, s2 = 0;
  for (float x : v) s += x;
  double mean = s / double(v.size());
  for (float x : v) s2 += (x - mean) * (x - mean);
  return {mean, s2 / double(v.size() - 1)};
}

constexpr int64_t kN = 1 << 20;

TEST(PhiloxStats, UniformMomentsAndHistogram) {
  Generator gen(2024);
  std::vector<float> u = Tensor::rand({kN}, gen).to_vector<float>();
  auto [mean, var] = moments(u);
  // 5 sigma: sd(mean) = sqrt(1/12 / n); sd(var) = sqrt((1/80 - 1/144) / n).
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / kN));
  EXPECT_NEAR(var, 1.0 / 12, 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / kN));
  // Chi-square over 64 equal bins: 63 degrees of freedom, mean 63, sd sqrt(126); allow 6 sd.
  std::vector<int64_t> bins(64, 0);
  for (float x : u) {
    ASSERT_GE(x, 0.0f);
    ASSERT_LT(x, 1.0f);
    bins[size_t(x * 64)]++;
  }
  double expect = double(kN) / 64, chi2 = 0;
  for (int64_t b : bins) chi2 += (double(b) - expect) * (double(b) - expect) / expect;
  EXPECT_LT(chi2, 63 + 6 * std::sqrt(126.0));
}

TEST(PhiloxStats, NormalMomentsAndOneSigmaMass) {
  Generator gen(7, 3);
  std::vector<float> z = Tensor::randn({kN}, gen).to_vector<float>();
  auto [mean, var] = moments(z);
  EXPECT_NEAR(mean, 0.0, 5 / std::sqrt(double(kN)));
  EXPECT_NEAR(var, 1.0, 5 * std::sqrt(2.0 / kN));
  int64_t inside = 0;
  for (float x : z) inside += std::fabs(x) < 1.0f;
  const double p = 0.6826894921370859;
  EXPECT_NEAR(double(inside) / kN, p, 5 * std::sqrt(p * (1 - p) / kN));
  // Box–Muller pairs are independent: lanes 0 and 1 of a block are uncorrelated.
  double c = 0;
  for (int64_t i = 0; i + 1 < kN; i += 4) c += double(z[size_t(i)]) * z[size_t(i + 1)];
  EXPECT_NEAR(c / (kN / 4), 0.0, 5 / std::sqrt(double(kN / 4)));
}

TEST(PhiloxStreams, OffsetsAndSeedsGiveDifferentStreamsSameStateRepeats) {
  auto draw = [](uint64_t seed, uint64_t offset) {
    Generator g(seed, offset);
    return Tensor::rand({4096}, g).to_vector<float>();
  };
  auto equal_count = [](const std::vector<float>& a, const std::vector<float>& b) {
    int64_t k = 0;
    for (size_t i = 0; i < a.size(); ++i) k += a[i] == b[i];
    return k;
  };
  std::vector<float> base = draw(42, 0);
  EXPECT_EQ(equal_count(base, draw(42, 0)), 4096);
  // Chance equality of 24-bit values: about 4096 / 2^24 expected; allow a few.
  EXPECT_LT(equal_count(base, draw(42, 1)), 4);
  EXPECT_LT(equal_count(base, draw(43, 0)), 4);
  EXPECT_LT(equal_count(base, draw(42, uint64_t(1) << 32)), 4);
  EXPECT_LT(equal_count(base, draw(uint64_t(42) | (uint64_t(1) << 32), 0)), 4);
  // One generator: each fill consumes an offset, so consecutive fills differ.
  Generator g(42);
  std::vector<float> f1 = Tensor::rand({4096}, g).to_vector<float>();
  std::vector<float> f2 = Tensor::rand({4096}, g).to_vector<float>();
  EXPECT_EQ(g.offset, 2u);
  EXPECT_EQ(equal_count(f1, base), 4096);
  EXPECT_LT(equal_count(f1, f2), 4);
}

TEST(PhiloxGpu, UniformFillIsBitIdenticalToCpu) {
  SL_REQUIRE_GPU();
  for (uint64_t offset : {0ull, 5ull, (1ull << 40) + 3}) {
    Generator gc(99, offset), gg(99, offset);
    Tensor c = Tensor::rand({kN + 3}, gc);
    Tensor g = Tensor::rand({kN + 3}, gg, DType::F32, Device::cuda(0));
    EXPECT_TRUE(test::AllEqual(g, c)) << "offset " << offset;
    // Also through a strided destination and a bf16 cast.
    Generator hc(99, offset), hg(99, offset);
    Tensor cb = Tensor::rand({129, 37}, hc, DType::BF16, Device::cpu(), -2, 3);
    Tensor gb = Tensor::rand({129, 37}, hg, DType::BF16, Device::cuda(0), -2, 3);
    EXPECT_TRUE(test::AllEqual(gb, cb));
  }
}

TEST(PhiloxGpu, NormalFillAgreesWithCpuToOneUlp) {
  SL_REQUIRE_GPU();
  Generator gc(5, 11), gg(5, 11);
  std::vector<float> c = Tensor::randn({kN}, gc).to_vector<float>();
  std::vector<float> g =
      Tensor::randn({kN}, gg, DType::F32, Device::cuda(0)).to(Device::cpu()).to_vector<float>();
  int64_t differ = 0;
  double max_diff = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i] == g[i]) continue;
    ++differ;
    double d = std::fabs(double(c[i]) - double(g[i]));
    max_diff = std::max(max_diff, d);
    // One float ulp at the value's magnitude: normals are rounded from double, so CPU and GPU
    // can disagree only where the double results straddle a float rounding boundary.
    float ulp = std::nextafter(std::fabs(c[i]), INFINITY) - std::fabs(c[i]);
    ASSERT_LE(d, double(ulp)) << "element " << i << ": cpu " << c[i] << ", gpu " << g[i];
  }
  std::printf("[ info ] normal fill: %lld of %lld elements differ between CPU and GPU, max |diff| "
              "%.3g\n",
              (long long)differ, (long long)c.size(), max_diff);
  // Bound stated by core/philox.h: disagreements are rare, not systematic.
  EXPECT_LE(differ, int64_t(c.size() / 10000));
}

}  // namespace
}  // namespace sl
