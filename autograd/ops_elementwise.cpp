// Differentiable elementwise, reduction, softmax and view ops (autograd/ops_elementwise.h). Each
// backward captures the least it needs: shapes for add/sub/sum/mean and the views, the inputs for
// mul/div and the activations, the output for softmax.
#include "autograd/ops_elementwise.h"

#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"

namespace sl::ag {
namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;

void check_defined(const char* op, std::initializer_list<const Var*> xs) {
  for (const Var* x : xs) SL_CHECK(x->defined()) << op << ": undefined input";
}

Var binary_op(BinaryOp op, const Var& a, const Var& b) {
  const char* name = kernels::binary_name(op);
  check_defined(name, {&a, &b});
  Tensor out = kernels::binary(op, a.value(), b.value());
  if (op == BinaryOp::Add || op == BinaryOp::Sub) {
    return make_result(name, out, {a, b},
                       [op, sa = a.shape(), sb = b.shape(), ta = a.dtype(), tb = b.dtype()](
                           const Tensor& g, const std::vector<bool>& needs) {
                         Tensor da, db;
                         if (needs[0]) da = kernels::sum_to(g, sa).to(ta);
                         if (needs[1]) {
                           Tensor gb = op == BinaryOp::Sub ? kernels::unary(UnaryOp::Neg, g) : g;
                           db = kernels::sum_to(gb, sb).to(tb);
                         }
                         return std::vector<Tensor>{da, db};
                       });
  }
  return make_result(
      name, out, {a, b},
      [op, av = a.value(), bv = b.value()](const Tensor& g, const std::vector<bool>& needs) {
        auto [da, db] = kernels::binary_backward(op, av, bv, g, needs[0], needs[1]);
        return std::vector<Tensor>{da, db};
      });
}

Var unary_op(UnaryOp op, const Var& x, double alpha = 0) {
  const char* name = kernels::unary_name(op);
  check_defined(name, {&x});
  Tensor y = kernels::unary(op, x.value(), alpha);
  if (op == UnaryOp::Neg || op == UnaryOp::Scale || op == UnaryOp::AddScalar) {
    // Linear ops: the derivative does not depend on x, so x is not kept.
    return make_result(name, y, {x}, [op, alpha](const Tensor& g, const std::vector<bool>&) {
      Tensor dx = op == UnaryOp::AddScalar ? g
                  : op == UnaryOp::Neg     ? kernels::unary(UnaryOp::Neg, g)
                                           : kernels::unary(UnaryOp::Scale, g, alpha);
      return std::vector<Tensor>{dx};
    });
  }
  return make_result(name, y, {x},
                     [op, alpha, xv = x.value()](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::unary_backward(op, xv, g, alpha)};
                     });
}

}  // namespace

Var add(const Var& a, const Var& b) {
  return binary_op(BinaryOp::Add, a, b);
}
Var sub(const Var& a, const Var& b) {
  return binary_op(BinaryOp::Sub, a, b);
}
Var mul(const Var& a, const Var& b) {
  return binary_op(BinaryOp::Mul, a, b);
}
Var div(const Var& a, const Var& b) {
  return binary_op(BinaryOp::Div, a, b);
}

Var neg(const Var& x) {
  return unary_op(UnaryOp::Neg, x);
}
Var exp(const Var& x) {
  return unary_op(UnaryOp::Exp, x);
}
Var log(const Var& x) {
  return unary_op(UnaryOp::Log, x);
}
Var silu(const Var& x) {
  return unary_op(UnaryOp::Silu, x);
}
Var gelu(const Var& x) {
  return unary_op(UnaryOp::Gelu, x);
}
Var relu(const Var& x) {
  return unary_op(UnaryOp::Relu, x);
}
Var relu2(const Var& x) {
  return unary_op(UnaryOp::Relu2, x);
}
Var sigmoid(const Var& x) {
  return unary_op(UnaryOp::Sigmoid, x);
}
Var softplus(const Var& x) {
  return unary_op(UnaryOp::Softplus, x);
}
Var scale(const Var& x, double alpha) {
  return unary_op(UnaryOp::Scale, x, alpha);
}
Var add_scalar(const Var& x, double alpha) {
  return unary_op(UnaryOp::AddScalar, x, alpha);
}

Var sum(const Var& x, int dim, bool keepdim) {
  check_defined("sum", {&x});
  return make_result("sum", kernels::sum(x.value(), dim, keepdim), {x},
                     [shape = x.shape(), dim, keepdim](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::sum_backward(g, shape, dim, keepdim)};
                     });
}

Var mean(const Var& x, int dim, bool keepdim) {
  check_defined("mean", {&x});
  return make_result("mean", kernels::mean(x.value(), dim, keepdim), {x},
                     [shape = x.shape(), dim, keepdim](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::mean_backward(g, shape, dim, keepdim)};
                     });
}

Var max(const Var& x, int dim, bool keepdim) {
  check_defined("max", {&x});
  auto [values, indices] = kernels::max(x.value(), dim, keepdim);
  return make_result(
      "max", values, {x},
      [idx = indices, shape = x.shape(), dim, keepdim](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{kernels::max_backward(g, idx, shape, dim, keepdim)};
      });
}

Var sum_all(const Var& x) {
  check_defined("sum_all", {&x});
  return make_result("sum_all", kernels::sum_all(x.value()), {x},
                     [shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::sum_all_backward(g, shape)};
                     });
}

Var mean_all(const Var& x) {
  check_defined("mean_all", {&x});
  return make_result("mean_all", kernels::mean_all(x.value()), {x},
                     [shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::mean_all_backward(g, shape)};
                     });
}

Var softmax(const Var& x) {
  check_defined("softmax", {&x});
  Tensor y = kernels::softmax(x.value());
  return make_result("softmax", y, {x}, [y](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{kernels::softmax_backward(y, g)};
  });
}

Var log_softmax(const Var& x) {
  check_defined("log_softmax", {&x});
  Tensor y = kernels::log_softmax(x.value());
  return make_result("log_softmax", y, {x}, [y](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{kernels::log_softmax_backward(y, g)};
  });
}

Var reshape(const Var& x, const Dims& shape) {
  check_defined("reshape", {&x});
  return make_result("reshape", x.value().reshape(shape), {x},
                     [in = x.shape()](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{g.reshape(in)};
                     });
}

Var transpose(const Var& x, int d0, int d1) {
  check_defined("transpose", {&x});
  return make_result("transpose", x.value().transpose(d0, d1), {x},
                     [d0, d1](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{g.transpose(d0, d1).contiguous()};
                     });
}

Var slice(const Var& x, int dim, int64_t start, int64_t end) {
  check_defined("slice", {&x});
  Tensor v = x.value().slice(dim, start, end);
  int d = x.value().wrap_dim(dim);
  int64_t begin = start < 0 ? start + x.size(d) : start;
  return make_result(
      "slice", v, {x},
      [in = x.shape(), d, begin, len = v.size(d)](const Tensor& g, const std::vector<bool>&) {
        Tensor dx = Tensor::zeros(in, g.dtype(), g.device());
        dx.slice(d, begin, begin + len).copy_(g);
        return std::vector<Tensor>{dx};
      });
}

}  // namespace sl::ag
