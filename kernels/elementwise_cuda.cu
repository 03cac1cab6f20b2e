// CUDA elementwise kernels: unary forward/backward and broadcasting binary ops, f32 and bf16,
// computed in f32.
//
// Note [elementwise paths]
// The launcher first coalesces the output's dims (drops size-1 dims, merges neighbours that are
// contiguous in every operand), then picks one of three kernels:
//  (1) contiguous: every operand is one dense run with 16-byte aligned pointers. Each thread moves
//      16-byte packs (8 bf16 or 4 f32), kUnroll packs in flight; the last n % V elements are done
//      one by one. No index math.
//  (2) inner-vectorized: the innermost dim is a multiple of V, every input reads it with stride 1
//      (a pack) or 0 (one value broadcast to the pack), and the pack starts stay 16-byte aligned.
//      Index math runs once per pack. This is the row-broadcast case: [R, C] * [C], [R, C] + [R,
//      1].
//  (3) strided: anything else (misaligned views, transposes), one element per step.
// Paths (2) and (3) keep kUnroll steps per thread in flight.
// The op switch runs once per pack (apply()), never per lane. For bf16, SiLU and sigmoid (forward
// and backward) use __expf / __fdividef: the result is rounded to bf16 (2^-8) and the intrinsics
// err by ~2^-22, while precise expf and IEEE division made the bf16 SiLU instruction-bound (8
// lanes per 16-byte pack). f32 keeps the precise math of the CPU reference.
#include <algorithm>
#include <type_traits>

#include "core/cuda_context.h"
#include "kernels/dispatch.h"
#include "kernels/elementwise.h"

namespace sl::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 2;

template <class T>
constexpr int kVec = int(16 / sizeof(T));

// bf16 outputs round to 2^-8: the hot activations may use fast-math intrinsics there.
template <class T>
constexpr bool kFast = std::is_same_v<T, bf16>;

template <class T>
struct alignas(16) Pack {
  T v[kVec<T>];
};

template <class T>
__device__ __forceinline__ float to_f(T v) {
  return float(ScalarTraits<T>::to_compute(v));
}
template <class T>
__device__ __forceinline__ T from_f(float v) {
  return ScalarTraits<T>::from_compute(v);
}

// sigmoid with __expf and __fdividef (each within 2 ulp of f32 for these arguments: the exponent
// is <= 0 and the divisor in [1, 2]), for bf16 outputs only (see Note [elementwise paths]).
__device__ __forceinline__ float fast_sigmoid(float x) {
  float e = __expf(-fabsf(x));
  return __fdividef(x >= 0.f ? 1.f : e, 1.f + e);
}

// SiLU and sigmoid (forward and backward) in fast math into `out`; false for every other op,
// which then takes the precise path.
template <EwKind K, int O>
__device__ __forceinline__ bool eval_fast(float a, float b, float& out) {
  if constexpr (O == int(UnaryOp::Silu) || O == int(UnaryOp::Sigmoid)) {
    float s = fast_sigmoid(a);
    if constexpr (K == EwKind::UnaryFwd) {
      out = O == int(UnaryOp::Silu) ? a * s : s;
      return true;
    } else if constexpr (K == EwKind::UnaryBwd) {
      out = O == int(UnaryOp::Silu) ? b * s * (1.f + a * (1.f - s)) : b * s * (1.f - s);
      return true;
    }
  }
  (void)a, (void)b, (void)out;
  return false;
}

template <EwKind K, int O, bool kFast>
__device__ __forceinline__ float eval(float a, float b, float alpha) {
  if constexpr (kFast && K != EwKind::Binary) {
    float r;
    if (eval_fast<K, O>(a, b, r)) return r;
  }
  if constexpr (K == EwKind::UnaryFwd) {
    return ew::unary_fwd(UnaryOp(O), a, alpha);
  } else if constexpr (K == EwKind::UnaryBwd) {
    return ew::unary_bwd(UnaryOp(O), a, b, alpha);
  } else {
    return ew::binary(BinaryOp(O), a, b);
  }
}

#define SL_EW_CASE(O)                                                                          \
  case O:                                                                                      \
    _Pragma("unroll") for (int v = 0; v < V; ++v) a[v] = eval<K, O, kFast>(a[v], b[v], alpha); \
    break;

// a[v] = op(a[v], b[v]) for the V lanes of one pack.
template <EwKind K, int V, bool kFast>
__device__ __forceinline__ void apply(uint8_t op, float alpha, float (&a)[V], const float (&b)[V]) {
  if constexpr (K == EwKind::Binary) {
    switch (op) { SL_EW_CASE(0) SL_EW_CASE(1) SL_EW_CASE(2) SL_EW_CASE(3) }
  } else {
    switch (op) {
      SL_EW_CASE(0)
      SL_EW_CASE(1)
      SL_EW_CASE(2) SL_EW_CASE(3) SL_EW_CASE(4) SL_EW_CASE(5) SL_EW_CASE(6) SL_EW_CASE(7)
          SL_EW_CASE(8) SL_EW_CASE(9) SL_EW_CASE(10)
    }
  }
}
#undef SL_EW_CASE

// Path (1): dense operands, 16-byte packs.
template <class T, EwKind K>
__global__ void __launch_bounds__(kThreads)
    ew_contiguous(T* __restrict__ out, const T* __restrict__ in0, const T* __restrict__ in1,
                  int64_t n, uint8_t op, float alpha) {
  constexpr int V = kVec<T>;
  constexpr bool kTwo = K != EwKind::UnaryFwd;
  const int64_t npack = n / V;
  const int64_t step = int64_t(gridDim.x) * kThreads * kUnroll;
  for (int64_t base = int64_t(blockIdx.x) * kThreads * kUnroll + threadIdx.x; base < npack;
       base += step) {
    Pack<T> pa[kUnroll], pb[kUnroll];
    _Pragma("unroll") for (int u = 0; u < kUnroll; ++u) {
      int64_t i = base + u * kThreads;
      if (i < npack) {
        pa[u] = reinterpret_cast<const Pack<T>*>(in0)[i];
        if constexpr (kTwo) pb[u] = reinterpret_cast<const Pack<T>*>(in1)[i];
      }
    }
    _Pragma("unroll") for (int u = 0; u < kUnroll; ++u) {
      int64_t i = base + u * kThreads;
      if (i >= npack) continue;
      float a[V], b[V];
      _Pragma("unroll") for (int v = 0; v < V; ++v) {
        a[v] = to_f(pa[u].v[v]);
        b[v] = kTwo ? to_f(pb[u].v[v]) : 0.f;
      }
      apply<K, V, kFast<T>>(op, alpha, a, b);
      Pack<T> po;
      _Pragma("unroll") for (int v = 0; v < V; ++v) po.v[v] = from_f<T>(a[v]);
      reinterpret_cast<Pack<T>*>(out)[i] = po;
    }
  }
  int64_t i = npack * V + int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) {
    float a[1] = {to_f(in0[i])}, b[1] = {kTwo ? to_f(in1[i]) : 0.f};
    apply<K, 1, kFast<T>>(op, alpha, a, b);
    out[i] = from_f<T>(a[0]);
  }
}

// The coalesced output shape and each input's strides, in elements. For path (2) the innermost
// dim counts packs and its strides are V (a pack) or 0 (a broadcast value).
struct EwLayout {
  int n;
  int64_t shape[kMaxDims];
  int64_t st0[kMaxDims];
  int64_t st1[kMaxDims];
};

// Storage offsets (in elements) of step i in both inputs.
__device__ __forceinline__ void offsets(const EwLayout& L, int64_t i, int64_t& o0, int64_t& o1) {
  int64_t lin = i;
  o0 = 0;
  o1 = 0;
  for (int d = L.n - 1; d > 0; --d) {
    int64_t q = lin / L.shape[d];
    int64_t idx = lin - q * L.shape[d];
    lin = q;
    o0 += idx * L.st0[d];
    o1 += idx * L.st1[d];
  }
  o0 += lin * L.st0[0];
  o1 += lin * L.st1[0];
}

// V values starting at p: a 16-byte pack, or (V == 1 or !pack) one value repeated.
template <class T, int V>
__device__ __forceinline__ void load_values(const T* p, bool pack, T (&out)[V]) {
  if constexpr (V > 1) {
    if (pack) {
      Pack<T> pk = *reinterpret_cast<const Pack<T>*>(p);
      _Pragma("unroll") for (int v = 0; v < V; ++v) out[v] = pk.v[v];
      return;
    }
  }
  T s = *p;
  _Pragma("unroll") for (int v = 0; v < V; ++v) out[v] = s;
}

// Paths (2) (V = pack width) and (3) (V = 1): `count` steps of V output elements each, kUnroll
// steps per thread in flight.
template <class T, EwKind K, int V>
__global__ void __launch_bounds__(kThreads)
    ew_strided(T* __restrict__ out, const T* __restrict__ in0, const T* __restrict__ in1,
               EwLayout L, int64_t count, bool pack0, bool pack1, uint8_t op, float alpha) {
  constexpr bool kTwo = K != EwKind::UnaryFwd;
  const int64_t step = int64_t(gridDim.x) * kThreads * kUnroll;
  for (int64_t base = int64_t(blockIdx.x) * kThreads * kUnroll + threadIdx.x; base < count;
       base += step) {
    T ra[kUnroll][V], rb[kUnroll][V];
    _Pragma("unroll") for (int u = 0; u < kUnroll; ++u) {
      int64_t i = base + u * kThreads;
      if (i >= count) continue;
      int64_t o0, o1;
      offsets(L, i, o0, o1);
      load_values<T, V>(in0 + o0, pack0, ra[u]);
      if constexpr (kTwo) load_values<T, V>(in1 + o1, pack1, rb[u]);
    }
    _Pragma("unroll") for (int u = 0; u < kUnroll; ++u) {
      int64_t i = base + u * kThreads;
      if (i >= count) continue;
      float a[V], b[V];
      _Pragma("unroll") for (int v = 0; v < V; ++v) {
        a[v] = to_f(ra[u][v]);
        b[v] = kTwo ? to_f(rb[u][v]) : 0.f;
      }
      apply<K, V, kFast<T>>(op, alpha, a, b);
      if constexpr (V == 1) {
        out[i] = from_f<T>(a[0]);
      } else {
        Pack<T> po;
        _Pragma("unroll") for (int v = 0; v < V; ++v) po.v[v] = from_f<T>(a[v]);
        reinterpret_cast<Pack<T>*>(out)[i] = po;
      }
    }
  }
}

// Drops size-1 dims and merges neighbours that are contiguous in both inputs (the output is
// contiguous, so it never blocks a merge).
EwLayout coalesce(const ElementwiseParams& p, bool two) {
  EwLayout L{};
  for (int d = 0; d < p.shape.n; ++d) {
    int64_t s = p.shape[d], a = p.in0_strides[d], b = two ? p.in1_strides[d] : 0;
    if (s == 1) continue;
    int k = L.n - 1;
    if (k >= 0 && L.st0[k] == a * s && L.st1[k] == b * s) {
      L.shape[k] *= s;
      L.st0[k] = a;
      L.st1[k] = b;
    } else {
      L.shape[L.n] = s;
      L.st0[L.n] = a;
      L.st1[L.n] = b;
      L.n++;
    }
  }
  if (L.n == 0) {  // a single element
    L.n = 1;
    L.shape[0] = 1;
    L.st0[0] = L.st1[0] = 1;
  }
  return L;
}

bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

int grid_for(int64_t work, int device) {
  int64_t cap = int64_t(cuda::properties(device).multiProcessorCount) * (2048 / kThreads) * 4;
  return int(std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, cap)));
}

template <class T, EwKind K>
void launch(const ElementwiseParams& p, int device, cudaStream_t s) {
  constexpr int V = kVec<T>;
  constexpr bool kTwo = K != EwKind::UnaryFwd;
  T* out = static_cast<T*>(p.out);
  const T* in0 = static_cast<const T*>(p.in0);
  const T* in1 = kTwo ? static_cast<const T*>(p.in1) : nullptr;
  EwLayout L = coalesce(p, kTwo);
  int last = L.n - 1;
  bool ptrs_aligned = aligned16(out) && aligned16(in0) && (!kTwo || aligned16(in1));

  // (1) contiguous.
  if (L.n == 1 && L.st0[0] == 1 && (!kTwo || L.st1[0] == 1) && ptrs_aligned) {
    ew_contiguous<T, K>
        <<<grid_for((p.n / V + kUnroll - 1) / kUnroll + 1, device), kThreads, 0, s>>>(
            out, in0, in1, p.n, p.op, p.alpha);
    SL_CUDA_LAUNCH_CHECK();
    return;
  }

  // (2) inner-vectorized: pack starts must be 16-byte aligned for every input read by packs.
  auto packable = [&](const int64_t* st, const T* ptr) {
    if (st[last] == 0) return true;
    if (st[last] != 1 || !aligned16(ptr)) return false;
    for (int d = 0; d < last; ++d)
      if (st[d] % V != 0) return false;
    return true;
  };
  bool inner_ok = L.shape[last] % V == 0 && (L.st0[last] == 0 || L.st0[last] == 1) &&
                  (!kTwo || L.st1[last] == 0 || L.st1[last] == 1);
  if (inner_ok && aligned16(out) && packable(L.st0, in0) && (!kTwo || packable(L.st1, in1))) {
    bool pack0 = L.st0[last] == 1, pack1 = kTwo && L.st1[last] == 1;
    L.shape[last] /= V;
    L.st0[last] *= V;
    L.st1[last] *= V;
    int64_t count = p.n / V;
    ew_strided<T, K, V><<<grid_for((count + kUnroll - 1) / kUnroll, device), kThreads, 0, s>>>(
        out, in0, in1, L, count, pack0, pack1, p.op, p.alpha);
    SL_CUDA_LAUNCH_CHECK();
    return;
  }

  // (3) strided.
  ew_strided<T, K, 1><<<grid_for((p.n + kUnroll - 1) / kUnroll, device), kThreads, 0, s>>>(
      out, in0, in1, L, p.n, false, false, p.op, p.alpha);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void elementwise_cuda(const ElementwiseParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "elementwise", T, {
    switch (p.kind) {
      case EwKind::UnaryFwd:
        launch<T, EwKind::UnaryFwd>(p, device, s);
        break;
      case EwKind::UnaryBwd:
        launch<T, EwKind::UnaryBwd>(p, device, s);
        break;
      case EwKind::Binary:
        launch<T, EwKind::Binary>(p, device, s);
        break;
    }
  });
}

}  // namespace sl::kernels
