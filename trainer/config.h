// The typed training configuration: one struct per section, defaults in one place.
//
//   model:       layers/config.h (parsed by layers::parse_model_config)
//   data:        data/batch_source.h (DataConfig: a synthetic task or an HDF5 token file)
//   optimizer:   AdamW or SGD hyper-parameters, no-weight-decay name patterns, parameter groups
//   schedule:    learning-rate schedule (trainer/schedule.h)
//   checkpoint:  directory, interval, how many to keep, resume policy (trainer/checkpoint.h)
//   logging:     progress interval, metrics JSONL file, TensorBoard directory, evaluation interval
//   debug:       test hooks (NaN gradients injected at chosen steps)
//   eval:        what `superlinear eval` measures (trainer/eval_config.h: the NIAH grid)
//   top level:   device, precision, seed, steps, batch_size, seq_len, grad_accum, grad_clip,
//                max_skipped_steps, freeze, recompute (layers/recompute.h),
//                superlinear_keep_partials (Note [kept partials] in kernels/superlinear.h)
//
// Errors are Status values (InvalidArgument) whose message starts with where the offending key
// came from: "file:line: section.key: ..." for a key of the file, "--set section.key=value: ..."
// for an override. Unknown keys, values of the wrong type and values out of range are errors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.h"
#include "data/batch_source.h"
#include "layers/config.h"
#include "trainer/eval_config.h"

namespace sl::trainer {

// One optimizer.groups entry (trainer/param_groups.h): parameters whose dotted name matches the
// fnmatch glob `params` train with lr * lr_scale and, when weight_decay >= 0, that weight decay
// instead of the no_decay rule.
struct ParamGroupConfig {
  std::string params;
  double lr_scale = 1.0;
  double weight_decay = -1;  // < 0: not set
};

struct OptimizerConfig {
  std::string kind = "adamw";  // "adamw" or "sgd" (momentum; beta1, beta2 and eps unused)
  double lr = 3e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // Parameters whose dotted name matches one of these globs (fnmatch) get no weight decay:
  // norms, biases, embeddings and Mamba's A_log / D by default.
  std::vector<std::string> no_decay = {"*norm*", "*bias", "*embeddings*", "*.A_log", "*.D"};
  double momentum = 0.9;                 // sgd
  bool nesterov = false;                 // sgd
  std::vector<ParamGroupConfig> groups;  // the first group whose glob matches a name wins
};

struct ScheduleConfig {
  std::string kind = "cosine";  // "cosine", "linear", "constant" or "wsd"
  int64_t warmup_steps = 0;     // linear warmup from lr / warmup_steps to lr
  double min_lr_ratio = 0.1;    // the lr at the end of the decay, relative to optimizer.lr
  double decay_fraction = 0.2;  // wsd: the last fraction of the steps decays linearly
};

struct CheckpointConfig {
  std::string dir;              // empty: no checkpoints
  int64_t every = 0;            // steps between checkpoints; 0: only at the end and on a signal
  int64_t keep = 3;             // the last `keep` checkpoints are kept
  std::string resume = "auto";  // "auto" (latest valid one in dir), "none", or a file path
};

struct LoggingConfig {
  int64_t every = 10;        // steps between progress lines and metrics records
  std::string metrics;       // JSONL file; empty: <checkpoint.dir>/metrics.jsonl (none without dir)
  int64_t eval_every = 0;    // steps between evaluations; 0: at the end only
  int64_t eval_batches = 4;  // held-out batches per evaluation
  std::string tensorboard;   // directory for TensorBoard event files of the metrics; empty: none
  double peak_tflops = 0;    // device peak for MFU (trainer/flops.h); 0: from the device name
};

struct DebugConfig {
  std::vector<int64_t> nan_grad_steps;  // steps whose gradients are replaced by NaN
};

struct TrainConfig {
  layers::ModelConfig model;
  data::DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  DebugConfig debug;
  EvalConfig eval;
  std::string device = "auto";     // "auto", "cpu", "cuda" or "cuda:N"
  std::string precision = "auto";  // "f32", "bf16" (f32 master weights) or "auto" (bf16 on GPU)
  uint64_t seed = 1234;
  int64_t steps = 200;
  int64_t batch_size = 16;
  int64_t seq_len = 64;
  int64_t grad_accum = 1;
  double grad_clip = 1.0;          // max global gradient norm; 0: no clipping
  int64_t max_skipped_steps = 10;  // NaN/Inf steps tolerated before the run stops
  std::vector<std::string> freeze;  // fnmatch globs over parameter names: not trained
  std::string init_from;          // trainer/init_from.h: HF directory or checkpoint; "": none
  std::string convert_attention;  // "" or "superlinear": '*' blocks become 'S' (init_from.h)
  std::string recompute = "none";  // "none", "all" or block letters ("M*S"): layers/recompute.h
  // 'S' blocks keep their window and span outputs for the backward rather than recomputing them
  // (CUDA bf16 only; faster backward for (k + 1) attention outputs of memory per 'S' block).
  bool superlinear_keep_partials = false;
};

// Parses YAML text (`file` names it in messages), after applying overrides "a.b=value" (value is
// YAML: a scalar or a flow list). The result is validated.
StatusOr<TrainConfig> parse_train_config(const std::string& yaml_text, const std::string& file,
                                         const std::vector<std::string>& overrides = {});
// Reads the file and calls parse_train_config.
StatusOr<TrainConfig> load_train_config(const std::string& path,
                                        const std::vector<std::string>& overrides = {});

// The resolved configuration as YAML that parse_train_config reads back to the same config.
std::string to_yaml(const TrainConfig& cfg);

}  // namespace sl::trainer
