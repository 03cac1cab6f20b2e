// Starting a run from pretrained weights: the top-level `init_from: PATH` and
// `convert_attention: superlinear` keys.
//
//   init_from: a Hugging Face NemotronH directory (has config.json; layers/hf_checkpoint.h), one
//              of our checkpoint files (*.slck: its "param/<name>" master weights), or a
//              checkpoint directory (its newest valid checkpoint). Only the weights are taken:
//              the optimizer, step and data position start fresh. A run that resumes from its own
//              checkpoint.dir ignores init_from (the checkpoint holds the trained weights).
//   convert_attention: superlinear turns every `*` block of model.pattern into an `S` block (the
//              config parser does it, so the resolved pattern shows `S`); the source's attention
//              weights load into the S blocks' q/k/v/o projections and Qs starts as a copy of Q
//              (SuperlinearAttention::init_qs_from_q, spec §15).
//
// The one non-obvious decision: the `model:` section stays authoritative and must describe the
// source model — every field that changes what the model computes (shapes, pattern, norms,
// dt limits, routing) is compared with the source's config and a difference is an error naming
// model.<key> and both values; fields that do not change the function (initialisation ranges,
// SSD chunk size, aux-loss weight, superlinear settings) may differ. Names and shapes of the
// tensors are then checked one by one by the loader.
#pragma once

#include <string>

#include "core/errors.h"
#include "layers/config.h"
#include "layers/hybrid_lm.h"

namespace sl::trainer {

// mode "": nothing; "superlinear": every '*' of m->pattern becomes 'S' and the result is
// validated. Anything else is InvalidArgument.
Status convert_attention_pattern(const std::string& mode, layers::ModelConfig* m);

// "" when the two configs compute the same function, else "model.<key>: <a> vs <b>".
std::string architecture_difference(const layers::ModelConfig& ours,
                                    const layers::ModelConfig& source);

// Loads `path` into the model (whose config already has the converted pattern when
// convert_attention is "superlinear"). Returns a one-line description for the console.
StatusOr<std::string> init_model_from(const std::string& path,
                                      const std::string& convert_attention,
                                      layers::HybridLM* model);

}  // namespace sl::trainer
