// The training loop (trainer/train.h).
#include "trainer/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>

#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/device.h"
#include "data/batch_source.h"
#include "layers/config_io.h"
#include "layers/hybrid_lm.h"
#include "layers/recompute.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/flops.h"
#include "trainer/init_from.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"

namespace sl::trainer {
namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
}

// Installs the SIGINT/SIGTERM handlers for its lifetime and restores the previous ones.
class SignalGuard {
 public:
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

StatusOr<Device> resolve_device(const std::string& d) {
  if (d == "auto") return default_device();
  if (d == "cpu") return Device::cpu();
  int index = d == "cuda" ? 0 : std::stoi(d.substr(5));
  int n = cuda_device_count();
  if (index >= n)
    return Status::InvalidArgument("device: \"" + d + "\" requested but " +
                                   (SL_WITH_CUDA ? std::to_string(n) + " CUDA device(s) are visible"
                                                 : std::string("this is a CPU-only build")) +
                                   " (use device: auto or cpu)");
  return Device::cuda(index);
}

Tensor i64s(const std::vector<int64_t>& v) {
  return Tensor::from_vector(v, {int64_t(v.size())});
}

class Run {
 public:
  Run(const TrainConfig& c, const TrainHooks& hooks, Device dev, DType compute,
      std::unique_ptr<data::BatchSource> source)
      : c_(c),
        hooks_(hooks),
        dev_(dev),
        compute_(compute),
        gen_(c.seed),
        model_(c.model, gen_),
        con_(hooks.out, hooks.quiet),
        config_text_(to_yaml(c)),
        model_text_(layers::to_yaml(c.model)),
        source_(std::move(source)) {
    model_.to(dev, DType::F32);
  }

  Status init();
  Status resume();
  StatusOr<TrainResult> loop();

 private:
  Status restore(const CheckpointData& ck, const std::string& path);
  Status save();
  EvalResult evaluate() { return evaluate_lm(model_, *source_, c_.logging.eval_batches, dev_); }
  void report_eval(const EvalResult& e, const char* when);

  const TrainConfig& c_;
  const TrainHooks& hooks_;
  Device dev_;
  DType compute_;
  Generator gen_;
  layers::HybridLM model_;
  std::unique_ptr<Optimizer> opt_;
  Console con_;
  MetricsFile metrics_;
  std::string config_text_, model_text_;
  std::unique_ptr<data::BatchSource> source_;
  int64_t step_ = 0, skipped_ = 0;
  TrainResult result_;
};

Status Run::restore(const CheckpointData& ck, const std::string& path) {
  Status mc = ck.check_model_config(
      model_text_, path,
      "start fresh with --set checkpoint.resume=none or use another checkpoint.dir");
  if (!mc.ok()) return mc;
  Status os = opt_->load(ck, path);
  if (!os.ok()) return os;
  StatusOr<Tensor> state = ck.get("trainer/state", {4}, DType::I64, path);
  if (!state.ok()) return state.status();
  std::vector<int64_t> v = state.value().to_vector<int64_t>();
  step_ = v[0];
  skipped_ = v[1];
  gen_ = Generator(uint64_t(v[2]), uint64_t(v[3]));
  return Status::Ok();
}

Status Run::init() {
  StatusOr<std::string> recompute = layers::recompute_kinds(c_.recompute, c_.model.pattern);
  if (!recompute.ok()) return Status::InvalidArgument("recompute: " + recompute.status().message());
  model_.set_recompute(recompute.value());
  model_.set_superlinear_keep_partials(c_.superlinear_keep_partials);
  if (!c_.init_from.empty()) {
    StatusOr<std::string> from = init_model_from(c_.init_from, c_.convert_attention, &model_);
    if (!from.ok()) return from.status();
    con_.line(from.value());
  }
  StatusOr<std::unique_ptr<Optimizer>> o =
      Optimizer::create(model_.named_parameters(), c_.optimizer, c_.freeze, compute_);
  if (!o.ok()) return o.status();
  opt_ = std::move(o).value();
  return Status::Ok();
}

Status Run::resume() {
  const std::string& mode = c_.checkpoint.resume;
  if (mode == "none") return Status::Ok();
  CheckpointData ck;
  std::string path;
  if (mode == "auto") {
    if (c_.checkpoint.dir.empty()) return Status::Ok();
    std::vector<std::string> warnings;
    StatusOr<std::string> p = latest_valid_checkpoint(c_.checkpoint.dir, &ck, &warnings);
    for (const std::string& w : warnings) con_.line("warning: " + w);
    if (!p.ok()) return Status::Ok();  // nothing to resume: a fresh run
    path = p.value();
  } else {
    StatusOr<CheckpointData> d = read_checkpoint(mode);
    if (!d.ok()) return d.status();
    ck = std::move(d).value();
    path = mode;
  }
  Status s = restore(ck, path);
  if (!s.ok()) return s;
  result_.start_step = step_;
  con_.line("resumed from " + path + " at step " + std::to_string(step_));
  return Status::Ok();
}

Status Run::save() {
  if (c_.checkpoint.dir.empty()) return Status::Ok();
  CheckpointData d;
  opt_->save(&d);
  d.add("trainer/state", i64s({step_, skipped_, int64_t(gen_.seed), int64_t(gen_.offset)}));
  d.texts["config"] = config_text_;
  d.texts["model_config"] = model_text_;
  std::string path = checkpoint_path(c_.checkpoint.dir, step_);
  Status s = write_checkpoint(path, d);
  if (!s.ok()) return s;
  prune_checkpoints(c_.checkpoint.dir, c_.checkpoint.keep);
  result_.last_checkpoint = path;
  return Status::Ok();
}

void Run::report_eval(const EvalResult& e, const char* when) {
  metrics_.write(step_, {{"eval_loss", e.loss}, {"eval_accuracy", e.accuracy}});
  con_.line(std::string("eval ") + when + " step " + std::to_string(step_) + ": loss " +
            fixed(e.loss, 4) + ", accuracy " + fixed(e.accuracy, 3));
}

StatusOr<TrainResult> Run::loop() {
  const auto t_start = Clock::now();
  const std::string metrics_path =
      !c_.logging.metrics.empty()
          ? c_.logging.metrics
          : (c_.checkpoint.dir.empty() ? "" : c_.checkpoint.dir + "/metrics.jsonl");
  Status ms = metrics_.open(metrics_path);
  if (ms.ok()) ms = metrics_.open_tensorboard(c_.logging.tensorboard);
  if (!ms.ok()) return ms;
  con_.line("model: " + std::to_string(model_.num_parameters()) + " parameters, pattern \"" +
            c_.model.pattern + "\"; device " + dev_.str() + ", " + dtype_name(compute_) +
            (compute_ == DType::BF16 ? " with f32 master weights" : "") + "; " +
            std::to_string(c_.batch_size * c_.seq_len * c_.grad_accum) + " tokens per step");
  con_.line("data: " + source_->describe());
  if (step_ >= c_.steps) {
    con_.line("nothing to do: resumed at step " + std::to_string(step_) + " of " +
              std::to_string(c_.steps) + " (--set checkpoint.resume=none to train again)");
    result_.end_step = step_;
    return std::move(result_);
  }
  if (c_.logging.eval_batches > 0) {
    EvalResult e = evaluate();
    result_.initial_eval_loss = e.loss;
    result_.initial_eval_accuracy = e.accuracy;
    report_eval(e, "at");
  }

  const double flops_per_token = model_flops_per_token(model_, c_.seq_len).total();
  const double peak_flops = resolve_peak_tflops(c_.logging.peak_tflops, dev_) * 1e12;
  SignalGuard signals;
  const std::vector<int64_t>& nan_steps = c_.debug.nan_grad_steps;
  const int64_t B = c_.batch_size, T = c_.seq_len;
  const int64_t accum = c_.grad_accum;
  double win_loss = 0, win_norm = 0;
  int64_t win_steps = 0, win_finite = 0;
  auto win_start = Clock::now();
  while (step_ < c_.steps) {
    const double lr = lr_at(c_.schedule, c_.optimizer.lr, step_, c_.steps);
    double loss = 0;
    for (int64_t m = 0; m < accum; ++m) {
      data::Batch b = source_->batch(step_ * accum + m, data::Split::kTrain);
      layers::SequenceInfo seq;
      if (b.seq_idx.defined()) seq.seq_idx = b.seq_idx.to(dev_);
      layers::LmLoss l = model_.loss(b.ids.to(dev_), b.targets.to(dev_), seq);
      loss += l.total.value().item() / double(accum);
      if (l.total.requires_grad()) ag::scale(l.total, 1.0 / double(accum)).backward();
    }
    if (std::find(nan_steps.begin(), nan_steps.end(), step_) != nan_steps.end())
      for (ParamState& s : opt_->states())
        if (!s.frozen && s.param.grad().defined()) {
          Tensor g = s.param.grad();
          g.fill_(std::nan(""));
          break;
        }
    const double norm = opt_->grad_norm();
    if (std::isfinite(loss) && std::isfinite(norm)) {
      double clip = c_.grad_clip > 0 ? std::min(1.0, c_.grad_clip / (norm + 1e-6)) : 1.0;
      opt_->step(lr, clip);
      win_loss += loss;
      win_norm += norm;
      ++win_finite;
    } else {
      ++skipped_;
      con_.line("step " + std::to_string(step_ + 1) + ": loss " + fixed(loss, 4) +
                ", gradient norm " + fixed(norm, 4) + ": update skipped (" +
                std::to_string(skipped_) + " so far, max_skipped_steps " +
                std::to_string(c_.max_skipped_steps) + ")");
    }
    opt_->zero_grad();
    ++step_;
    ++win_steps;
    if (skipped_ > c_.max_skipped_steps)
      return Status::InvalidArgument(
          "training stopped at step " + std::to_string(step_) + ": " + std::to_string(skipped_) +
          " steps had a NaN/Inf loss or gradient, more than max_skipped_steps = " +
          std::to_string(c_.max_skipped_steps) +
          " (lower optimizer.lr, raise schedule.warmup_steps or grad_clip)");

    if (step_ % c_.logging.every == 0 || step_ == c_.steps) {
      double secs = std::chrono::duration<double>(Clock::now() - win_start).count();
      Progress p;
      p.step = step_;
      p.total = c_.steps;
      p.loss = win_finite ? win_loss / double(win_finite) : TrainResult::kNaN;
      p.grad_norm = win_finite ? win_norm / double(win_finite) : TrainResult::kNaN;
      p.lr = lr;
      p.tokens_per_s = double(win_steps * B * T * accum) / std::max(secs, 1e-9);
      p.eta_s = secs / double(win_steps) * double(c_.steps - step_);
      p.skipped = skipped_;
      if (peak_flops > 0) p.mfu = flops_per_token * p.tokens_per_s / peak_flops;
      con_.progress(p);
      std::vector<std::pair<std::string, double>> m = {{"loss", p.loss},
                                                       {"lr", lr},
                                                       {"tokens_per_s", p.tokens_per_s},
                                                       {"grad_norm", p.grad_norm},
                                                       {"skipped", double(skipped_)}};
      if (peak_flops > 0) m.emplace_back("mfu", p.mfu);
      if (dev_.is_cuda())
        m.emplace_back("peak_mem_gb", double(cuda_alloc::stats(dev_.index).peak_allocated) / 1e9);
      metrics_.write(step_, m);
      if (std::isnan(result_.first_loss)) result_.first_loss = p.loss;
      result_.last_loss = p.loss;
      win_loss = win_norm = 0;
      win_steps = win_finite = 0;
      win_start = Clock::now();
    }
    if (c_.logging.eval_every > 0 && step_ % c_.logging.eval_every == 0 && step_ < c_.steps &&
        c_.logging.eval_batches > 0)
      report_eval(evaluate(), "at");

    bool stop = hooks_.after_step && !hooks_.after_step(step_);
    if (g_signal != 0 || stop) {
      result_.interrupted = true;
      result_.interrupt_signal = g_signal;
      Status s = save();
      if (!s.ok()) return s;
      const char* why = g_signal == SIGINT ? "SIGINT" : g_signal == SIGTERM ? "SIGTERM" : "a hook";
      con_.line(std::string("stopped by ") + why + " after step " + std::to_string(step_) +
                (result_.last_checkpoint.empty() ? "; no checkpoint.dir, nothing saved"
                                                 : ": checkpoint " + result_.last_checkpoint +
                                                       "; run the same command to resume"));
      break;
    }
    if (c_.checkpoint.every > 0 && step_ % c_.checkpoint.every == 0 && step_ < c_.steps) {
      Status s = save();
      if (!s.ok()) return s;
    }
  }
  if (!result_.interrupted) {
    Status s = save();
    if (!s.ok()) return s;
    if (c_.logging.eval_batches > 0) {
      EvalResult e = evaluate();
      result_.final_eval_loss = e.loss;
      result_.final_eval_accuracy = e.accuracy;
      report_eval(e, "at");
    }
  }
  result_.end_step = step_;
  result_.skipped = skipped_;
  result_.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  if (hooks_.keep_params)
    for (const ParamState& s : opt_->states())
      result_.params.emplace_back(s.name, s.master.to(Device::cpu()).clone());
  return std::move(result_);
}

}  // namespace

StatusOr<TrainResult> train(const TrainConfig& cfg, const TrainHooks& hooks) {
  StatusOr<Device> dev = resolve_device(cfg.device);
  if (!dev.ok()) return dev.status();
  const bool bf16 = cfg.precision == "bf16" || (cfg.precision == "auto" && dev.value().is_cuda());
  data::SourceShape shape;
  shape.vocab_size = cfg.model.vocab_size;
  shape.batch_size = cfg.batch_size;
  shape.seq_len = cfg.seq_len;
  shape.seed = cfg.seed;
  StatusOr<std::unique_ptr<data::BatchSource>> source = data::make_batch_source(cfg.data, shape);
  if (!source.ok()) return source.status();
  Run run(cfg, hooks, dev.value(), bf16 ? DType::BF16 : DType::F32, std::move(source).value());
  Status s = run.init();
  if (s.ok()) s = run.resume();
  if (!s.ok()) return s;
  return run.loop();
}

}  // namespace sl::trainer
