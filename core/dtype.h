// Element types: the five storage dtypes of the framework, plus f64 for CPU references.
//
// bf16 and f16 are stored as raw 16-bit patterns (layout-compatible with CUDA's __nv_bfloat16 and
// __half) so host code never needs CUDA headers. Conversions round to nearest even, the same rule
// as the hardware, so CPU and GPU agree bit for bit on casts. f64 exists only on the CPU: it is what
// the gradient checker and the reference kernels use (STYLE.md rule 3).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "core/macros.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace sl {

enum class DType : uint8_t { F32, BF16, F16, I32, I64, F64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...
bool dtype_is_float(DType t);
// Parses "f32", "bf16", "f16", "i32", "i64", "f64"; returns false for anything else.
bool dtype_from_name(const std::string& name, DType* out);

SL_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
SL_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

// Round to nearest even; NaN stays a (quiet) NaN.
SL_HD bf16 float_to_bf16(float f) {
#if defined(__CUDA_ARCH__)
  return bf16{__bfloat16_as_ushort(__float2bfloat16_rn(f))};
#else
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
#endif
}
SL_HD float bf16_to_float(bf16 h) { return bits_float(uint32_t(h.bits) << 16); }

SL_HD f16 float_to_f16(float f) {
#if defined(__CUDA_ARCH__)
  return f16{__half_as_ushort(__float2half_rn(f))};
#else
  uint32_t u = float_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16{uint16_t(sign | 0x7e00u)};       // NaN
  if (a >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};      // overflow -> inf
  if (a < 0x38800000u) {                                            // subnormal or zero in f16
    // value = a_float; f16 subnormal unit is 2^-24. Shift the mantissa with RNE.
    int e = int(a >> 23);
    if (e < 102) return f16{uint16_t(sign)};                        // < 2^-25: rounds to 0
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - e;                                            // 14..24
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return f16{uint16_t(sign | q)};
  }
  uint32_t r = a - 0x38000000u;                                     // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return f16{uint16_t(sign | (r >> 13))};
#endif
}
SL_HD float f16_to_float(f16 h) {
  uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  uint32_t e = (h.bits >> 10) & 0x1fu;
  uint32_t m = h.bits & 0x3ffu;
  if (e == 0) {
    if (m == 0) return bits_float(sign);
    float v = float(m) * (1.0f / 16777216.0f);                      // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112) << 23) | (m << 13));
}

// Scalar traits used by templated CPU kernels: the storage type T and its compute type.
template <class T> struct ScalarTraits;
template <> struct ScalarTraits<float> {
  using compute = float;
  static constexpr DType dtype = DType::F32;
  static SL_HD float to_compute(float v) { return v; }
  static SL_HD float from_compute(float v) { return v; }
};
template <> struct ScalarTraits<double> {
  using compute = double;
  static constexpr DType dtype = DType::F64;
  static SL_HD double to_compute(double v) { return v; }
  static SL_HD double from_compute(double v) { return v; }
};
template <> struct ScalarTraits<bf16> {
  using compute = float;
  static constexpr DType dtype = DType::BF16;
  static SL_HD float to_compute(bf16 v) { return bf16_to_float(v); }
  static SL_HD bf16 from_compute(float v) { return float_to_bf16(v); }
};
template <> struct ScalarTraits<f16> {
  using compute = float;
  static constexpr DType dtype = DType::F16;
  static SL_HD float to_compute(f16 v) { return f16_to_float(v); }
  static SL_HD f16 from_compute(float v) { return float_to_f16(v); }
};
template <> struct ScalarTraits<int32_t> {
  using compute = int32_t;
  static constexpr DType dtype = DType::I32;
  static SL_HD int32_t to_compute(int32_t v) { return v; }
  static SL_HD int32_t from_compute(int32_t v) { return v; }
};
template <> struct ScalarTraits<int64_t> {
  using compute = int64_t;
  static constexpr DType dtype = DType::I64;
  static SL_HD int64_t to_compute(int64_t v) { return v; }
  static SL_HD int64_t from_compute(int64_t v) { return v; }
};

}  // namespace sl
