// Elementwise ops: unary activations (forward and backward) and binary arithmetic with NumPy /
// PyTorch broadcasting.
//
// Outputs are always new contiguous tensors; inputs may have any strides. The scalar math (the
// `ew::` functions below) is shared by the CPU reference and the CUDA kernels, so the two differ
// only in the order of f32 roundings of library functions (exp, tanh, ...).
//
// Mixed dtypes in a binary op: the result takes the higher-precision float dtype (f64 > f32 > f16
// > bf16) and the lower-precision operand is cast up first. This costs one extra pass over that
// operand but keeps one dtype per kernel instantiation; mixed operands are rare in training.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

#include "core/macros.h"
#include "core/tensor.h"

namespace sl::kernels {

// Activations. gelu is the tanh approximation (PyTorch gelu(approximate="tanh"), HF
// "gelu_pytorch_tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). relu2 is relu(x)^2
// (Nemotron-H's MLP). softplus is log(1 + e^x), returning x itself for x > 20 (PyTorch's threshold,
// beta = 1). Scale is alpha * x, AddScalar is x + alpha.
enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Silu,
  Gelu,
  Relu,
  Relu2,
  Sigmoid,
  Softplus,
  Scale,
  AddScalar
};
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

const char* unary_name(UnaryOp op);
const char* binary_name(BinaryOp op);

// ---- op-level functions (any device, float dtypes; CUDA: f32 and bf16) ----

// y = f(x). `alpha` is used by Scale and AddScalar only.
Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0);
// dx = f'(x) * dy. dy must have x's shape; it is cast to x's dtype if it differs. dx has x's dtype.
Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, double alpha = 0);
inline Tensor scale(const Tensor& x, double alpha) {
  return unary(UnaryOp::Scale, x, alpha);
}
inline Tensor add_scalar(const Tensor& x, double alpha) {
  return unary(UnaryOp::AddScalar, x, alpha);
}

// The broadcast shape of a and b (trailing dims aligned; each pair equal or one of them 1).
// Errors name `op` and both shapes.
Dims broadcast_shapes(const Dims& a, const Dims& b, const char* op = "broadcast");
// out = a (op) b with broadcasting. Same device; dtype rule in the file comment.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
inline Tensor add(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Add, a, b);
}
inline Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Sub, a, b);
}
inline Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Mul, a, b);
}
inline Tensor div(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Div, a, b);
}

// Gradients of out = a (op) b given dout (of the broadcast shape). Each is reduced with sum_to to
// its input's shape and cast to its input's dtype; an entry is undefined where need_* is false.
std::pair<Tensor, Tensor> binary_backward(BinaryOp op, const Tensor& a, const Tensor& b,
                                          const Tensor& dout, bool need_a = true,
                                          bool need_b = true);

// Sums g over the dimensions that broadcasting expanded, so the result has `shape` (which must
// broadcast to g's shape). Returns g itself when the shapes already match. Accumulates in f32.
Tensor sum_to(const Tensor& g, const Dims& shape);

// ---- parameters and the two implementations ----

// Up to two inputs and one output, all of the output's `shape`; broadcast inputs carry stride 0.
// The output is contiguous. Forward unary: in0 = x. Backward unary: in0 = x, in1 = dy, out = dx.
// Binary: in0 = a, in1 = b. All operands have `dtype`.
enum class EwKind : uint8_t { UnaryFwd, UnaryBwd, Binary };
struct ElementwiseParams {
  EwKind kind;
  uint8_t op;  // a UnaryOp or BinaryOp
  float alpha;
  DType dtype;
  void* out;
  const void* in0;
  const void* in1;
  int64_t n;
  Dims shape, in0_strides, in1_strides;
};

void elementwise_cpu(const ElementwiseParams& p);
#if SL_WITH_CUDA
void elementwise_cuda(const ElementwiseParams& p, int device);
#endif

// ---- the scalar math, shared by host and device (C is float, or double on the CPU) ----
namespace ew {

template <class C>
SL_HD C sigmoid(C x) {
  // Stable for both signs: never exponentiates a large positive number. 1 / (1 + e^-x) for x >= 0,
  // e^x / (1 + e^x) otherwise, written with one exp and one division and no branch (a GPU warp
  // with both signs would otherwise run both paths).
  using std::exp;
  C e = exp(x >= C(0) ? -x : x);
  return (x >= C(0) ? C(1) : e) / (C(1) + e);
}

template <class C>
SL_HD C unary_fwd(UnaryOp op, C x, C alpha) {
  using std::exp, std::log, std::log1p, std::tanh;
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return exp(x);
    case UnaryOp::Log:
      return log(x);
    case UnaryOp::Silu:
      return x * sigmoid(x);
    case UnaryOp::Gelu: {
      const C k = C(0.7978845608028654), c = C(0.044715);
      return C(0.5) * x * (C(1) + tanh(k * (x + c * x * x * x)));
    }
    case UnaryOp::Relu:
      return x > C(0) ? x : C(0);
    case UnaryOp::Relu2:
      return x > C(0) ? x * x : C(0);
    case UnaryOp::Sigmoid:
      return sigmoid(x);
    case UnaryOp::Softplus:
      return x > C(20) ? x : log1p(exp(x));
    case UnaryOp::Scale:
      return alpha * x;
    case UnaryOp::AddScalar:
      return x + alpha;
  }
  return x;
}

// dx given x and dy.
template <class C>
SL_HD C unary_bwd(UnaryOp op, C x, C dy, C alpha) {
  using std::exp, std::tanh;
  switch (op) {
    case UnaryOp::Neg:
      return -dy;
    case UnaryOp::Exp:
      return dy * exp(x);
    case UnaryOp::Log:
      return dy / x;
    case UnaryOp::Silu: {
      C s = sigmoid(x);
      return dy * s * (C(1) + x * (C(1) - s));
    }
    case UnaryOp::Gelu: {
      const C k = C(0.7978845608028654), c = C(0.044715);
      C t = tanh(k * (x + c * x * x * x));
      C dt = k * (C(1) + C(3) * c * x * x) * (C(1) - t * t);
      return dy * C(0.5) * (C(1) + t + x * dt);
    }
    case UnaryOp::Relu:
      return x > C(0) ? dy : C(0);
    case UnaryOp::Relu2:
      return x > C(0) ? C(2) * x * dy : C(0);
    case UnaryOp::Sigmoid: {
      C s = sigmoid(x);
      return dy * s * (C(1) - s);
    }
    case UnaryOp::Softplus:
      return x > C(20) ? dy : dy * sigmoid(x);
    case UnaryOp::Scale:
      return alpha * dy;
    case UnaryOp::AddScalar:
      return dy;
  }
  return dy;
}

template <class C>
SL_HD C binary(BinaryOp op, C a, C b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return a;
}

}  // namespace ew
}  // namespace sl::kernels
