#include "tests/common/gpu.h"

namespace sl::test {

std::string no_gpu_reason() {
#if !SL_WITH_CUDA
  return "this build has no CUDA support";
#else
  return cuda_available() ? "" : "no CUDA device visible";
#endif
}

}  // namespace sl::test
