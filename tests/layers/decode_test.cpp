// Chunked prefill and decode against a KV cache (spec §12): for superlinear layers (balanced and
// upscaled presets, the upscaled float-p schedule with spans active, p = 1/2 and a float p, GQA
// group sizes 1 and 4, RoPE on and off) and dense attention (plain, sliding window, RoPE), the
// rows of prefill in chunks (7, 64, uneven) and of decode token by token equal the rows of the
// full forward; the cache's growth, views and errors; the same on the GPU in bf16. Mamba-2's
// recurrent state (conv and SSD) the same way.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "layers/attention.h"
#include "layers/kv_cache.h"
#include "layers/mamba2.h"
#include "layers/superlinear_attention.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"
#include "tests/layers/layer_check.h"

namespace sl::layers {
namespace {

constexpr int64_t kB = 2, kT = 300;

using test::error_of;

// One layer under test: its name, its model config and whether it is superlinear.
struct Case {
  std::string name;
  bool superlinear;
  kernels::SuperlinearConfig sl;
  int64_t n_heads, n_kv_heads;
  bool rope;
  int64_t window = 0;  // dense attention's sliding window
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

ModelConfig model_config(const Case& c, int64_t head_dim) {
  ModelConfig m;
  m.d_model = 16;
  m.attention.n_heads = c.n_heads;
  m.attention.n_kv_heads = c.n_kv_heads;
  m.attention.head_dim = head_dim;
  m.attention.bias = true;
  m.attention.rope = c.rope;
  m.attention.rope_theta = 1000.0;
  m.attention.sliding_window = c.window;
  m.superlinear = c.sl;
  return m;
}

// The two layer kinds behind one interface: forward on the whole sequence, and the cached path.
struct AnyLayer {
  std::unique_ptr<SuperlinearAttention> s;
  std::unique_ptr<Attention> a;

  Module& module() { return s ? static_cast<Module&>(*s) : *a; }
  Tensor forward(const Tensor& x) {
    ag::NoGradGuard no_grad;
    return s ? s->forward(ag::Var(x), {}).value() : a->forward(ag::Var(x), {}).value();
  }
  KvCache cache(int64_t capacity = 0) {
    return s ? s->make_cache(kB, capacity) : a->make_cache(kB, capacity);
  }
  Tensor chunk(const Tensor& x, KvCache& c) {
    return s ? s->prefill_chunk(x, c) : a->prefill_chunk(x, c);
  }
  Tensor step(const Tensor& x, KvCache& c) {
    return s ? s->decode_step(x, c) : a->decode_step(x, c);
  }
};

// The layer's parameters are drawn in f32, rounded to `round`, then cast to dt on dev.
AnyLayer make_layer(const Case& c, int64_t head_dim, Device dev, DType dt, DType round) {
  Generator gen(7);
  AnyLayer l;
  const ModelConfig m = model_config(c, head_dim);
  if (c.superlinear)
    l.s = std::make_unique<SuperlinearAttention>(m, gen);
  else
    l.a = std::make_unique<Attention>(m, gen);
  test::randomize(l.module(), 11, 0.3);
  l.module().to(Device::cpu(), round);
  l.module().to(dev, dt);
  return l;
}

// Runs x [B, T, C] through the cache in chunks of the given sizes (summing to T) and
// concatenates the outputs along time.
Tensor run_chunks(AnyLayer& l, const Tensor& x, const std::vector<int64_t>& sizes, KvCache& c) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  int64_t t = 0;
  for (int64_t n : sizes) {
    Tensor part = n == 1 ? l.step(x.slice(1, t, t + 1), c) : l.chunk(x.slice(1, t, t + n), c);
    y.slice(1, t, t + n).copy_(part);
    t += n;
    EXPECT_EQ(c.length(), t);
  }
  EXPECT_EQ(t, x.size(1));
  return y;
}

std::vector<int64_t> even_chunks(int64_t n, int64_t T) {
  std::vector<int64_t> s;
  for (int64_t t = 0; t < T; t += n) s.push_back(std::min(n, T - t));
  return s;
}

kernels::SuperlinearConfig with(kernels::SuperlinearConfig c, int64_t s) {
  c.s = s;
  return c;
}

const kernels::SuperlinearConfig kBalanced = kernels::SuperlinearConfig::balanced();
const kernels::SuperlinearConfig kUpscaled = kernels::SuperlinearConfig::upscaled();
// p = 0.6 (float path), q = 0.5, window W = o(2) - 1 = 2.
const kernels::SuperlinearConfig kFloatP{0, 0.6, 0.5, 1, 2, 2.0, 0.0};

const std::vector<Case> kCases = {
    {"balanced_gqa1", true, kBalanced, 4, 4, false},
    {"balanced_gqa4_rope", true, kBalanced, 4, 1, true},
    {"balanced_s2_gqa4", true, with(kBalanced, 2), 4, 1, false},
    // W = 2030 > T: every query is window (plain causal) attention.
    {"upscaled_gqa4", true, kUpscaled, 4, 1, true},
    // The upscaled schedule (p = q = 0.55, f_f = 1) with a short window, so spans are active.
    {"upscaled_s3_gqa1_rope", true, with(kUpscaled, 3), 4, 4, true},
    {"float_p_gqa4", true, kFloatP, 4, 1, false},
    {"dense_gqa4", false, kBalanced, 4, 1, false},
    {"dense_gqa1_rope", false, kBalanced, 4, 4, true},
    {"dense_window_gqa4_rope", false, kBalanced, 4, 1, true, 37},
};

class Decode : public ::testing::TestWithParam<Case> {};

// Note [decode tolerance]
// The cached path runs the forward's own kernels on fewer rows. Superlinear layers give the same
// bits on the CPU, and are checked exactly: every row is computed by the same operations in the
// same order (a row's projection is one dot product per output whose order does not depend on
// the number of rows at these sizes, RoPE is elementwise at the same f32 angle, and the CPU
// reference computes each query on its own over keys of identical values). Where the order does
// change, rows differ by rounding: the dense layer's CPU forward is a matmul/softmax composite
// while the cached path runs the flash reference, and the SSD scan splits each call into
// chunk_size chunks from its first token (exact again when every call boundary is a multiple of
// chunk_size). There the rule is the literal one of tests/common/tolerance.h: against the full
// forward of the same layer in f64 (the reference), the cached f32 rows may err at most twice
// as much as the full f32 forward.
void expect_rows_match(const Tensor& got, const Tensor& full32, const Tensor& full64, bool exact,
                       const std::string& what) {
  if (exact) {
    EXPECT_TRUE(test::AllEqual(got, full32)) << what;
  }
  EXPECT_TRUE(test::AllCloseToNaive(got, full32, full64, DType::F32)) << what;
}

TEST_P(Decode, ChunkedPrefillAndDecodeEqualTheFullForwardOnCpu) {
  const Case& c = GetParam();
  AnyLayer l32 = make_layer(c, 8, Device::cpu(), DType::F32, DType::F32);
  AnyLayer l64 = make_layer(c, 8, Device::cpu(), DType::F64, DType::F64);
  const Tensor x = test::randn({kB, kT, 16}, 5);
  const Tensor full32 = l32.forward(x), full64 = l64.forward(x.to(DType::F64));
  std::vector<std::pair<std::string, std::vector<int64_t>>> plans = {
      {"chunks of 7", even_chunks(7, kT)},
      {"chunks of 64", even_chunks(64, kT)},
      {"uneven chunks", {5, 100, 1, 33, 2, 64, 95}},
      {"decode token by token", even_chunks(1, kT)},
  };
  for (const auto& [what, sizes] : plans) {
    KvCache cache = l32.cache();
    const Tensor y = run_chunks(l32, x, sizes, cache);
    expect_rows_match(y, full32, full64, c.superlinear, what);
  }
}

TEST_P(Decode, CacheGrowthGivesTheSameRowsAsAPreallocatedCache) {
  const Case& c = GetParam();
  AnyLayer l = make_layer(c, 8, Device::cpu(), DType::F32, DType::F32);
  const Tensor x = test::randn({kB, 90, 16}, 9);
  KvCache small = l.cache(4), big = l.cache(90);
  const std::vector<int64_t> sizes = {3, 1, 1, 20, 1, 64};
  const Tensor a = run_chunks(l, x, sizes, small), b = run_chunks(l, x, sizes, big);
  EXPECT_GE(small.capacity(), 90);
  EXPECT_EQ(big.capacity(), 90);
  EXPECT_TRUE(test::AllEqual(a, b));
  EXPECT_TRUE(test::AllEqual(small.keys(), big.keys()));
  EXPECT_TRUE(test::AllEqual(small.values(), big.values()));
}

TEST_P(Decode, GpuBf16DecodeMatchesTheFullForward) {
  SL_REQUIRE_GPU();
  const Case& c = GetParam();
  const int64_t kD = 64, kTg = 160;  // head_dim 64: the dense layer runs the flash kernel
  AnyLayer gpu = make_layer(c, kD, Device::cuda(0), DType::BF16, DType::BF16);
  AnyLayer ref = make_layer(c, kD, Device::cpu(), DType::F32, DType::BF16);
  const Tensor x = test::randn({kB, kTg, 16}, 13).to(DType::BF16);
  const Tensor xg = x.to(Device::cuda(0));
  const Tensor full = gpu.forward(xg).to(Device::cpu());
  const Tensor full_ref = ref.forward(x.to(DType::F32));
  for (const auto& sizes : {even_chunks(1, kTg), std::vector<int64_t>{7, 64, 1, 88}}) {
    KvCache cache = gpu.cache();
    const Tensor y = run_chunks(gpu, xg, sizes, cache).to(Device::cpu());
    EXPECT_TRUE(test::AllCloseToNaive(y, full, full_ref, DType::BF16))
        << sizes.size() << " chunks";
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, Decode, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

// ---- the cache itself ----

TEST(KvCache, AppendGrowsByDoublingAndKeepsEveryToken) {
  for (KvLayout layout : {KvLayout::kHeadsFirst, KvLayout::kTimeFirst}) {
    const int td = layout == KvLayout::kHeadsFirst ? 2 : 1;
    KvCache c("Test", layout, 2, 3, 4, DType::F32, Device::cpu(), 2);
    auto chunk = [&](int64_t n, uint64_t seed) {
      Dims s = layout == KvLayout::kHeadsFirst ? Dims{2, 3, n, 4} : Dims{2, n, 3, 4};
      return test::randn(s, seed);
    };
    std::vector<Tensor> ks, vs;
    int64_t len = 0;
    for (int64_t n : {1, 1, 3, 9, 1}) {
      ks.push_back(chunk(n, 100 + len));
      vs.push_back(chunk(n, 200 + len));
      c.append(ks.back(), vs.back());
      len += n;
      EXPECT_EQ(c.length(), len);
    }
    // max(needed, 2 x capacity) on each growth: 2, 2, 5, 14, 28.
    EXPECT_EQ(c.capacity(), 28);
    int64_t t = 0;
    for (size_t i = 0; i < ks.size(); ++i) {
      const int64_t n = ks[i].size(td);
      EXPECT_TRUE(test::AllEqual(c.keys().slice(td, t, t + n), ks[i])) << "chunk " << i;
      EXPECT_TRUE(test::AllEqual(c.values().slice(td, t, t + n), vs[i])) << "chunk " << i;
      t += n;
    }
    c.clear();
    EXPECT_EQ(c.length(), 0);
    EXPECT_EQ(c.keys().size(td), 0);
  }
}

TEST(KvCache, AppendCastsToTheCacheDtype) {
  KvCache c("Test", KvLayout::kTimeFirst, 1, 1, 2, DType::F64, Device::cpu());
  const Tensor k = test::randn({1, 3, 1, 2}, 1);
  c.append(k, k);
  EXPECT_EQ(c.keys().dtype(), DType::F64);
  EXPECT_TRUE(test::AllEqual(c.keys(), k.to(DType::F64)));
}

TEST(KvCache, WrongShapesNameTheOwner) {
  KvCache c("SomeLayer", KvLayout::kHeadsFirst, 2, 3, 4, DType::F32, Device::cpu());
  const std::string m1 =
      error_of([&] { c.append(test::randn({2, 1, 3, 4}, 1), test::randn({2, 1, 3, 4}, 2)); });
  EXPECT_NE(m1.find("SomeLayer"), std::string::npos) << m1;
  EXPECT_NE(m1.find("[2, 3, Tc, 4]"), std::string::npos) << m1;
  const std::string m2 =
      error_of([&] { c.append(test::randn({2, 3, 1, 4}, 1), test::randn({2, 3, 2, 4}, 2)); });
  EXPECT_NE(m2.find("SomeLayer"), std::string::npos) << m2;
  EXPECT_EQ(c.length(), 0);
}

TEST(Decode, BadInputsAndForeignCachesNameTheLayer) {
  Generator gen(3);
  Case sc{"s", true, kBalanced, 4, 2, false};
  SuperlinearAttention s(model_config(sc, 8), gen);
  Attention a(model_config(sc, 8), gen);
  Case other = sc;
  other.n_kv_heads = 4;
  SuperlinearAttention s_other(model_config(other, 8), gen);
  const Tensor x = test::randn({1, 3, 16}, 1);
  struct Bad {
    std::string what, layer;
    std::function<void()> f;
  };
  KvCache sc_cache = s.make_cache(1), a_cache = a.make_cache(1), other_cache = s_other.make_cache(1);
  KvCache two_rows = s.make_cache(2);
  const std::vector<Bad> bad = {
      {"x not [B, T, d_model]", "SuperlinearAttention",
       [&] { s.prefill_chunk(test::randn({1, 3, 15}, 2), sc_cache); }},
      {"decode of two tokens", "SuperlinearAttention.decode_step",
       [&] { s.decode_step(x, sc_cache); }},
      {"f64 x for f32 params", "Attention.prefill_chunk",
       [&] { a.prefill_chunk(x.to(DType::F64), a_cache); }},
      {"cache of another layer size", "SuperlinearAttention.prefill_chunk",
       [&] { s.prefill_chunk(x, other_cache); }},
      {"cache of the dense layer", "SuperlinearAttention.prefill_chunk",
       [&] { s.prefill_chunk(x, a_cache); }},
      {"superlinear cache in the dense layer", "Attention.prefill_chunk",
       [&] { a.prefill_chunk(x, sc_cache); }},
      {"cache with another batch", "SuperlinearAttention.prefill_chunk",
       [&] { s.prefill_chunk(x, two_rows); }},
  };
  for (const Bad& b : bad) {
    const std::string msg = error_of(b.f);
    EXPECT_NE(msg.find(b.layer), std::string::npos) << b.what << ": " << msg;
  }
  EXPECT_EQ(sc_cache.length(), 0);  // nothing was appended by a rejected call
  EXPECT_EQ(a_cache.length(), 0);
}

// ---- Mamba-2 ----

constexpr double kNoClamp = std::numeric_limits<double>::infinity();

struct MambaCase {
  std::string name;
  int64_t groups, conv_kernel, chunk_size;
  double dt_limit_max;
};

std::ostream& operator<<(std::ostream& os, const MambaCase& c) {
  return os << c.name;
}

std::unique_ptr<Mamba2Mixer> make_mamba(const MambaCase& c, Device dev, DType dt, DType round) {
  ModelConfig m;
  m.d_model = 16;
  m.mamba.n_heads = 4;
  m.mamba.head_dim = 4;
  m.mamba.state_size = 8;
  m.mamba.n_groups = c.groups;
  m.mamba.conv_kernel = c.conv_kernel;
  m.mamba.chunk_size = c.chunk_size;
  m.mamba.use_bias = true;
  m.mamba.dt_limit_max = c.dt_limit_max;
  Generator gen(17);
  auto l = std::make_unique<Mamba2Mixer>(m, gen);
  test::randomize(*l, 23, 0.3);
  l->to(Device::cpu(), round);
  l->to(dev, dt);
  return l;
}

Tensor mamba_chunks(Mamba2Mixer& l, const Tensor& x, const std::vector<int64_t>& sizes,
                    Mamba2State& st) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  int64_t t = 0;
  for (int64_t n : sizes) {
    const Tensor xs = x.slice(1, t, t + n);
    y.slice(1, t, t + n).copy_(n == 1 ? l.decode_step(xs, st) : l.prefill_chunk(xs, st));
    t += n;
    EXPECT_EQ(st.length, t);
  }
  return y;
}

Tensor mamba_full(Mamba2Mixer& l, const Tensor& x) {
  ag::NoGradGuard no_grad;
  return l.forward(ag::Var(x), {}).value();
}

class MambaDecode : public ::testing::TestWithParam<MambaCase> {};

// Note [decode tolerance] applies: the SSD reference splits the sequence into chunk_size chunks
// from the start of each call, so a chunk boundary of the cached path moves the split.
TEST_P(MambaDecode, ChunkedPrefillAndDecodeEqualTheFullForwardOnCpu) {
  const MambaCase& c = GetParam();
  auto l32 = make_mamba(c, Device::cpu(), DType::F32, DType::F32);
  auto l64 = make_mamba(c, Device::cpu(), DType::F64, DType::F64);
  const Tensor x = test::randn({kB, kT, 16}, 29);
  const Tensor full32 = mamba_full(*l32, x), full64 = mamba_full(*l64, x.to(DType::F64));
  for (const auto& sizes :
       {even_chunks(7, kT), even_chunks(64, kT), std::vector<int64_t>{5, 100, 1, 33, 2, 64, 95},
        even_chunks(1, kT)}) {
    Mamba2State st = l32->make_state(kB);
    const Tensor y = mamba_chunks(*l32, x, sizes, st);
    bool aligned = true;  // every call but the last ends on a multiple of chunk_size
    int64_t t = 0;
    for (size_t i = 0; i + 1 < sizes.size(); ++i) aligned &= (t += sizes[i]) % c.chunk_size == 0;
    expect_rows_match(y, full32, full64, aligned, std::to_string(sizes.size()) + " chunks");
  }
}

TEST_P(MambaDecode, GpuBf16DecodeMatchesTheFullForward) {
  SL_REQUIRE_GPU();
  const MambaCase& c = GetParam();
  const int64_t kTg = 160;
  auto gpu = make_mamba(c, Device::cuda(0), DType::BF16, DType::BF16);
  auto ref = make_mamba(c, Device::cpu(), DType::F32, DType::BF16);
  const Tensor x = test::randn({kB, kTg, 16}, 31).to(DType::BF16);
  const Tensor xg = x.to(Device::cuda(0));
  const Tensor full = mamba_full(*gpu, xg).to(Device::cpu());
  const Tensor full_ref = mamba_full(*ref, x.to(DType::F32));
  for (const auto& sizes : {even_chunks(1, kTg), std::vector<int64_t>{7, 64, 1, 88}}) {
    Mamba2State st = gpu->make_state(kB);
    const Tensor y = mamba_chunks(*gpu, xg, sizes, st).to(Device::cpu());
    EXPECT_TRUE(test::AllCloseToNaive(y, full, full_ref, DType::BF16)) << sizes.size() << " chunks";
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, MambaDecode,
                         ::testing::Values(MambaCase{"groups1_k4", 1, 4, 16, kNoClamp},
                                           MambaCase{"groups2_k4_clamped", 2, 4, 64, 0.05},
                                           MambaCase{"groups2_k1", 2, 1, 32, kNoClamp}),
                         [](const auto& info) { return info.param.name; });

TEST(MambaDecode, BadInputsAndForeignStatesNameTheLayer) {
  const MambaCase c{"m", 1, 4, 16, kNoClamp};
  auto l = make_mamba(c, Device::cpu(), DType::F32, DType::F32);
  Mamba2State st = l->make_state(1);
  Mamba2State two = l->make_state(2);
  const Tensor x = test::randn({1, 3, 16}, 1);
  for (const auto& f : std::vector<std::function<void()>>{
           [&] { l->prefill_chunk(test::randn({1, 3, 8}, 2), st); },
           [&] { l->decode_step(x, st); },
           [&] { l->prefill_chunk(x, two); },
           [&] {
             Mamba2State none;
             l->prefill_chunk(x, none);
           }}) {
    const std::string msg = error_of(f);
    EXPECT_NE(msg.find("Mamba2Mixer"), std::string::npos) << msg;
  }
  EXPECT_EQ(st.length, 0);
}

}  // namespace
}  // namespace sl::layers
