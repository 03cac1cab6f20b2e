// Parity with Hugging Face transformers: the tiny NemotronH of tests/fixtures/nemotron_h_tiny
// (M * - M E blocks, made and run by make_nemotron_h_fixture.py, see the README there) loaded
// with load_hf_model and run on the fixture's batch, against transformers' logits, loss and
// every parameter gradient.
//
// Metrics: logits by max |ours - ref| <= tol * max |ref|; the loss by |ours - ref| <= tol *
// |ref|; each gradient by the relative norm ||ours - ref|| / ||ref|| (Frobenius, per tensor).
// CPU f32: 1e-4 for logits and loss, 1e-3 for gradients. GPU bf16 (parameters and activations
// in bf16, f32 accumulation; transformers' reference is f32): the literal bf16 rule against our
// CPU run in bf16 (GpuBf16MatchesTransformers). Fixed bounds were tried first and failed on an
// H100 (logits 6.2e-2 of 0.93, MoE expert gradients 12-19%): bf16 roundings move router
// scores by more than the fixture's 2e-3 tie margin, so the reference for "how close can bf16
// be" has to be measured, not guessed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "layers/hf_checkpoint.h"
#include "tests/common/gpu.h"

namespace sl::layers {
namespace {

namespace fs = std::filesystem;

std::string fixture_dir() {
  const std::string file = __FILE__;
  return file.substr(0, file.rfind("/tests/")) + "/tests/fixtures/nemotron_h_tiny";
}

struct Reference {
  SafetensorsData data;
  const Tensor& get(const std::string& name) const {
    const Tensor* t = data.find(name);
    SL_CHECK(t) << "reference.safetensors has no tensor " << name;
    return *t;
  }
};

Reference load_reference() {
  StatusOr<SafetensorsData> r =
      read_safetensors((fs::path(fixture_dir()) / "reference.safetensors").string());
  SL_CHECK(r.ok()) << r.status().message();
  return Reference{std::move(r.value())};
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

std::vector<double> as_doubles(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
}

// The errors of one run of the fixture's batch against transformers' f32 reference.
struct ParityErrors {
  double loss = 0, ref_loss = 0;         // |ours - ref| and |ref| of the loss
  double logits = 0, max_ref_logit = 0;  // max |ours - ref| and max |ref| over the logits
  std::map<std::string, double> grads;   // ||ours - ref|| / ||ref|| per parameter
};

// Runs the fixture's batch through the model loaded on `device` in `dtype`.
ParityErrors run_parity(Device device, DType dtype) {
  ParityErrors e;
  Reference ref = load_reference();
  StatusOr<std::unique_ptr<HybridLM>> loaded = load_hf_model(fixture_dir(), device, dtype);
  SL_CHECK(loaded.ok()) << loaded.status().message();
  HybridLM& model = *loaded.value();
  const Tensor ids = ref.get("input_ids").to(device);
  const Tensor targets = ref.get("targets").to(device);

  LmLoss loss = model.loss(ids, targets);
  loss.total.backward();
  e.ref_loss = std::abs(ref.get("loss").to(DType::F64).item());
  e.loss =
      std::abs(loss.total.value().to(DType::F64).item() - ref.get("loss").to(DType::F64).item());

  std::vector<double> ours = as_doubles(model.forward(ids).value());
  std::vector<double> want = as_doubles(ref.get("logits"));
  SL_CHECK(ours.size() == want.size()) << "logits size";
  for (size_t i = 0; i < want.size(); ++i) {
    e.max_ref_logit = std::max(e.max_ref_logit, std::abs(want[i]));
    e.logits = std::max(e.logits, std::abs(ours[i] - want[i]));
  }

  size_t compared = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    const Tensor* g_ref = ref.data.find("grad." + name);
    if (name.find("e_score_correction_bias") != std::string::npos) {
      EXPECT_EQ(g_ref, nullptr) << name << ": a buffer in transformers, no gradient";
      EXPECT_FALSE(p.grad().defined()) << name;
      continue;
    }
    SL_CHECK(g_ref != nullptr) << "no reference gradient for " << name;
    std::vector<double> r = as_doubles(*g_ref);
    // An expert that received no token has no gradient here, zeros in transformers.
    std::vector<double> o =
        p.grad().defined() ? as_doubles(p.grad()) : std::vector<double>(r.size());
    SL_CHECK(o.size() == r.size()) << name;
    std::vector<double> diff(r.size());
    for (size_t i = 0; i < r.size(); ++i) diff[i] = o[i] - r[i];
    const double ref_norm = norm(r), err = norm(diff);
    e.grads[name] = ref_norm == 0 ? (err <= 1e-12 ? 0.0 : INFINITY) : err / ref_norm;
    ++compared;
  }
  size_t ref_grads = 0;
  for (const auto& [name, t] : ref.data.tensors) ref_grads += name.rfind("grad.", 0) == 0;
  EXPECT_EQ(compared, ref_grads) << "every reference gradient belongs to a parameter";
  return e;
}

TEST(HfParity, FixtureConfigMapsOntoOurs) {
  StatusOr<ModelConfig> c = read_hf_config(fixture_dir());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c.value().pattern, "M*-ME");
  EXPECT_EQ(c.value().d_model, 128);
  EXPECT_EQ(c.value().mamba.n_groups, 2);
  EXPECT_EQ(c.value().mamba.chunk_size, 8);
  EXPECT_DOUBLE_EQ(c.value().moe.routed_scaling_factor, 1.5);
}

TEST(HfParity, CpuF32MatchesTransformers) {
  const ParityErrors e = run_parity(Device::cpu(), DType::F32);
  EXPECT_LE(e.loss, 1e-4 * e.ref_loss);
  EXPECT_LE(e.logits, 1e-4 * e.max_ref_logit)
      << "logits: max |ours - ref| " << e.logits << ", max |ref| " << e.max_ref_logit;
  for (const auto& [name, rel] : e.grads)
    EXPECT_LE(rel, 1e-3) << name << ": ||ours - ref|| / ||ref|| = " << rel;
}

// Our CPU kernels on bf16 weights: the "naive same precision" run the GPU test measures itself
// against. Bounded loosely here so that a broken CPU bf16 path cannot make the GPU rule vacuous.
TEST(HfParity, CpuBf16IsCloseToTransformers) {
  const ParityErrors e = run_parity(Device::cpu(), DType::BF16);
  std::printf("CPU bf16 vs transformers f32: loss %.3g of %.3g, logits max %.3g of %.3g\n", e.loss,
              e.ref_loss, e.logits, e.max_ref_logit);
  double worst = 0;
  for (const auto& [name, rel] : e.grads) worst = std::max(worst, rel);
  std::printf("CPU bf16 worst gradient relative error %.3g\n", worst);
  EXPECT_LE(e.logits, 0.25 * e.max_ref_logit);
  EXPECT_LE(e.loss, 0.05 * e.ref_loss);
  EXPECT_LE(worst, 1.0);
}

// The bf16 rule (tests/common/tolerance.h, Note [tolerance rule]) applied literally: the GPU in
// bf16 may err at most twice as much as the plain implementation in the same precision — our CPU
// reference kernels on the same bf16 weights — plus eps(bf16) of the scale, both measured
// against transformers' f32 run.
TEST(HfParity, GpuBf16MatchesTransformers) {
  SL_REQUIRE_GPU();
  const double eps = 1.0 / 128;
  const ParityErrors naive = run_parity(Device::cpu(), DType::BF16);
  const ParityErrors gpu = run_parity(Device::cuda(0), DType::BF16);
  EXPECT_LE(gpu.loss, 2 * naive.loss + eps * gpu.ref_loss)
      << "loss: GPU error " << gpu.loss << ", CPU bf16 error " << naive.loss;
  EXPECT_LE(gpu.logits, 2 * naive.logits + eps * gpu.max_ref_logit)
      << "logits: GPU max error " << gpu.logits << ", CPU bf16 max error " << naive.logits
      << ", max |ref| " << gpu.max_ref_logit;
  for (const auto& [name, rel] : gpu.grads)
    EXPECT_LE(rel, 2 * naive.grads.at(name) + eps)
        << name << ": GPU ||ours - ref|| / ||ref|| = " << rel << ", CPU bf16 "
        << naive.grads.at(name);
}

}  // namespace
}  // namespace sl::layers
