// Activation recomputation (autograd/checkpoint.h): the no-grad forward, the packed node for
// several outputs, and the recomputing backward.
#include "autograd/checkpoint.h"

#include <memory>

namespace sl::ag {
namespace {

// What the node keeps: fn, the inputs' values and the Generator states around the forward.
struct Saved {
  CheckpointMultiFn fn;
  std::vector<Tensor> values;  // one per input; undefined where the input was
  std::vector<Dims> shapes;    // the outputs'
  std::vector<DType> dtypes;
  Generator* rng = nullptr;
  Generator rng_before, rng_after;
};

// Re-runs fn with grad mode on and back-propagates out_grads (one per output, undefined where no
// gradient arrived) through it. Returns one gradient per entry of needs (the node's inputs, maybe
// with the hidden one last).
std::vector<Tensor> recompute_backward(const Saved& s, const std::vector<Tensor>& out_grads,
                                       const std::vector<bool>& needs) {
  GradModeGuard grad_on(true);
  std::vector<Var> leaves(s.values.size());
  for (size_t i = 0; i < s.values.size(); ++i)
    if (s.values[i].defined()) leaves[i] = Var(s.values[i], needs[i]);
  std::vector<Var> outs;
  if (s.rng) {
    const Generator now = *s.rng;
    *s.rng = s.rng_before;
    outs = s.fn(leaves);
    const bool same = s.rng->seed == s.rng_after.seed && s.rng->offset == s.rng_after.offset;
    const uint64_t drawn = s.rng->offset - s.rng_before.offset;
    *s.rng = now;
    SL_CHECK(same) << "checkpoint: the recomputation drew " << drawn
                   << " random offsets from the Generator, the forward "
                   << s.rng_after.offset - s.rng_before.offset << " (fn must be deterministic)";
  } else {
    outs = s.fn(leaves);
  }
  SL_CHECK(outs.size() == s.shapes.size())
      << "checkpoint: the recomputation returned " << outs.size() << " outputs, the forward "
      << s.shapes.size();
  for (size_t i = 0; i < outs.size(); ++i)
    SL_CHECK(outs[i].defined() && outs[i].shape() == s.shapes[i] && outs[i].dtype() == s.dtypes[i])
        << "checkpoint: recomputed output " << i << " is "
        << (outs[i].defined() ? outs[i].value().str() : "undefined") << ", the forward gave "
        << dtype_name(s.dtypes[i]) << s.shapes[i].str();

  Var root = make_result("checkpoint_recompute", Tensor::zeros({}, DType::F32), outs,
                         [out_grads](const Tensor&, const std::vector<bool>& wants) {
                           std::vector<Tensor> g(wants.size());
                           for (size_t i = 0; i < wants.size(); ++i)
                             if (wants[i]) g[i] = out_grads[i];
                           return g;
                         });
  if (root.requires_grad()) root.backward();

  std::vector<Tensor> grads(needs.size());
  for (size_t i = 0; i < leaves.size(); ++i)
    if (needs[i]) grads[i] = leaves[i].grad();
  return grads;
}

}  // namespace

std::vector<Var> checkpoint_outputs(CheckpointMultiFn fn, const std::vector<Var>& inputs,
                                    Generator* rng) {
  if (!grad_enabled()) return fn(inputs);
  auto s = std::make_shared<Saved>();
  s->rng = rng;
  if (rng) s->rng_before = *rng;
  std::vector<Var> outs;
  {
    NoGradGuard no_grad;
    outs = fn(inputs);
  }
  if (rng) s->rng_after = *rng;
  SL_CHECK(!outs.empty()) << "checkpoint: fn returned no outputs";
  const Device dev = outs[0].device();
  DType common = outs[0].dtype();
  int64_t total = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    SL_CHECK(outs[i].defined()) << "checkpoint: output " << i << " of fn is undefined";
    SL_CHECK(outs[i].device() == dev) << "checkpoint: outputs on different devices ("
                                      << outs[0].value().str() << ", " << outs[i].value().str()
                                      << ")";
    s->shapes.push_back(outs[i].shape());
    s->dtypes.push_back(outs[i].dtype());
    if (outs[i].dtype() != common) common = DType::F32;
    total += outs[i].value().numel();
  }
  for (const Var& v : outs)
    if (v.dtype() == DType::F64) common = DType::F64;

  std::vector<Var> node_inputs = inputs;
  bool any = false;
  for (const Var& v : inputs) any = any || v.requires_grad();
  // A hidden leaf that wants a gradient: the node is recorded even when no input needs one.
  if (!any) node_inputs.push_back(Var(Tensor::zeros({0}, DType::F32), true));
  s->values.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) s->values[i] = inputs[i].value();
  s->fn = std::move(fn);

  if (outs.size() == 1) {
    return {make_result("checkpoint", outs[0].value(), node_inputs,
                        [s](const Tensor& g, const std::vector<bool>& needs) {
                          return recompute_backward(*s, {g}, needs);
                        })};
  }

  // Several outputs: Note in the header. Output i is packed[off_i, off_i + numel_i).
  std::vector<int64_t> offsets;
  Tensor packed = Tensor::empty({total}, common, dev);
  for (int64_t i = 0, off = 0; i < int64_t(outs.size()); ++i) {
    const int64_t n = outs[i].value().numel();
    packed.slice(0, off, off + n).reshape(s->shapes[i]).copy_(outs[i].value());
    offsets.push_back(off);
    off += n;
  }
  outs.clear();
  Var all = make_result("checkpoint", packed, node_inputs,
                        [s, offsets](const Tensor& g, const std::vector<bool>& needs) {
                          std::vector<Tensor> gs;
                          for (size_t i = 0; i < offsets.size(); ++i)
                            gs.push_back(g.slice(0, offsets[i], offsets[i] + s->shapes[i].numel())
                                             .reshape(s->shapes[i])
                                             .to(s->dtypes[i]));
                          return recompute_backward(*s, gs, needs);
                        });
  std::vector<Var> result;
  for (size_t i = 0; i < offsets.size(); ++i) {
    const int64_t off = offsets[i], n = s->shapes[i].numel();
    Tensor view = packed.slice(0, off, off + n).reshape(s->shapes[i]).to(s->dtypes[i]);
    result.push_back(make_result("checkpoint_output", view, {all},
                                 [off, total, common, dev](const Tensor& g,
                                                           const std::vector<bool>&) {
                                   Tensor z = Tensor::zeros({total}, common, dev);
                                   z.slice(0, off, off + g.numel()).reshape(g.shape()).copy_(g);
                                   return std::vector<Tensor>{z};
                                 }));
  }
  return result;
}

Var checkpoint(CheckpointFn fn, const std::vector<Var>& inputs, Generator* rng) {
  return checkpoint_outputs(
      [fn = std::move(fn)](const std::vector<Var>& in) { return std::vector<Var>{fn(in)}; },
      inputs, rng)[0];
}

}  // namespace sl::ag
