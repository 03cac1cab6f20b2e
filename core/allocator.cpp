#include "core/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/errors.h"
#if SL_WITH_CUDA
#include "core/cuda_context.h"
#endif

namespace sl {

void* host_alloc(size_t nbytes, bool pinned) {
  if (nbytes == 0) nbytes = 1;
#if SL_WITH_CUDA
  if (pinned) {
    void* p = nullptr;
    SL_CUDA_CHECK(cudaMallocHost(&p, nbytes));
    return p;
  }
#else
  SL_CHECK(!pinned) << "pinned host memory needs a CUDA build";
#endif
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  SL_CHECK(p != nullptr) << "host allocation of " << nbytes << " bytes failed";
  return p;
}

void host_free(void* p, bool pinned) {
  if (!p) return;
#if SL_WITH_CUDA
  if (pinned) {
    cudaFreeHost(p);
    return;
  }
#endif
  (void)pinned;
  std::free(p);
}

namespace cuda_alloc {

size_t round_size(size_t nbytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSmallLimit = size_t(1) << 20;
  if (nbytes == 0) nbytes = 1;
  if (nbytes <= kSmallLimit) return (nbytes + kSmall - 1) / kSmall * kSmall;
  return (nbytes + kLarge - 1) / kLarge * kLarge;
}

#if SL_WITH_CUDA
namespace {

// One pool per device. See Note [caching allocator].
struct Pool {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // size class -> cached blocks
  std::unordered_map<void*, size_t> live;            // block -> size class
  AllocatorStats stats;

  void release_cache(int device) {
    cuda::set_device(device);
    for (auto& [size, blocks] : free_blocks) {
      for (void* p : blocks) {
        cudaFree(p);
        stats.reserved -= int64_t(size);
      }
    }
    free_blocks.clear();
  }
};

Pool& pool(int device) {
  static Pool pools[16];
  SL_CHECK(device >= 0 && device < 16) << "device index " << device;
  return pools[device];
}

}  // namespace

void* allocate(size_t nbytes, int device) {
  Pool& p = pool(device);
  size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.num_allocs++;
  void* ptr = nullptr;
  auto it = p.free_blocks.find(size);
  if (it != p.free_blocks.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
  } else {
    cuda::set_device(device);
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state before retrying
      SL_CUDA_CHECK(cudaDeviceSynchronize());
      p.release_cache(device);
      err = cudaMalloc(&ptr, size);
    }
    SL_CHECK(err == cudaSuccess) << "out of GPU memory on cuda:" << device << " allocating "
                                 << size << " bytes (" << p.stats.allocated
                                 << " allocated, " << p.stats.reserved << " reserved): "
                                 << cudaGetErrorString(err);
    p.stats.reserved += int64_t(size);
    p.stats.num_cuda_mallocs++;
  }
  p.live[ptr] = size;
  p.stats.allocated += int64_t(size);
  if (p.stats.allocated > p.stats.peak_allocated) p.stats.peak_allocated = p.stats.allocated;
  return ptr;
}

void free(void* ptr, int device) {
  if (!ptr) return;
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.live.find(ptr);
  SL_CHECK(it != p.live.end()) << "freeing a pointer this allocator did not hand out";
  p.stats.allocated -= int64_t(it->second);
  p.free_blocks[it->second].push_back(ptr);
  p.live.erase(it);
}

AllocatorStats stats(int device) {
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void reset_peak(int device) {
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.peak_allocated = p.stats.allocated;
}

void empty_cache(int device) {
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  SL_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(device)));
  p.release_cache(device);
}

#else  // no CUDA in this build

void* allocate(size_t, int) {
  SL_FAIL() << "this build has no CUDA support";
  return nullptr;
}
void free(void*, int) {}
AllocatorStats stats(int) { return {}; }
void reset_peak(int) {}
void empty_cache(int) {}

#endif

}  // namespace cuda_alloc
}  // namespace sl
