// The GPU-against-CPU check shared by the layer tests. A layer is built several times from the
// same seed (so every copy has the same parameters), moved to a device and dtype, run forward on
// the same input and backward with the same output gradient; the GPU run is compared with the
// CPU under the literal flash-attention rule (test::AllCloseToNaive):
//   f32:  GPU f32 against the CPU in f32 (the naive run) and in f64 (the reference);
//   bf16: GPU bf16 against the CPU in bf16 (naive) and the CPU in f32 on the same bf16-rounded
//         parameters and input (reference).
// Output, input gradient and every parameter gradient are compared (a parameter with no
// gradient, e.g. an expert that received no token, must have none on both devices).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/variable.h"
#include "layers/module.h"
#include "tests/common/tolerance.h"

namespace sl::test {

// The message of the sl::Error that f throws, "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Every parameter of `m` set to N(0, std^2) draws, seeds seed, seed + 1, ... in name order.
inline void randomize(layers::Module& m, uint64_t seed, double std = 0.5) {
  for (auto& [n, v] : m.named_parameters())
    v.set_value(randn(v.shape(), seed++, v.dtype(), v.device(), std));
}

struct LayerRun {
  Tensor y, dx;
  std::vector<std::pair<std::string, Tensor>> grads;
};

template <class M>
using MakeLayer = std::function<std::unique_ptr<M>()>;
template <class M>
using LayerFwd = std::function<ag::Var(M&, const ag::Var&)>;

// Runs a fresh layer on (dev, dt); its parameters and x are first converted to `round` (so
// round = bf16, dt = f32 gives an f32 run on bf16-rounded values).
template <class M>
LayerRun run_layer(const MakeLayer<M>& make, const LayerFwd<M>& fwd, const Tensor& x,
                   const Tensor& gy, Device dev, DType dt, DType round) {
  std::unique_ptr<M> m = make();
  m->to(Device::cpu(), round);
  m->to(dev, dt);
  ag::Var xv(x.to(round).to(dt).to(dev), true, "x");
  ag::Var y = fwd(*m, xv);
  if (!gy.defined()) return LayerRun{y.value(), Tensor(), {}};  // forward only (shape probe)
  y.backward(gy.to(y.dtype()).to(dev));
  LayerRun r{y.value(), xv.grad(), {}};
  for (auto& [name, p] : m->named_parameters()) r.grads.emplace_back(name, p.grad());
  return r;
}

template <class M>
void expect_gpu_matches_cpu(const MakeLayer<M>& make, const LayerFwd<M>& fwd, const Dims& x_shape,
                            DType dt, uint64_t seed) {
  const Device gpu = Device::cuda(0), cpu = Device::cpu();
  Tensor x = randn(x_shape, seed);
  LayerRun probe = run_layer<M>(make, fwd, x, Tensor(), cpu, DType::F32, DType::F32);
  Tensor gy = randn(probe.y.shape(), seed + 1);
  const bool low = dt != DType::F32;
  LayerRun out = run_layer<M>(make, fwd, x, gy, gpu, dt, dt);
  LayerRun naive = run_layer<M>(make, fwd, x, gy, cpu, dt, dt);
  LayerRun ref = low ? run_layer<M>(make, fwd, x, gy, cpu, DType::F32, dt)
                     : run_layer<M>(make, fwd, x, gy, cpu, DType::F64, DType::F64);
  EXPECT_TRUE(AllCloseToNaive(out.y, naive.y, ref.y, dt)) << "output";
  EXPECT_TRUE(AllCloseToNaive(out.dx, naive.dx, ref.dx, dt)) << "d input";
  ASSERT_EQ(out.grads.size(), ref.grads.size());
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    const std::string& name = ref.grads[i].first;
    const Tensor &o = out.grads[i].second, &n = naive.grads[i].second, &r = ref.grads[i].second;
    ASSERT_EQ(o.defined(), r.defined()) << name;
    ASSERT_EQ(n.defined(), r.defined()) << name;
    if (r.defined()) {
      EXPECT_TRUE(AllCloseToNaive(o, n, r, dt)) << "d " << name;
    }
  }
}

}  // namespace sl::test
