#include "autograd/variable.h"

#include <unordered_map>

#include "kernels/accumulate.h"

namespace sl::ag {
namespace {

thread_local bool g_grad_enabled = true;

// The node a leaf's gradient flows into. Holds the leaf weakly: a graph does not keep parameters
// alive. Applies rule (2)-(3) of Note [gradient accumulation rule].
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::weak_ptr<VarImpl> leaf) : leaf_(std::move(leaf)) {}
  const char* name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    auto leaf = leaf_.lock();
    if (!leaf) return {};
    const Tensor& v = leaf->value;
    SL_CHECK(g.shape() == v.shape())
        << "gradient of shape " << g.shape_str() << " for leaf '" << leaf->name << "' of shape "
        << v.shape_str();
    if (!leaf->grad.defined()) {
      Tensor fresh = g.to(v.device()).to(v.dtype());
      // Own the storage: never alias a tensor the producer (or another leaf) may still hold.
      leaf->grad = fresh.storage() == g.storage() ? fresh.clone() : fresh;
    } else {
      kernels::accumulate_(leaf->grad, g);
    }
    return {};
  }

 private:
  std::weak_ptr<VarImpl> leaf_;
};

class FunctionNode : public Node {
 public:
  FunctionNode(const char* name, BackwardFn fn, std::vector<bool> needs)
      : name_(name), fn_(std::move(fn)), needs_(std::move(needs)) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> apply(const Tensor& g) override {
    std::vector<Tensor> grads = fn_(g, needs_);
    SL_CHECK(grads.size() == needs_.size())
        << "backward of " << name_ << " returned " << grads.size() << " gradients for "
        << needs_.size() << " inputs";
    return grads;
  }

 private:
  const char* name_;
  BackwardFn fn_;
  std::vector<bool> needs_;
};

}  // namespace

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }
GradModeGuard::GradModeGuard(bool enabled) : prev_(g_grad_enabled) { g_grad_enabled = enabled; }
GradModeGuard::~GradModeGuard() { g_grad_enabled = prev_; }

Var::Var(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
  SL_CHECK(!requires_grad || dtype_is_float(value.dtype()))
      << "only floating tensors can require grad, got " << dtype_name(value.dtype());
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
  impl_->name = std::move(name);
}

void Var::set_requires_grad(bool requires_grad) {
  SL_CHECK(defined() && is_leaf()) << "set_requires_grad on a Var that is not a leaf ('"
                                   << (impl_ ? impl_->name : "") << "')";
  SL_CHECK(!requires_grad || dtype_is_float(impl_->value.dtype()))
      << "only floating tensors can require grad, got " << dtype_name(impl_->value.dtype());
  impl_->requires_grad = requires_grad;
}

std::shared_ptr<Node> Var::gradient_edge() const {
  if (!impl_ || !impl_->requires_grad) return nullptr;
  if (impl_->grad_fn) return impl_->grad_fn;
  if (!impl_->accumulator) impl_->accumulator = std::make_shared<AccumulateGrad>(impl_);
  return impl_->accumulator;
}

Var make_result(const char* op, Tensor value, std::vector<Var> inputs, BackwardFn backward) {
  Var out;
  out.impl_ = std::make_shared<VarImpl>();
  out.impl_->value = std::move(value);
  if (!g_grad_enabled) return out;
  std::vector<bool> needs(inputs.size());
  std::vector<std::shared_ptr<Node>> next(inputs.size());
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    next[i] = inputs[i].defined() ? inputs[i].gradient_edge() : nullptr;
    needs[i] = next[i] != nullptr;
    any = any || needs[i];
  }
  if (!any) return out;
  auto node = std::make_shared<FunctionNode>(op, std::move(backward), std::move(needs));
  node->next = std::move(next);
  out.impl_->requires_grad = true;
  out.impl_->grad_fn = std::move(node);
  return out;
}

void Var::backward(const Tensor& grad_out) const {
  SL_CHECK(requires_grad()) << "backward() of a Var that does not require grad";
  Tensor g = grad_out;
  if (!g.defined()) {
    SL_CHECK(value().numel() == 1) << "backward() without a gradient needs a single-element "
                                      "output, got shape "
                                   << value().shape_str();
    g = Tensor::full(value().shape(), 1.0, value().dtype(), value().device());
  }
  SL_CHECK(g.shape() == value().shape()) << "backward() gradient of shape " << g.shape_str()
                                         << " for output of shape " << value().shape_str();
  std::shared_ptr<Node> root = gradient_edge();
  // Everything below is local to this call, so a node may start a nested backward() of its own
  // graph from apply() (ag::checkpoint recomputes a block there); leaves reached by both passes
  // accumulate per Note [gradient accumulation rule].

  // Count, for every reachable node, how many consumers will send it a gradient.
  std::unordered_map<Node*, int> pending_inputs;
  std::vector<Node*> stack = {root.get()};
  pending_inputs[root.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& nx : n->next) {
      if (!nx) continue;
      auto [it, inserted] = pending_inputs.try_emplace(nx.get(), 0);
      it->second++;
      if (inserted) stack.push_back(nx.get());
    }
  }

  // Kahn's order: a node runs once all its consumers have contributed (rule 1).
  std::unordered_map<Node*, Tensor> grads;
  grads[root.get()] = g;
  std::vector<Node*> ready = {root.get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor gn = std::move(grads[n]);
    grads.erase(n);
    // A node that no gradient reached (every consumer returned undefined) is not applied, but
    // still releases the nodes waiting on it.
    std::vector<Tensor> in_grads;
    if (gn.defined()) in_grads = n->apply(gn);
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* nx = n->next[i].get();
      if (!nx) continue;
      Tensor& acc = grads[nx];
      if (i < in_grads.size() && in_grads[i].defined())
        acc = acc.defined() ? kernels::sum_of(acc, in_grads[i]) : in_grads[i];
      if (--pending_inputs[nx] == 0) ready.push_back(nx);
    }
  }
}

}  // namespace sl::ag
