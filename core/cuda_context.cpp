#include "core/cuda_context.h"

#include <array>
#include <mutex>

namespace sl::cuda {
namespace {
constexpr int kMaxDevices = 16;
std::mutex g_mu;
std::array<cudaStream_t, kMaxDevices> g_streams{};
std::array<cudaDeviceProp, kMaxDevices> g_props{};
std::array<bool, kMaxDevices> g_have_props{};
}  // namespace

void set_device(int device) {
  int cur = -1;
  SL_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) SL_CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t stream(int device) {
  SL_CHECK(device >= 0 && device < kMaxDevices) << "device index " << device;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_streams[device]) {
    set_device(device);
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&g_streams[device], cudaStreamNonBlocking));
  }
  return g_streams[device];
}

void synchronize(int device) { SL_CUDA_CHECK(cudaStreamSynchronize(stream(device))); }

const cudaDeviceProp& properties(int device) {
  SL_CHECK(device >= 0 && device < kMaxDevices) << "device index " << device;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_have_props[device]) {
    SL_CUDA_CHECK(cudaGetDeviceProperties(&g_props[device], device));
    g_have_props[device] = true;
  }
  return g_props[device];
}

Stream::Stream(int device) {
  set_device(device);
  SL_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
}
Stream::~Stream() {
  if (s_) cudaStreamDestroy(s_);
}

Event::Event() { SL_CUDA_CHECK(cudaEventCreate(&e_)); }
Event::~Event() {
  if (e_) cudaEventDestroy(e_);
}
void Event::record(cudaStream_t s) { SL_CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::synchronize() { SL_CUDA_CHECK(cudaEventSynchronize(e_)); }
float Event::elapsed_ms(const Event& start) const {
  float ms = 0;
  SL_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
  return ms;
}

}  // namespace sl::cuda
