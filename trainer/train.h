// The training loop: HybridLM on the synthetic task, AdamW or SGD, schedule, clipping, gradient
// accumulation, NaN/Inf skipping, evaluation, checkpoints and resume, SIGINT/SIGTERM handling.
//
// One step s (0-based) runs grad_accum micro-batches (data index s * grad_accum + m), each
// forward -> loss / grad_accum -> backward; then the global gradient norm (f32 on the device);
// a non-finite loss or norm skips the update (counted; past max_skipped_steps the run stops with
// an error); otherwise an optimizer step (trainer/optimizer.h) with the clip factor
// min(1, grad_clip / norm) as gradient scale and the scheduled lr for step s. Gradients are
// zeroed after every step.
//
// Determinism: the model is initialised from Generator(seed), batches are pure functions of
// (seed, index), and checkpoints hold the master weights, the optimizer state per parameter, the
// generator and the step, so on the CPU a run resumed from step s is bit-identical to a straight
// run. Resume checks the stored model config against the current one.
//
// Signals: while train() runs, SIGINT and SIGTERM set a flag; the current step finishes, a
// checkpoint is written (when checkpoint.dir is set) and train() returns with interrupted set.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"
#include "trainer/config.h"

namespace sl::trainer {

struct TrainHooks {
  // Called after each completed step with the number of steps done; returning false stops the
  // run as a signal would (checkpoint, interrupted).
  std::function<bool(int64_t steps_done)> after_step;
  std::FILE* out = stdout;
  bool quiet = false;        // no console output
  bool keep_params = false;  // copy the final master weights into TrainResult::params
};

struct TrainResult {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  int64_t start_step = 0;                      // 0, or the step resumed from
  int64_t end_step = 0;                        // steps done when train() returned
  double first_loss = kNaN, last_loss = kNaN;  // mean train loss of the first / last window
  double initial_eval_loss = kNaN, final_eval_loss = kNaN;
  double initial_eval_accuracy = kNaN, final_eval_accuracy = kNaN;
  int64_t skipped = 0;
  bool interrupted = false;
  int interrupt_signal = 0;  // SIGINT / SIGTERM, or 0 (hook)
  std::string last_checkpoint;
  double seconds = 0;
  std::vector<std::pair<std::string, Tensor>> params;  // CPU f32, with hooks.keep_params
};

// Runs the configured job. Configuration, device and checkpoint problems, and too many skipped
// steps, are non-OK Status values with a message for the user.
StatusOr<TrainResult> train(const TrainConfig& cfg, const TrainHooks& hooks = {});

}  // namespace sl::trainer
