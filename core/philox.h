// Philox4x32-10 counter-based random numbers, identical on host and device.
//
// A draw is a pure function of (seed, offset, element index): element i of a fill with
// Generator state (seed, offset) takes lane i % 4 of philox(counter = {i / 4, offset}, key = seed).
// So CPU and GPU produce the same uint32 streams and the same uniforms bit for bit; normals come
// from Box–Muller computed in double on both sides and rounded to float, which agrees to the last
// bit except where the platforms' log/sin/cos differ in the final double ulp (the test states the
// bound). Every fill consumes one offset, so two fills never reuse a counter.
#pragma once

#include <cstdint>

#include "core/macros.h"

#if defined(__CUDA_ARCH__)
#define SL_MULHI32(a, b) __umulhi(a, b)
#else
#define SL_MULHI32(a, b) uint32_t((uint64_t(a) * uint64_t(b)) >> 32)
#endif

namespace sl {

struct Philox4 {
  uint32_t x[4];
};

SL_HD Philox4 philox4x32_10(uint64_t block, uint64_t offset, uint64_t seed) {
  uint32_t c0 = uint32_t(block), c1 = uint32_t(block >> 32);
  uint32_t c2 = uint32_t(offset), c3 = uint32_t(offset >> 32);
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
SL_UNROLL
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0 = SL_MULHI32(kM0, c0), lo0 = kM0 * c0;
    uint32_t hi1 = SL_MULHI32(kM1, c2), lo1 = kM1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kW0, k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits: exact in float, so identical everywhere.
SL_HD float philox_uniform(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

// Element i of a uniform fill.
SL_HD float philox_uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  return philox_uniform(philox4x32_10(i >> 2, offset, seed).x[i & 3]);
}

}  // namespace sl
