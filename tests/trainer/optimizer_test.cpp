// The trainer's optimizer: SGD and AdamW through Optimizer (updates against the kernels' formulas
// on hand-set gradients), parameter rules (freeze, groups, no_decay), their config keys, and in
// training runs: bit-exact resume for both kinds, SGD state in checkpoints, a kind mismatch on
// resume, frozen parameters left untouched.
#include "trainer/optimizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "layers/hybrid_lm.h"
#include "tests/trainer/train_fixture.h"
#include "trainer/checkpoint.h"
#include "trainer/param_groups.h"
#include "trainer/train.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

#define EXPECT_HAS(msg, part) \
  EXPECT_NE((msg).find(part), std::string::npos) << "'" << (msg) << "' lacks '" << (part) << "'"

using Named = std::vector<std::pair<std::string, ag::Var>>;

Named two_params(float w0, float w1) {
  return {{"a.weight", ag::Var(Tensor::full({3}, w0, DType::F32), true, "a.weight")},
          {"b.norm.weight", ag::Var(Tensor::full({3}, w1, DType::F32), true, "b.norm.weight")}};
}

std::unique_ptr<Optimizer> make(const Named& p, const OptimizerConfig& c,
                                const std::vector<std::string>& freeze = {}) {
  StatusOr<std::unique_ptr<Optimizer>> o = Optimizer::create(p, c, freeze, DType::F32);
  SL_CHECK(o.ok()) << o.status().message();
  return std::move(o).value();
}

float first(const ag::Var& v) {
  return v.value().to_vector<float>()[0];
}

TEST(Optimizer, SgdMomentumWithGroupsLrScaleAndDecayOverride) {
  // Exact in f32: lr 0.5, momentum 0.5, weight decay 0.25 for a.weight; b.norm.weight is
  // no_decay but its group sets weight_decay 0 explicitly and lr_scale 0.5.
  OptimizerConfig c;
  c.kind = "sgd";
  c.lr = 0.5;
  c.momentum = 0.5;
  c.weight_decay = 0.25;
  c.groups = {{"b.*", 0.5, 0.0}, {"*", 3.0, -1}};  // first match wins: b gets 0.5
  Named p = two_params(4, 4);
  std::unique_ptr<Optimizer> opt = make(p, c);
  EXPECT_EQ(opt->states()[0].lr_scale, 3.0);
  EXPECT_EQ(opt->states()[0].weight_decay, 0.25);
  EXPECT_EQ(opt->states()[1].lr_scale, 0.5);
  EXPECT_EQ(opt->states()[1].weight_decay, 0.0);
  for (auto& [n, v] : p) v.set_grad(Tensor::full({3}, 2.0, DType::F32));
  opt->step(c.lr, 1.0);
  // a: d = 2 + 0.25 * 4 = 3, buf = 3, w = 4 - 1.5 * 3 = -0.5.  b: d = 2, buf = 2, w = 4 - 0.25 * 2.
  EXPECT_EQ(first(p[0].second), -0.5f);
  EXPECT_EQ(first(p[1].second), 3.5f);
  EXPECT_EQ(opt->states()[1].momentum.to_vector<float>()[0], 2.0f);
  // Second step, gradient 0 for b: buf = 0.5 * 2 + 0 = 1, w = 3.5 - 0.25 * 1.
  p[1].second.set_grad(Tensor::zeros({3}, DType::F32));
  p[0].second.zero_grad();
  opt->step(c.lr, 1.0);
  EXPECT_EQ(first(p[1].second), 3.25f);
  EXPECT_EQ(first(p[0].second), -0.5f) << "a parameter without gradient is not updated";
  EXPECT_EQ(opt->states()[0].step, 1);
  EXPECT_EQ(opt->states()[1].step, 2);
}

TEST(Optimizer, FrozenParametersHaveNoStateNoNormNoUpdate) {
  OptimizerConfig c;
  c.weight_decay = 0.5;
  Named p = two_params(1, 1);
  std::unique_ptr<Optimizer> opt = make(p, c, {"a.*"});
  EXPECT_TRUE(opt->states()[0].frozen);
  EXPECT_FALSE(opt->states()[0].exp_avg.defined());
  EXPECT_FALSE(opt->states()[1].frozen);
  EXPECT_TRUE(opt->states()[1].exp_avg.defined());
  p[0].second.set_grad(Tensor::full({3}, 100.0, DType::F32));
  p[1].second.set_grad(Tensor::full({3}, 1.0, DType::F32));  // norm sqrt(3)
  EXPECT_NEAR(opt->grad_norm(), std::sqrt(3.0), 1e-6);
  opt->step(1e-2, 1.0);
  EXPECT_EQ(first(p[0].second), 1.0f);
  EXPECT_NE(first(p[1].second), 1.0f);
  opt->zero_grad();
  EXPECT_FALSE(p[0].second.grad().defined()) << "a frozen parameter's gradient is dropped";

  CheckpointData d;
  opt->save(&d);
  EXPECT_NE(d.find("param/a.weight"), nullptr);
  EXPECT_EQ(d.find("adam/a.weight/exp_avg"), nullptr);
  EXPECT_NE(d.find("adam/b.norm.weight/exp_avg"), nullptr);
  // The same checkpoint with a.weight trainable: a clear error.
  std::unique_ptr<Optimizer> thawed = make(two_params(1, 1), c);
  Status s = thawed->load(d, "x.slck");
  ASSERT_FALSE(s.ok());
  EXPECT_HAS(s.message(), "x.slck");
  EXPECT_HAS(s.message(), "a.weight");
  EXPECT_HAS(s.message(), "freeze");
}

TEST(ParamRules, UnmatchedGlobsAreErrorsNamingThem) {
  OptimizerConfig c;
  std::vector<std::string> names = {"backbone.layers.0.mixer.in_proj.weight", "lm_head.weight"};
  StatusOr<std::vector<ParamRule>> r = resolve_param_rules(names, c, {"backbone.embedings*"});
  ASSERT_FALSE(r.ok());
  EXPECT_HAS(r.status().message(), "freeze");
  EXPECT_HAS(r.status().message(), "backbone.embedings*");
  c.groups = {{"lm_head.*", 2.0, -1}, {"*.mixr.*", 0.1, -1}};
  r = resolve_param_rules(names, c, {});
  ASSERT_FALSE(r.ok());
  EXPECT_HAS(r.status().message(), "optimizer.groups[1].params");
  EXPECT_HAS(r.status().message(), "*.mixr.*");
  c.groups.pop_back();
  r = resolve_param_rules(names, c, {"*.mixer.*"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r.value()[0].frozen);
  EXPECT_FALSE(r.value()[1].frozen);
  EXPECT_EQ(r.value()[1].lr_scale, 2.0);
  EXPECT_EQ(r.value()[1].weight_decay, c.weight_decay);
  EXPECT_EQ(r.value()[0].lr_scale, 1.0);
}

TEST(OptimizerConfigKeys, ParseRoundTripAndErrors) {
  StatusOr<TrainConfig> c = parse_train_config(
      "optimizer:\n  kind: sgd\n  momentum: 0.8\n  nesterov: true\n"
      "  groups:\n    - {params: \"*.mixer.*\", lr_scale: 0.5}\n"
      "    - {params: lm_head.weight, weight_decay: 0.0}\n"
      "freeze: [\"backbone.embeddings.*\"]\n",
      "cfg.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const OptimizerConfig& o = c.value().optimizer;
  EXPECT_EQ(o.kind, "sgd");
  EXPECT_EQ(o.momentum, 0.8);
  EXPECT_TRUE(o.nesterov);
  ASSERT_EQ(o.groups.size(), 2u);
  EXPECT_EQ(o.groups[0].params, "*.mixer.*");
  EXPECT_EQ(o.groups[0].lr_scale, 0.5);
  EXPECT_LT(o.groups[0].weight_decay, 0);
  EXPECT_EQ(o.groups[1].lr_scale, 1.0);
  EXPECT_EQ(o.groups[1].weight_decay, 0.0);
  EXPECT_EQ(c.value().freeze, std::vector<std::string>{"backbone.embeddings.*"});
  StatusOr<TrainConfig> back = parse_train_config(to_yaml(c.value()), "resolved.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(to_yaml(back.value()), to_yaml(c.value()));

  auto error = [](const std::string& text, std::vector<std::string> sets = {}) {
    StatusOr<TrainConfig> r = parse_train_config(text, "cfg.yaml", sets);
    return r.ok() ? std::string("accepted") : r.status().message();
  };
  std::string m = error("optimizer: {kind: lion}\n");
  EXPECT_HAS(m, "cfg.yaml:1");
  EXPECT_HAS(m, "optimizer.kind");
  m = error("optimizer: {momentum: 0.0, nesterov: true}\n");
  EXPECT_HAS(m, "optimizer.nesterov");
  m = error("optimizer:\n  groups:\n    - {params: \"*\", lr_sacle: 2}\n");
  EXPECT_HAS(m, "cfg.yaml:3");
  EXPECT_HAS(m, "optimizer.groups[0].lr_sacle");
  m = error("optimizer:\n  groups: [{lr_scale: 2}]\n");
  EXPECT_HAS(m, "optimizer.groups[0].params");
  m = error("", {"optimizer.groups=[{params: x, weight_decay: -1}]"});
  EXPECT_HAS(m, "--set optimizer.groups=");
  EXPECT_HAS(m, "optimizer.groups[0].weight_decay");
  m = error("optimizer: {groups: {params: x}}\n");
  EXPECT_HAS(m, "optimizer.groups");
}

// ---- in training runs ----

const std::string kTiny = test::tiny_config(R"(
optimizer: {lr: 1.0e-2, momentum: 0.9}
schedule: {kind: cosine, warmup_steps: 2}
logging: {every: 1, eval_batches: 0}
seed: 5
steps: 6
batch_size: 2
seq_len: 16
)");

class OptimizerRun : public test::TrainRunTest {
 protected:
  TrainConfig config(std::vector<std::string> overrides = {}) {
    overrides.insert(overrides.begin(), "checkpoint.dir=" + dir_);
    return parse(kTiny, "tiny.yaml", overrides);
  }
};

bool same_bits(const Tensor& x, const Tensor& y) {
  return x.shape() == y.shape() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

TEST_F(OptimizerRun, ResumeIsBitExactForBothKinds) {
  for (const char* kind : {"sgd", "adamw"}) {
    SCOPED_TRACE(kind);
    fs::remove_all(dir_);
    const std::string k = std::string("optimizer.kind=") + kind;
    std::vector<std::string> extra = {k,
                                      "optimizer.groups=[{params: \"*.mixer.*\", lr_scale: 0.5}]"};
    if (std::string(kind) == "sgd") extra.push_back("optimizer.nesterov=true");
    std::vector<std::string> straight_cfg = extra;
    straight_cfg.push_back("checkpoint.dir=");
    TrainResult straight = run(config(straight_cfg));
    TrainHooks stop_at_3;
    stop_at_3.after_step = [](int64_t done) { return done < 3; };
    TrainResult part = run(config(extra), stop_at_3);
    ASSERT_EQ(part.end_step, 3);
    StatusOr<CheckpointData> ck = read_checkpoint(part.last_checkpoint);
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    const std::string p = "backbone.layers.0.mixer.in_proj.weight";
    if (std::string(kind) == "sgd") {
      EXPECT_NE(ck.value().find("sgd/" + p + "/momentum"), nullptr);
      EXPECT_EQ(ck.value().find("adam/" + p + "/exp_avg"), nullptr);
    } else {
      EXPECT_NE(ck.value().find("adam/" + p + "/exp_avg"), nullptr);
    }
    TrainResult rest = run(config(extra));
    EXPECT_EQ(rest.start_step, 3);
    ASSERT_EQ(straight.params.size(), rest.params.size());
    int moved = 0;
    for (size_t i = 0; i < rest.params.size(); ++i) {
      EXPECT_TRUE(same_bits(straight.params[i].second, rest.params[i].second))
          << rest.params[i].first;
      moved += !same_bits(part.params[i].second, rest.params[i].second);
    }
    EXPECT_GT(moved, 0) << "steps 4-6 changed nothing";
  }
}

TEST_F(OptimizerRun, ResumingAdamwStateWithSgdIsAClearError) {
  run(config({"steps=2"}));
  StatusOr<TrainResult> r = try_run(config({"steps=4", "optimizer.kind=sgd"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_HAS(r.status().message(), "ckpt_00000002.slck");
  EXPECT_HAS(r.status().message(), "optimizer.kind adamw");
  EXPECT_HAS(r.status().message(), "optimizer.kind is sgd");
}

TEST_F(OptimizerRun, FrozenParametersStayAtTheirInitialValues) {
  TrainConfig c =
      config({"freeze=[\"backbone.embeddings.*\", \"*.layers.1.*\"]", "checkpoint.dir="});
  TrainResult r = run(c);
  Generator gen(c.seed);
  layers::HybridLM init(c.model, gen);
  auto named = init.named_parameters();
  ASSERT_EQ(named.size(), r.params.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const std::string& n = named[i].first;
    bool frozen = n.rfind("backbone.embeddings.", 0) == 0 || n.find(".layers.1.") != n.npos;
    bool same = same_bits(named[i].second.value(), r.params[i].second);
    if (frozen) {
      EXPECT_TRUE(same) << n << " is frozen but changed";
    } else if (n.find("weight") != n.npos && n.find("norm") == n.npos) {
      EXPECT_FALSE(same) << n << " is trainable but did not change";
    }
  }
  StatusOr<TrainResult> bad = try_run(config({"freeze=[\"backbone.embedings.*\"]"}));
  ASSERT_FALSE(bad.ok());
  EXPECT_HAS(bad.status().message(), "backbone.embedings.*");
}

}  // namespace
}  // namespace sl::trainer
