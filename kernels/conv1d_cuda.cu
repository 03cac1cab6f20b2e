// CUDA causal conv1d (placeholder while the kernels are written).
#include "kernels/conv1d.h"
#include "kernels/dispatch.h"

namespace sl::kernels {
void conv1d_forward_cuda(const Conv1dParams&, int) { SL_FAIL() << "conv1d: CUDA not implemented"; }
void conv1d_backward_cuda(const Conv1dParams&, int) { SL_FAIL() << "conv1d: CUDA not implemented"; }
}  // namespace sl::kernels
