#include "core/device.h"

#if SL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace sl {

int cuda_device_count() {
#if SL_WITH_CUDA
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

Device default_device() { return cuda_available() ? Device::cuda(0) : Device::cpu(); }

}  // namespace sl
