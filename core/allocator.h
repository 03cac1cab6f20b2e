// Allocators: aligned host memory, and a caching allocator for CUDA device memory.
//
// Note [caching allocator]
// cudaMalloc/cudaFree synchronise the device and cost tens of microseconds, so ops never call them.
// Freed device blocks go to a free list keyed by their rounded size (the size class) and are handed
// out again for a request of the same class. Classes: multiples of 512 B up to 1 MiB, multiples of
// 2 MiB above. There is no splitting or coalescing: a cache miss calls cudaMalloc; when that fails,
// the cache is released and the call retried once. All framework work runs on one stream per
// device (core/cuda_context.h), so a block freed by the host can be reused at once: later work on
// the same stream is ordered after the work that used it. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sl {

struct AllocatorStats {
  int64_t allocated = 0;       // bytes handed out and not yet freed (rounded sizes)
  int64_t reserved = 0;        // bytes obtained from cudaMalloc, cached or in use
  int64_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  int64_t num_allocs = 0;      // allocate() calls
  int64_t num_cuda_mallocs = 0;  // of which were cache misses
};

// Host memory, 64-byte aligned. `pinned` uses cudaMallocHost when CUDA is available.
void* host_alloc(size_t nbytes, bool pinned);
void host_free(void* p, bool pinned);

namespace cuda_alloc {
size_t round_size(size_t nbytes);        // the size class a request falls in
void* allocate(size_t nbytes, int device);
void free(void* p, int device);
AllocatorStats stats(int device);
void reset_peak(int device);
void empty_cache(int device);            // cudaFree every cached (unused) block
}  // namespace cuda_alloc

}  // namespace sl
