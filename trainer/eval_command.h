// `superlinear eval CONFIG.yaml [--checkpoint PATH] [--set key=value] [--batches N] [--out DIR]`:
// loads a trained model from a checkpoint and measures (a) the loss and perplexity on the eval
// split of the configured data (trainer::evaluate_lm) and (b), when the config has an eval.niah
// grid (trainer/eval_config.h), needle-in-a-haystack accuracy for every (length, depth) cell,
// written to <out>/niah.csv and drawn as <out>/niah.png.
//
// The model is built from the config's model section and must match the checkpoint's stored
// model configuration (text compared, as resume does); its parameters are the checkpoint's
// "param/<name>" f32 tensors, run in bf16 on a GPU when precision says so (auto: bf16 on CUDA).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/errors.h"
#include "layers/hybrid_lm.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/evaluate.h"

namespace sl::trainer {

struct EvalOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key=value
  std::string checkpoint;              // empty: the latest valid one in checkpoint.dir
  int64_t batches = -1;                // eval-split batches; < 0: logging.eval_batches
  std::string out_dir;                 // empty: checkpoint.dir, or "." without one
};

struct NiahCell {
  int64_t length = 0;
  double depth = 0;
  double accuracy = EvalResult::kNaN;  // fraction of answer tokens whose argmax is right
  double loss = EvalResult::kNaN;      // mean cross-entropy of the answer tokens
  int64_t rows = 0, scored = 0;
};

struct EvalReport {
  std::string checkpoint;          // the file the parameters came from
  int64_t step = 0;                // its training step
  EvalResult lm;                   // NaN loss when no batches were asked for
  std::vector<NiahCell> niah;      // lengths-major: (lengths[0], depths[0]), (lengths[0], ...)
  std::string csv_path, png_path;  // empty without a NIAH grid
};

// Copies every parameter of `model` (f32, as built) from ck's "param/<name>" tensors; ck must
// hold the same model configuration. Errors name `path` and the tensor.
Status load_model_params(layers::HybridLM& model, const CheckpointData& ck,
                         const std::string& path);

// The eval.niah grid of cfg on an already loaded model.
std::vector<NiahCell> evaluate_niah(layers::HybridLM& model, const TrainConfig& cfg, Device dev);

// CSV with a comment line naming what the numbers are, then one row per cell.
Status write_niah_csv(const std::string& path, const TrainConfig& cfg,
                      const std::vector<NiahCell>& cells, const std::string& checkpoint);
// Heatmap: one row per depth, one column per length.
Status write_niah_png(const std::string& path, const TrainConfig& cfg,
                      const std::vector<NiahCell>& cells);

// The whole command; progress and tables go to `out`.
StatusOr<EvalReport> run_eval(const EvalOptions& opts, std::FILE* out = stdout);

// Parses the arguments after "eval" and runs it; returns the process exit code.
int eval_command(const std::vector<std::string>& args);

}  // namespace sl::trainer
