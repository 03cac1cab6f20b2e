// CUDA chunked SSD scan (placeholder while the kernels are written).
#include "kernels/dispatch.h"
#include "kernels/ssd.h"

namespace sl::kernels {
void ssd_forward_cuda(const SsdParams&, int) { SL_FAIL() << "ssd_scan: CUDA not implemented"; }
void ssd_backward_cuda(const SsdParams&, int) { SL_FAIL() << "ssd_scan: CUDA not implemented"; }
}  // namespace sl::kernels
