// The caching CUDA allocator (Note [caching allocator]): size classes, block reuse, statistics,
// and tensors returning their memory to the pool. Every GPU test starts from an emptied cache and
// checks differences, since the process may hold other blocks.
#include "core/allocator.h"

#include <gtest/gtest.h>

#include "core/tensor.h"
#include "tests/common/gpu.h"

namespace sl {
namespace {

constexpr size_t kKiB = 1024, kMiB = 1024 * 1024;

TEST(AllocatorSizeClasses, SmallIn512ByteStepsLargeIn2MiBSteps) {
  using cuda_alloc::round_size;
  EXPECT_EQ(round_size(0), 512u);
  EXPECT_EQ(round_size(1), 512u);
  EXPECT_EQ(round_size(512), 512u);
  EXPECT_EQ(round_size(513), 1024u);
  EXPECT_EQ(round_size(1000), 1024u);
  EXPECT_EQ(round_size(100 * kKiB + 1), 100 * kKiB + 512);
  EXPECT_EQ(round_size(kMiB), kMiB);
  EXPECT_EQ(round_size(kMiB + 1), 2 * kMiB);
  EXPECT_EQ(round_size(2 * kMiB), 2 * kMiB);
  EXPECT_EQ(round_size(2 * kMiB + 1), 4 * kMiB);
  EXPECT_EQ(round_size(5 * kMiB), 6 * kMiB);
  // Every class holds its request and wastes less than one step.
  for (size_t n = 1; n < 8 * kMiB; n = n * 3 + 7) {
    size_t r = round_size(n);
    EXPECT_GE(r, n);
    EXPECT_LT(r - n, n <= kMiB ? 512u : 2 * kMiB) << n;
  }
}

class AllocatorGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::no_gpu_reason().empty()) return;
    cuda_alloc::empty_cache(0);
    cuda_alloc::reset_peak(0);
  }
  AllocatorStats stats() const { return cuda_alloc::stats(0); }
};

TEST_F(AllocatorGpu, FreedBlockIsReusedForTheSameSizeClass) {
  SL_REQUIRE_GPU();
  AllocatorStats s0 = stats();
  void* a = cuda_alloc::allocate(1000, 0);
  AllocatorStats s1 = stats();
  EXPECT_EQ(s1.num_cuda_mallocs, s0.num_cuda_mallocs + 1);
  EXPECT_EQ(s1.num_allocs, s0.num_allocs + 1);
  EXPECT_EQ(s1.allocated, s0.allocated + 1024);
  EXPECT_EQ(s1.reserved, s0.reserved + 1024);
  cuda_alloc::free(a, 0);
  AllocatorStats s2 = stats();
  EXPECT_EQ(s2.allocated, s0.allocated);
  EXPECT_EQ(s2.reserved, s1.reserved);  // cached, not returned to CUDA
  void* b = cuda_alloc::allocate(900, 0);  // same class (1024)
  AllocatorStats s3 = stats();
  EXPECT_EQ(b, a);
  EXPECT_EQ(s3.num_cuda_mallocs, s1.num_cuda_mallocs);
  EXPECT_EQ(s3.num_allocs, s1.num_allocs + 1);
  EXPECT_EQ(s3.allocated, s1.allocated);
  void* c = cuda_alloc::allocate(2000, 0);  // another class: a cache miss
  EXPECT_NE(c, b);
  EXPECT_EQ(stats().num_cuda_mallocs, s1.num_cuda_mallocs + 1);
  cuda_alloc::free(b, 0);
  cuda_alloc::free(c, 0);
  EXPECT_EQ(stats().allocated, s0.allocated);
}

TEST_F(AllocatorGpu, PeakTracksHighWaterMarkUntilReset) {
  SL_REQUIRE_GPU();
  int64_t base = stats().allocated;
  EXPECT_EQ(stats().peak_allocated, base);
  void* a = cuda_alloc::allocate(3 * kMiB, 0);  // 4 MiB class
  void* b = cuda_alloc::allocate(kMiB, 0);      // 1 MiB class
  EXPECT_EQ(stats().peak_allocated, base + int64_t(5 * kMiB));
  cuda_alloc::free(a, 0);
  EXPECT_EQ(stats().allocated, base + int64_t(kMiB));
  EXPECT_EQ(stats().peak_allocated, base + int64_t(5 * kMiB));  // unchanged by a free
  cuda_alloc::reset_peak(0);
  EXPECT_EQ(stats().peak_allocated, base + int64_t(kMiB));
  cuda_alloc::free(b, 0);
  EXPECT_EQ(stats().peak_allocated, base + int64_t(kMiB));
}

TEST_F(AllocatorGpu, EmptyCacheDropsReservedToTheBytesInUse) {
  SL_REQUIRE_GPU();
  AllocatorStats s0 = stats();
  EXPECT_EQ(s0.reserved, s0.allocated);  // SetUp emptied the cache
  void* keep = cuda_alloc::allocate(6 * kMiB, 0);
  void* a = cuda_alloc::allocate(4 * kMiB, 0);
  void* b = cuda_alloc::allocate(10 * kKiB, 0);
  cuda_alloc::free(a, 0);
  cuda_alloc::free(b, 0);
  AllocatorStats s1 = stats();
  EXPECT_EQ(s1.allocated, s0.allocated + int64_t(6 * kMiB));
  EXPECT_EQ(s1.reserved, s0.reserved + int64_t(10 * kMiB + 10 * kKiB));
  cuda_alloc::empty_cache(0);
  AllocatorStats s2 = stats();
  EXPECT_EQ(s2.reserved, s2.allocated);
  EXPECT_EQ(s2.allocated, s1.allocated);
  // The kept block is still valid and owned; after the cache is gone, a new request misses.
  int64_t mallocs = s2.num_cuda_mallocs;
  void* c = cuda_alloc::allocate(4 * kMiB, 0);
  EXPECT_EQ(stats().num_cuda_mallocs, mallocs + 1);
  cuda_alloc::free(c, 0);
  cuda_alloc::free(keep, 0);
  cuda_alloc::empty_cache(0);
  EXPECT_EQ(stats().reserved, s0.reserved);
}

TEST_F(AllocatorGpu, TensorsReturnTheirMemoryToThePool) {
  SL_REQUIRE_GPU();
  AllocatorStats s0 = stats();
  const void* first = nullptr;
  {
    Tensor t = Tensor::empty({1 << 20}, DType::F32, Device::cuda(0));  // 4 MiB
    first = t.data_ptr();
    EXPECT_EQ(stats().allocated, s0.allocated + int64_t(4 * kMiB));
    Tensor view = t.slice(0, 10, 20);  // a view shares the block
    EXPECT_EQ(stats().allocated, s0.allocated + int64_t(4 * kMiB));
    t = Tensor();
    EXPECT_EQ(stats().allocated, s0.allocated + int64_t(4 * kMiB));  // the view keeps it alive
  }
  AllocatorStats s1 = stats();
  EXPECT_EQ(s1.allocated, s0.allocated);
  EXPECT_EQ(s1.reserved, s0.reserved + int64_t(4 * kMiB));
  // The next tensor of the same class gets the same block without a cudaMalloc.
  Tensor u = Tensor::zeros({1 << 20}, DType::F32, Device::cuda(0));
  EXPECT_EQ(u.data_ptr(), first);
  EXPECT_EQ(stats().num_cuda_mallocs, s1.num_cuda_mallocs);
  EXPECT_EQ(u.to(Device::cpu()).to_vector<float>()[12345], 0.0f);
}

TEST_F(AllocatorGpu, FreeingAForeignPointerIsAnError) {
  SL_REQUIRE_GPU();
  int x = 0;
  EXPECT_THROW(cuda_alloc::free(&x, 0), Error);
}

}  // namespace
}  // namespace sl
