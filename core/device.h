// Where a tensor's memory lives: the host, or one CUDA device by index.
#pragma once

#include <cstdint>
#include <string>

namespace sl {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// True when this program was built with CUDA and at least one device is visible.
bool cuda_available();
// Number of visible CUDA devices (0 when built without CUDA or no driver/device).
int cuda_device_count();
// The device the framework uses when a config says "auto": cuda:0 when available, else cpu.
Device default_device();

}  // namespace sl
