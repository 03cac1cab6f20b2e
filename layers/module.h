// Module: a layer that owns named parameters and child modules.
//
// Parameters are ag::Var leaves (requires_grad) registered in construction order; children too.
// named_parameters() walks them depth-first and joins names with '.', so a model's names are the
// Hugging Face names when modules are registered under the HF attribute names ("embeddings",
// "layers.3.mixer.in_proj.weight", ...). That order is the checkpoint and optimizer-state order:
// optimizer state is kept per parameter name, so it can later be sharded per parameter.
// Modules are not copyable; a parent owns its children.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"

namespace sl::layers {

// What a block needs to know about the token stream besides the activations.
struct SequenceInfo {
  // [B, T] int32 document id per token (packed sequences): the state of Mamba layers and the
  // reach of attention reset where the id changes. Undefined: one document per row.
  Tensor seq_idx;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // (name, parameter) pairs, depth-first in registration order.
  std::vector<std::pair<std::string, ag::Var>> named_parameters() const;
  std::vector<ag::Var> parameters() const;
  int64_t num_parameters() const;
  // The parameter with this dotted name, or an undefined Var.
  ag::Var find_parameter(const std::string& name) const;
  // Moves and casts every parameter (their gradients are dropped).
  void to(Device device, DType dtype);
  void zero_grad();

 protected:
  // Registers a trainable leaf initialised with `value`.
  ag::Var register_parameter(const std::string& name, Tensor value);
  template <class M>
  M& register_module(const std::string& name, std::unique_ptr<M> m) {
    M& ref = *m;
    children_.emplace_back(name, std::move(m));
    return ref;
  }

 private:
  void collect(const std::string& prefix,
               std::vector<std::pair<std::string, ag::Var>>* out) const;

  std::vector<std::pair<std::string, ag::Var>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

}  // namespace sl::layers
