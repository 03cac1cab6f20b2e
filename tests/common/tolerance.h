// The one tolerance rule of the test suite, and the comparison that reports mismatches.
//
// Note [tolerance rule]
// An output computed in precision P is compared with a reference computed in higher precision
// (f64, or f32 for bf16 outputs) on the same inputs. Element i passes when
//
//     |out_i - ref_i| <= 2 * eps(P) * sqrt(n_reduce) * (|ref_i| + rms(ref)) + atol
//
// eps(P) is the distance from 1 to the next number in P (f32 2^-23, bf16 2^-7, f16 2^-10, f64
// 2^-52); n_reduce is the length of the longest sum behind one output (K of a matmul, the row of a
// softmax; 1 for elementwise ops), whose rounding error grows like sqrt(n) for random data; the
// rms(ref) term keeps outputs that cancel to near zero from demanding more than their inputs'
// precision. The factor 2 is the flash-attention rule: a fused low-precision kernel may err at most
// twice as much as a naive one in the same precision. atol is 0 unless a test says why not.
//
// Where a naive implementation in the same precision exists (the CPU reference run on the same
// f32 inputs), AllCloseToNaive applies that rule literally instead: the max-norm error of `out`
// against the high-precision `ref` may be at most twice the max-norm error of `naive`, plus
// eps(P) * rms(ref). Use it for compositions whose conditioning the closed form above cannot
// know (an activation's derivative near a cancellation, a norm's gradient through its statistics).
// Integer outputs, and outputs that are exact in P (small integers), are compared exactly
// (AllEqual).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/tensor.h"

namespace sl::test {

struct Tol {
  DType precision = DType::F32;  // the lowest precision the computation under test used
  int64_t n_reduce = 1;
  double atol = 0;
  double factor = 1;  // multiplies the rule; > 1 only with a comment saying why
};

double eps(DType precision);

// Compares any two same-shape tensors (any device, any float dtype) under the rule.
::testing::AssertionResult AllClose(const Tensor& out, const Tensor& ref, const Tol& tol);
// The literal flash-attention rule: max|out - ref| <= 2 max|naive - ref| + eps(P) rms(ref).
::testing::AssertionResult AllCloseToNaive(const Tensor& out, const Tensor& naive,
                                           const Tensor& ref, DType precision);
// Exact comparison (integers, or values exactly representable in both).
::testing::AssertionResult AllEqual(const Tensor& out, const Tensor& ref);

// Fresh random inputs: N(0, 1) (or U[lo, hi)) in the given dtype and device.
Tensor randn(const Dims& shape, uint64_t seed, DType dtype = DType::F32,
             Device device = Device::cpu(), double std = 1.0);
// Packed-row document ids [b, t] int32 (CPU): per row increasing ids, documents of random
// lengths in [1, max_len].
Tensor random_seq_idx(int64_t b, int64_t t, int64_t max_len, uint64_t seed);
Tensor rand(const Dims& shape, uint64_t seed, double lo, double hi, DType dtype = DType::F32,
            Device device = Device::cpu());

}  // namespace sl::test
