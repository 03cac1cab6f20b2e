#include "core/storage.h"

#include "core/allocator.h"

namespace sl {

Storage::Storage(size_t nbytes, Device device, bool pinned)
    : nbytes_(nbytes), device_(device), pinned_(pinned && device.is_cpu()) {
  data_ = device.is_cuda() ? cuda_alloc::allocate(nbytes, device.index)
                           : host_alloc(nbytes, pinned_);
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda_alloc::free(data_, device_.index);
  else
    host_free(data_, pinned_);
}

}  // namespace sl
