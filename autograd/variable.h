// Var: a tensor that takes part in reverse-mode differentiation.
//
// A Var holds a value (a Tensor), an optional gradient, and — when it was produced by an op from
// inputs that require gradients — the Node that produced it. Leaves are Vars made directly from
// tensors (parameters, inputs); only leaves with requires_grad keep a gradient after backward().
//
// Note [gradient accumulation rule]
// (1) Within one backward(), the gradient reaching a node is the sum of the gradients from all of
//     its consumers; the node runs once, after every consumer has run (topological order).
// (2) Across backward() calls, a leaf's grad accumulates: grad += new contribution, until
//     zero_grad(). The first contribution is stored as given (no copy is made if the producer
//     handed over a fresh tensor), later ones are added in place, in f32 for f32 leaves.
// (3) The gradient of a leaf has the leaf's shape, dtype and device.
// Ops see none of this: a Node only maps the gradient of its output to gradients of its inputs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sl::ag {

class Node;

struct VarImpl {
  Tensor value;
  Tensor grad;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;      // set for op outputs
  std::shared_ptr<Node> accumulator;  // for leaves that require grad (created on first use)
  std::string name;
};

class Var {
 public:
  Var() = default;
  // A leaf.
  explicit Var(Tensor value, bool requires_grad = false, std::string name = "");

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const { return impl_->value; }
  // The accumulated gradient (undefined until a backward pass reaches this leaf).
  const Tensor& grad() const { return impl_->grad; }
  void set_grad(Tensor g) { impl_->grad = std::move(g); }
  void zero_grad() { impl_->grad = Tensor(); }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  // Leaves only. false: ops record no gradient for this leaf from now on, so none is computed for
  // it at all (frozen parameters); graphs already built keep their edges. true needs a float dtype.
  void set_requires_grad(bool requires_grad);
  bool is_leaf() const { return !impl_->grad_fn; }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  const std::string& name() const { return impl_->name; }
  // Replaces the value of a leaf in place (optimizer steps, loading checkpoints).
  void set_value(Tensor v) { impl_->value = std::move(v); }

  const Dims& shape() const { return impl_->value.shape(); }
  int64_t size(int d) const { return impl_->value.size(d); }
  int dim() const { return impl_->value.dim(); }
  DType dtype() const { return impl_->value.dtype(); }
  Device device() const { return impl_->value.device(); }

  // Back-propagates from this Var. grad_out defaults to 1 for a single-element Var. Re-entrant: a
  // node may run a backward() of another graph while it is applied (ag::checkpoint).
  void backward(const Tensor& grad_out = Tensor()) const;
  // Same value, cut from the graph, no gradient.
  Var detach() const { return Var(impl_->value, false); }

  // The edge a consumer stores to reach this Var's gradient: its grad_fn, or its accumulator for
  // a leaf that requires grad; null when no gradient is needed.
  std::shared_ptr<Node> gradient_edge() const;

 private:
  friend Var make_result(const char*, Tensor, std::vector<Var>,
                         std::function<std::vector<Tensor>(const Tensor&,
                                                           const std::vector<bool>&)>);
  std::shared_ptr<VarImpl> impl_;
};

// A node of the graph: maps d(loss)/d(output) to d(loss)/d(input_i).
class Node {
 public:
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  // Returns one tensor per input; an entry may be undefined when that input needs no gradient.
  virtual std::vector<Tensor> apply(const Tensor& grad_out) = 0;
  // Edges to the inputs' nodes (null where the input needs no gradient).
  std::vector<std::shared_ptr<Node>> next;
};

// Grad mode: when disabled (NoGradGuard), ops record nothing. Thread-local.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Sets grad mode for its lifetime, whatever it was (ag::checkpoint turns it on to recompute inside
// a backward pass).
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

// The one way ops record themselves. `backward(grad_out, needs)` returns one gradient per input
// (needs[i] says whether input i wants one; return an undefined Tensor where it does not). It
// should capture only what it needs (STYLE rule 4). If grad mode is off or no input requires
// grad, no node is made and the result is a plain leaf.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor&, const std::vector<bool>&)>;
Var make_result(const char* op, Tensor value, std::vector<Var> inputs, BackwardFn backward);

}  // namespace sl::ag
