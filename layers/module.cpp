#include "layers/module.h"

namespace sl::layers {

ag::Var Module::register_parameter(const std::string& name, Tensor value) {
  for (auto& [n, _] : params_) SL_CHECK(n != name) << "parameter '" << name << "' registered twice";
  ag::Var v(std::move(value), /*requires_grad=*/true, name);
  params_.emplace_back(name, v);
  return v;
}

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, ag::Var>>* out) const {
  for (auto& [n, v] : params_) out->emplace_back(prefix + n, v);
  for (auto& [n, m] : children_) m->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, ag::Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, ag::Var>> out;
  collect("", &out);
  return out;
}

std::vector<ag::Var> Module::parameters() const {
  std::vector<ag::Var> out;
  for (auto& [n, v] : named_parameters()) out.push_back(v);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [_, v] : named_parameters()) n += v.value().numel();
  return n;
}

ag::Var Module::find_parameter(const std::string& name) const {
  for (auto& [n, v] : named_parameters())
    if (n == name) return v;
  return ag::Var();
}

void Module::to(Device device, DType dtype) {
  for (auto& [n, v] : named_parameters()) {
    v.set_value(v.value().to(dtype).to(device));
    v.zero_grad();
  }
}

void Module::zero_grad() {
  for (auto& [n, v] : named_parameters()) v.zero_grad();
}

}  // namespace sl::layers
