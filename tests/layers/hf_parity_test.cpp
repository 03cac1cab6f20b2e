// Parity with Hugging Face transformers: the tiny NemotronH of tests/fixtures/nemotron_h_tiny
// (M * - M E blocks, made and run by make_nemotron_h_fixture.py, see the README there) loaded
// with load_hf_model and run on the fixture's batch, against transformers' logits, loss and
// every parameter gradient.
//
// Metrics: logits by max |ours - ref| <= tol * max |ref|; the loss by |ours - ref| <= tol *
// |ref|; each gradient by the relative norm ||ours - ref|| / ||ref|| (Frobenius, per tensor).
// CPU f32: 1e-4 for logits and loss, 1e-3 for gradients. GPU bf16 (parameters and activations
// in bf16, f32 accumulation; transformers' reference is f32): 3e-2 for logits and loss, 1e-1 for
// gradients — a few bf16 roundings (2^-8 relative each) per block over five blocks, with the
// gradient of the small parameters (A_log, dt_bias, D) the most sensitive. The fixture checks
// that no token's expert choice is within 2e-3 of a tie, so rounding does not flip routing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

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

// Runs the fixture's batch through the model loaded on `device` in `dtype` and checks it.
void check_parity(Device device, DType dtype, double logit_tol, double grad_tol) {
  Reference ref = load_reference();
  StatusOr<std::unique_ptr<HybridLM>> loaded = load_hf_model(fixture_dir(), device, dtype);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  HybridLM& model = *loaded.value();
  const Tensor ids = ref.get("input_ids").to(device);
  const Tensor targets = ref.get("targets").to(device);

  LmLoss loss = model.loss(ids, targets);
  loss.total.backward();
  const double ref_loss = ref.get("loss").to(DType::F64).item();
  EXPECT_NEAR(loss.total.value().to(DType::F64).item(), ref_loss, logit_tol * std::abs(ref_loss));

  std::vector<double> ours = as_doubles(model.forward(ids).value());
  std::vector<double> want = as_doubles(ref.get("logits"));
  ASSERT_EQ(ours.size(), want.size());
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(want[i]));
    max_err = std::max(max_err, std::abs(ours[i] - want[i]));
  }
  EXPECT_LE(max_err, logit_tol * max_ref) << "logits: max |ours - ref| " << max_err
                                          << ", max |ref| " << max_ref;

  size_t compared = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    const Tensor* g_ref = ref.data.find("grad." + name);
    if (name.find("e_score_correction_bias") != std::string::npos) {
      EXPECT_EQ(g_ref, nullptr) << name << ": a buffer in transformers, no gradient";
      EXPECT_FALSE(p.grad().defined()) << name;
      continue;
    }
    ASSERT_NE(g_ref, nullptr) << "no reference gradient for " << name;
    std::vector<double> r = as_doubles(*g_ref);
    // An expert that received no token has no gradient here, zeros in transformers.
    std::vector<double> o = p.grad().defined() ? as_doubles(p.grad()) : std::vector<double>(r.size());
    ASSERT_EQ(o.size(), r.size()) << name;
    std::vector<double> diff(r.size());
    for (size_t i = 0; i < r.size(); ++i) diff[i] = o[i] - r[i];
    const double ref_norm = norm(r), err = norm(diff);
    if (ref_norm == 0)
      EXPECT_LE(err, 1e-12) << name << ": reference gradient is zero";
    else
      EXPECT_LE(err / ref_norm, grad_tol) << name << ": ||ours - ref|| / ||ref|| = "
                                          << err / ref_norm << " (||ref|| " << ref_norm << ")";
    ++compared;
  }
  size_t ref_grads = 0;
  for (const auto& [name, t] : ref.data.tensors) ref_grads += name.rfind("grad.", 0) == 0;
  EXPECT_EQ(compared, ref_grads) << "every reference gradient belongs to a parameter";
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

TEST(HfParity, CpuF32MatchesTransformers) { check_parity(Device::cpu(), DType::F32, 1e-4, 1e-3); }

TEST(HfParity, GpuBf16MatchesTransformers) {
  SL_REQUIRE_GPU();
  check_parity(Device::cuda(0), DType::BF16, 3e-2, 1e-1);
}

}  // namespace
}  // namespace sl::layers
