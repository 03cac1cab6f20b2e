// Bound keys: how the stream search (kernels/superlinear_search_stream.cu) keeps its survivors'
// upper bounds and stripe indices in one 32-bit register each. Host and device functions, so that
// the encoding is tested on the CPU (tests/kernels/superlinear_bound_keys_test.cpp).
//
// Note [bound keys]
// The stream search's upper-bound list holds one 32-bit key per entry, not a (bound, anchor) pair:
// the bound's bits in an order-preserving unsigned form (ordered_bits: a < b exactly when
// ordered_bits(a) < ordered_bits(b) for non-NaN floats, -0 taken as +0), rounded up to a multiple
// of 2^bits, with the stripe index j in the low `bits` bits (bits = what the call's stripe count
// needs, key_bits; the anchor is t + 1 - o(s + 1 + j) from the stripe table). So:
// - a key is at least its bound's ordered bits: compared with ordered_bits(thr) in integers, every
//   candidate whose bound reaches thr stays, and the list only keeps more survivors than exact
//   bounds would;
// - keys order as their bounds do, up to ties within one rounding step (2^bits ulps);
// - a key near the top of the float range decodes past +inf: key_value saturates to +inf, which
//   only sends its row back to the bf16 search.
// Half the registers per entry, and one compare and two selects per slot, let the list hold 12
// entries where it held 8 (bound, anchor) pairs. H200, 64K GQA 1: rows whose list fills 11% ->
// 0.8%, the forward 5.29 -> 5.07 ms (results/2026-11-29-h200-forward-stages.md, session 17).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/macros.h"

namespace sl::kernels {

// Unsigned bits that order as the float does (non-NaN; -0 as +0).
SL_HD uint32_t ordered_bits(float f) {
  const uint32_t b = float_bits(f + 0.f);  // -0 + 0 = +0
  return (b & 0x80000000u) != 0u ? ~b : (b | 0x80000000u);
}

// The float whose ordered bits are u; keys past the ordered bits of +inf give +inf.
SL_HD float key_value(uint32_t u) {
  if (u >= 0xff800000u) return bits_float(0x7f800000u);
  return bits_float((u & 0x80000000u) != 0u ? (u & 0x7fffffffu) : ~u);
}

// The key of bound `hi` at stripe j < 2^bits, mask = 2^bits - 1: hi's ordered bits rounded up to
// a multiple of 2^bits, j in the low bits. hi must not be NaN; 0 is below every key (an empty
// slot).
SL_HD uint32_t bound_key(float hi, uint32_t j, uint32_t mask) {
  const uint32_t o = ordered_bits(hi);
  // +inf (0xff800000) and everything below it rounds up without wrapping for bits <= 23.
  return ((o + mask) & ~mask) | j;
}

SL_HD uint32_t key_stripe(uint32_t key, uint32_t mask) {
  return key & mask;
}

// Bits for stripe indices 0 .. n - 1: the least b >= 1 with 2^b >= n.
inline int key_bits(int64_t n) {
  int b = 1;
  while (b < 62 && (int64_t(1) << b) < n) ++b;
  return b;
}

// The stream search gives the stripe index at most this many bits (2^16 stripes: 4G keys at
// p = 1/2), so a key's rounding stays within 2^16 ulps (relative 2^-7 of the bound at worst).
constexpr int kMaxKeyBits = 16;

}  // namespace sl::kernels
