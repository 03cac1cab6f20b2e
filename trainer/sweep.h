// `superlinear sweep SWEEP.yaml`: many training runs of one base config, each a child process of
// the same program (`<exe> train BASE --set ...`), resumable, with a results table at the end.
//
//   base: quickstart.yaml          # relative to the sweep file
//   out_dir: out/lr_sweep          # relative to the current directory, as checkpoint.dir is
//   set: {steps: 200}              # optional: overrides for every run (before the run's own)
//   grid:                          # cartesian product, first key slowest ...
//     optimizer.lr: [1.0e-3, 3.0e-3]
//     model.d_model: [64, 128]
//   runs:                          # ... or an explicit list (name optional)
//     - {name: small, set: {model.d_model: 64}}
//   parallel: 1                    # runs at a time; "gpus": one per visible GPU, pinned with
//                                  # CUDA_VISIBLE_DEVICES (one at a time without GPUs)
//
// A run's name comes from its overrides ("lr=0.001,d_model=64": the last key component, or the
// whole dotted key where two would collide; characters outside [A-Za-z0-9._+-] become '_'), or
// from `name:`. Run <name> trains in out_dir/<name>/ (checkpoint.dir there, resume auto, metrics
// and output in log.txt there) and, when it finishes, the trainer writes result.json there. A
// run with a result.json is not run again; one without resumes from its checkpoints. Every run's
// config is validated before any starts. At the end out_dir/results.csv and results.md hold one
// row per run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "trainer/train.h"

namespace sl::trainer {

struct SweepRun {
  std::string name;
  std::vector<std::pair<std::string, std::string>> set;  // dotted key, value as YAML text
  std::vector<int> set_lines;                            // the line of each override in the file
  int line = 0;                                          // where the run was defined in the file
};

struct SweepSpec {
  std::string file;  // the sweep file, for messages
  std::string base;  // the base config, resolved against the sweep file's directory
  std::string out_dir;
  std::vector<std::pair<std::string, std::string>> set;  // for every run
  std::vector<std::string> keys;                         // table columns: every key runs set
  std::vector<SweepRun> runs;
  int parallel = 1;   // runs at a time (with gpus: at most one per GPU)
  bool gpus = false;  // parallel: gpus
};

// Parses a sweep file's text; `file` names it in messages ("file:line: key: problem").
StatusOr<SweepSpec> parse_sweep(const std::string& yaml_text, const std::string& file);
StatusOr<SweepSpec> load_sweep(const std::string& path);

// The --set arguments of a run: the sweep's set, the run's, then checkpoint.dir, resume auto and
// the metrics file in the run's directory.
std::vector<std::string> run_overrides(const SweepSpec& s, const SweepRun& r);
std::string run_dir(const SweepSpec& s, const SweepRun& r);

// Loads the base config with every run's overrides; the first failure names the sweep file, the
// run and the key.
Status validate_sweep(const SweepSpec& s);

// What a finished training run leaves in <checkpoint.dir>/result.json.
struct RunResult {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  int64_t steps = 0;
  double train_loss = kNaN, eval_loss = kNaN, eval_accuracy = kNaN, seconds = kNaN;
};
// Writes dir/result.json (atomically: a temporary file renamed). NaN is written as null.
Status write_result_json(const std::string& dir, const TrainResult& r);
StatusOr<RunResult> read_result_json(const std::string& path);
// What `superlinear train` calls at the end: write_result_json(checkpoint.dir) for a run that was
// not interrupted and has a checkpoint.dir; a run that had nothing to do (resumed at its last
// step) keeps an existing result.json, whose metrics it could not reproduce.
Status record_train_result(const TrainConfig& cfg, const TrainResult& r);

struct RunOutcome {
  std::string name;
  std::string status;  // "done", "done earlier", "failed (exit N)", "interrupted", "not run"
  RunResult result;
};

struct SweepOptions {
  std::string exe;  // the superlinear program to run children with
  std::FILE* out = stdout;
};

// Validates, runs what is not done, and writes results.csv / results.md. A Status error only for
// a bad sweep or an I/O problem; failed runs are outcomes.
StatusOr<std::vector<RunOutcome>> run_sweep(const SweepSpec& s, const SweepOptions& o);

// `superlinear sweep SWEEP.yaml` with `exe` as the program; returns the exit code (1 when a run
// failed or was interrupted).
int sweep_command(const std::vector<std::string>& args, const std::string& exe);

}  // namespace sl::trainer
