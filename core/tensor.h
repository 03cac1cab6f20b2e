// Tensor: a strided view (shape, strides, offset) over reference-counted Storage.
//
// Index math, written once. A tensor with shape [n_0, ..., n_{d-1}], strides [s_0, ..., s_{d-1}]
// (in elements) and offset o puts element (i_0, ..., i_{d-1}) at storage element
//
//     o + i_0*s_0 + ... + i_{d-1}*s_{d-1}.
//
// Worked example: a contiguous [2, 3, 4] tensor has strides [12, 4, 1]; element (1, 2, 3) is at
// 12 + 8 + 3 = 23. transpose(1, 2) gives shape [2, 4, 3], strides [12, 1, 4]: the same element is
// now (1, 3, 2) and still at 23. slice(2, 1, 3) of the original gives shape [2, 3, 2], strides
// [12, 4, 1], offset 1. A broadcast dimension has stride 0.
//
// Views share storage: slice, transpose, view and (when possible) reshape never copy. contiguous(),
// to(), clone() copy. A tensor is contiguous when its strides are the row-major strides of its
// shape (size-1 dimensions may carry any stride).
//
// Dimension letters used project-wide: B batch, T time, C channels, H heads, D head dim, N SSM
// state, E experts, K spans kept.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/errors.h"
#include "core/storage.h"

namespace sl {

constexpr int kMaxDims = 8;

// A fixed-capacity list of up to kMaxDims int64 values (a shape or a stride list). Trivially
// copyable, so it travels inside kernel parameter structs.
struct Dims {
  std::array<int64_t, kMaxDims> v{};
  int n = 0;

  Dims() = default;
  Dims(std::initializer_list<int64_t> l);
  explicit Dims(const std::vector<int64_t>& l);
  int size() const { return n; }
  int64_t operator[](int i) const { return v[i]; }
  int64_t& operator[](int i) { return v[i]; }
  int64_t numel() const;  // product (1 for a scalar)
  bool operator==(const Dims& o) const;
  bool operator!=(const Dims& o) const { return !(*this == o); }
  void push_back(int64_t x);
  std::vector<int64_t> vec() const { return {v.begin(), v.begin() + n}; }
  std::string str() const;  // "[2, 3, 4]"
};

// Row-major strides of a shape.
Dims contiguous_strides(const Dims& shape);

// State of the counter-based generator (core/philox.h): fills consume one offset each.
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;
  explicit Generator(uint64_t s = 0, uint64_t o = 0) : seed(s), offset(o) {}
  uint64_t next_offset() { return offset++; }
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false

  // ---- construction ----
  static Tensor empty(const Dims& shape, DType dtype, Device device = Device::cpu());
  static Tensor empty_pinned(const Dims& shape, DType dtype);  // page-locked host memory
  static Tensor zeros(const Dims& shape, DType dtype, Device device = Device::cpu());
  static Tensor full(const Dims& shape, double value, DType dtype, Device device = Device::cpu());
  // Copies host values (given as T, the C++ type of dtype) into a new tensor.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Dims& shape,
                            Device device = Device::cpu());
  static Tensor randn(const Dims& shape, Generator& gen, DType dtype = DType::F32,
                      Device device = Device::cpu(), double mean = 0, double std = 1);
  static Tensor rand(const Dims& shape, Generator& gen, DType dtype = DType::F32,
                     Device device = Device::cpu(), double lo = 0, double hi = 1);

  // ---- metadata ----
  bool defined() const { return storage_ != nullptr; }
  const Dims& shape() const { return shape_; }
  const Dims& strides() const { return strides_; }
  int dim() const { return shape_.n; }
  int64_t size(int d) const { return shape_[wrap_dim(d)]; }
  int64_t stride(int d) const { return strides_[wrap_dim(d)]; }
  int64_t offset() const { return offset_; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // Maps a possibly negative dim (-1 = last) to [0, dim()); errors name the tensor's shape.
  int wrap_dim(int d) const;
  std::string shape_str() const { return shape_.str(); }
  // "f32[2, 3] cuda:0"
  std::string str() const;

  // Address of element (0, ..., 0).
  void* data_ptr() const;
  // Typed pointer; checks that T matches dtype().
  template <class T>
  T* data() const;

  // ---- views (no copy) ----
  Tensor slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int dim, int64_t index) const;  // drops `dim`
  Tensor transpose(int d0, int d1) const;
  Tensor permute(const std::vector<int>& order) const;
  Tensor view(const Dims& shape) const;          // needs compatible strides; -1 infers one dim
  Tensor unsqueeze(int dim) const;
  Tensor squeeze(int dim) const;
  Tensor expand(const Dims& shape) const;        // broadcast size-1 dims with stride 0

  // ---- copies ----
  Tensor reshape(const Dims& shape) const;  // a view when strides allow, else a contiguous copy
  Tensor contiguous() const;                // this if already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;           // this if already there
  Tensor to(DType dtype) const;             // this if already that dtype
  Tensor to(Device device, DType dtype) const { return to(dtype).to(device); }
  // Copies src into this (same shape; dtype and device may differ; any strides).
  void copy_(const Tensor& src);

  // ---- in-place fills ----
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0); }
  Tensor& normal_(Generator& gen, double mean = 0, double std = 1);
  Tensor& uniform_(Generator& gen, double lo = 0, double hi = 1);

  // ---- host access (copies through the host for CUDA tensors; for tests and I/O) ----
  template <class T>
  std::vector<T> to_vector() const;
  double item() const;  // single-element tensor as double

 private:
  Tensor(std::shared_ptr<Storage> s, Dims shape, Dims strides, int64_t offset, DType dtype)
      : storage_(std::move(s)), shape_(shape), strides_(strides), offset_(offset), dtype_(dtype) {}
  Tensor with_view(Dims shape, Dims strides, int64_t offset) const {
    return Tensor(storage_, shape, strides, offset, dtype_);
  }

  std::shared_ptr<Storage> storage_;
  Dims shape_;
  Dims strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
};

// ---- argument checks for ops: errors name the op, the argument and what was expected ----

// Each expected entry is a size, or -1 for "any".
void check_shape(const char* op, const char* arg, const Tensor& t,
                 std::initializer_list<int64_t> expected, const char* file, int line);
void check_dtype(const char* op, const char* arg, const Tensor& t,
                 std::initializer_list<DType> allowed, const char* file, int line);
void check_device(const char* op, const char* arg, const Tensor& t, Device expected,
                  const char* file, int line);
void check_defined(const char* op, const char* arg, const Tensor& t, const char* file, int line);

#define SL_CHECK_SHAPE(op, t, ...) ::sl::check_shape(op, #t, t, {__VA_ARGS__}, __FILE__, __LINE__)
#define SL_CHECK_DTYPE(op, t, ...) ::sl::check_dtype(op, #t, t, {__VA_ARGS__}, __FILE__, __LINE__)
#define SL_CHECK_DEVICE(op, t, dev) ::sl::check_device(op, #t, t, dev, __FILE__, __LINE__)
#define SL_CHECK_DEFINED(op, t) ::sl::check_defined(op, #t, t, __FILE__, __LINE__)

// ---- template definitions ----

template <class T>
T* Tensor::data() const {
  SL_CHECK(defined()) << "data() of an undefined tensor";
  SL_CHECK(ScalarTraits<T>::dtype == dtype_)
      << "data<" << dtype_name(ScalarTraits<T>::dtype) << ">() of a " << dtype_name(dtype_)
      << " tensor";
  return static_cast<T*>(data_ptr());
}

}  // namespace sl
