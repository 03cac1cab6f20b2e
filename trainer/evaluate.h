// Held-out evaluation of a language model: mean cross-entropy, perplexity and next-token accuracy
// over the scored positions of a batch source's eval split. Used by the trainer (every
// logging.eval_every steps) and by `superlinear eval`.
#pragma once

#include <cstdint>
#include <limits>

#include "core/device.h"
#include "data/batch_source.h"
#include "layers/hybrid_lm.h"

namespace sl::trainer {

struct EvalResult {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  double loss = kNaN;      // mean cross-entropy (nats) per scored token
  double accuracy = kNaN;  // fraction of scored tokens whose argmax is the target
  int64_t scored = 0;
  double perplexity() const;
};

// Batches 0 .. n_batches-1 of the eval split, without gradients, on `dev`. NaN loss and accuracy
// when nothing is scored.
EvalResult evaluate_lm(layers::HybridLM& model, const data::BatchSource& source, int64_t n_batches,
                       Device dev, data::Split split = data::Split::kEval);

}  // namespace sl::trainer
