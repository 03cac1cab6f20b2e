// The `recompute:` setting of a training run: which blocks of a HybridLM recompute their
// activations in the backward pass (HybridLM::set_recompute, autograd/checkpoint.h) instead of
// keeping them from the forward, trading about one more forward of those blocks for their memory.
//
//   none     nothing is recomputed (the default)
//   all      every block
//   M*S      the blocks whose letter is listed (here Mamba-2, attention, superlinear attention)
//
// The one non-obvious decision: a listed letter must occur in the model's pattern, so a setting
// written for another model is an error rather than silently doing nothing.
#pragma once

#include <string>

#include "core/errors.h"

namespace sl::layers {

// The block letters to recompute ("" for none; for "all", the distinct letters of pattern).
// InvalidArgument, naming the letter and the pattern, for a letter that is not a block kind or is
// not in pattern, or an empty spec.
StatusOr<std::string> recompute_kinds(const std::string& spec, const std::string& pattern);

}  // namespace sl::layers
