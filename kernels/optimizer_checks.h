// The argument checks shared by the fused optimizer steps (kernels/adamw.h, kernels/sgd.h).
#pragma once

#include <initializer_list>

#include "core/tensor.h"

namespace sl::kernels {

// Throws sl::Error naming `op` unless: param is f32, grad f32 or bf16, every state buffer f32,
// all on param's device, of param's shape and contiguous; param_bf16, when defined, likewise but
// bf16.
void check_optimizer_tensors(const char* op, const Tensor& param, const Tensor& grad,
                             std::initializer_list<const Tensor*> state, const Tensor& param_bf16);

}  // namespace sl::kernels
