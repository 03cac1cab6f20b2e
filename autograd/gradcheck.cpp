#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

namespace sl::ag {

GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& fn,
                          const std::vector<Var>& inputs, const GradcheckOptions& opt) {
  GradcheckResult res;
  for (const Var& v : inputs) {
    if (!v.defined() || !v.requires_grad()) continue;
    SL_CHECK(v.dtype() == DType::F64 && v.device().is_cpu() && v.value().is_contiguous())
        << "gradcheck: inputs that require grad must be contiguous f64 CPU tensors, got "
        << v.value().str();
  }
  Var out0 = fn(inputs);
  SL_CHECK(out0.requires_grad()) << "gradcheck: the output does not depend on any input "
                                    "that requires grad";
  Generator gen(opt.seed);
  Tensor w = Tensor::randn(out0.shape(), gen, DType::F64);
  std::vector<double> wv = w.to_vector<double>();

  auto loss = [&]() {
    NoGradGuard ng;
    Tensor o = fn(inputs).value().to(DType::F64).contiguous();
    std::vector<double> ov = o.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < ov.size(); ++i) s += ov[i] * wv[i];
    return s;
  };

  for (const Var& v : inputs)
    if (v.defined() && v.requires_grad()) const_cast<Var&>(v).zero_grad();
  out0.backward(w.to(out0.dtype()));

  std::ostringstream msg;
  int reported = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Var& v = inputs[k];
    if (!v.defined() || !v.requires_grad()) continue;
    int64_t n = v.value().numel();
    std::vector<double> analytic =
        v.grad().defined() ? v.grad().to(DType::F64).contiguous().to_vector<double>()
                           : std::vector<double>(size_t(n), 0.0);
    double* x = v.value().data<double>();
    int64_t step = std::max<int64_t>(1, n / opt.max_elements);
    for (int64_t i = 0; i < n; i += step) {
      double orig = x[i];
      x[i] = orig + opt.h;
      double lp = loss();
      x[i] = orig - opt.h;
      double lm = loss();
      x[i] = orig;
      double numeric = (lp - lm) / (2 * opt.h);
      double err = std::fabs(numeric - analytic[size_t(i)]);
      res.max_abs_err = std::max(res.max_abs_err, err);
      if (err > opt.atol + opt.rtol * std::fabs(numeric) || std::isnan(analytic[size_t(i)])) {
        res.ok = false;
        if (reported++ < 8)
          msg << "\n  input " << k << (v.name().empty() ? "" : " '" + v.name() + "'")
              << " element " << i << ": analytic " << analytic[size_t(i)] << ", numeric "
              << numeric << ", |err| " << err;
      }
    }
  }
  res.message = msg.str();
  return res;
}

}  // namespace sl::ag
