// Gradient checker: analytic gradients from backward() against central finite differences, in
// f64 on the CPU (STYLE rule 3). Every op test uses it.
//
// The scalar checked is L(x) = <f(x), W> for a fixed random W of f(x)'s shape, so every output
// element contributes with its own weight. For each input that requires grad and each of its
// elements, the numeric derivative is (L(x + h e_i) - L(x - h e_i)) / 2h; it must match the
// analytic one within atol + rtol * |numeric|.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace sl::ag {

struct GradcheckOptions {
  double h = 1e-6;
  double rtol = 1e-5;
  double atol = 1e-7;
  uint64_t seed = 1234;
  int64_t max_elements = 4096;  // per input; larger inputs are checked on a strided sample
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatches, with input, index, analytic and numeric values
  double max_abs_err = 0;
};

// `inputs` that require grad must be f64 CPU leaves; others (integer ids, masks) pass through.
GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& fn,
                          const std::vector<Var>& inputs, const GradcheckOptions& opt = {});

}  // namespace sl::ag
