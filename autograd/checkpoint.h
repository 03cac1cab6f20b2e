// Activation recomputation (gradient checkpointing): run a function without keeping its
// intermediate activations, and run it again during the backward pass to get its gradients.
//
//   Var y = ag::checkpoint([&](const std::vector<Var>& in) { return block.forward(in[0]); }, {h});
//
// The forward runs fn under NoGradGuard, so only the inputs and the outputs stay alive, and
// records one node with make_result. That node's backward re-runs fn with grad mode on, on fresh
// leaves holding the inputs' values (requiring grad where the node needs the input's gradient),
// back-propagates the incoming gradient from the recomputed outputs in a nested backward() (the
// engine is re-entrant, autograd/variable.h), and returns the leaves' gradients. Parameters that
// fn captures are reached by that nested pass and accumulate their gradients as usual (Note
// [gradient accumulation rule]), so gradients match a run without recomputation: bit for bit on
// the CPU where every op is deterministic, as long as each parameter and input of fn is summed
// over at most two uses inside fn (floating-point addition of two terms commutes; of more, the
// order of the two passes may differ).
//
// Contract for fn: deterministic given its inputs, the parameters and the Generator passed as
// `rng`; it must not modify its inputs in place, and must compute the same output shapes and
// dtypes when recomputed. Random numbers: pass the one Generator fn draws from (e.g. the one
// ag::dropout takes) as `rng`; its state is saved before the forward and restored for the
// recomputation (then put back), so dropout masks are the same in both runs. The Generator must
// outlive the graph. Capture the rest of fn's state by value (it lives in the graph).
//
// The one non-obvious decision: with several outputs (a MoE block's output and its load-balancing
// loss) the node's value is the outputs flattened into one packed vector (in their common dtype,
// f32 when they differ), and each output is a view of it recorded as its own small node; so one
// recomputation serves all outputs and the gradients of all of them reach it together. An output
// that receives no gradient contributes zeros.
//
// When grad mode is off, fn is simply called. When no input needs a gradient the node is still
// recorded (through a hidden zero-size input), so captured parameters get their gradients.
#pragma once

#include <functional>
#include <vector>

#include "autograd/variable.h"

namespace sl::ag {

using CheckpointFn = std::function<Var(const std::vector<Var>&)>;
using CheckpointMultiFn = std::function<std::vector<Var>(const std::vector<Var>&)>;

// One output. inputs may hold undefined Vars (passed through to fn as they are).
Var checkpoint(CheckpointFn fn, const std::vector<Var>& inputs, Generator* rng = nullptr);
// Several outputs (at least one), in fn's order.
std::vector<Var> checkpoint_outputs(CheckpointMultiFn fn, const std::vector<Var>& inputs,
                                    Generator* rng = nullptr);

}  // namespace sl::ag
