// KvCache (layers/kv_cache.h): doubling buffers in one of two layouts.
#include "layers/kv_cache.h"

#include <algorithm>
#include <sstream>
#include <utility>

namespace sl::layers {

KvCache::KvCache(std::string owner, KvLayout layout, int64_t batch, int64_t kv_heads,
                 int64_t head_dim, DType dtype, Device device, int64_t capacity)
    : owner_(std::move(owner)),
      layout_(layout),
      batch_(batch),
      kv_heads_(kv_heads),
      head_dim_(head_dim),
      dtype_(dtype),
      device_(device) {
  SL_CHECK(batch > 0 && kv_heads > 0 && head_dim > 0 && capacity >= 0)
      << owner_ << " KV cache: need batch (" << batch << "), kv_heads (" << kv_heads
      << "), head_dim (" << head_dim << ") >= 1 and capacity (" << capacity << ") >= 0";
  reserve(capacity);
}

Dims KvCache::shape_with_time(int64_t t) const {
  return layout_ == KvLayout::kHeadsFirst ? Dims{batch_, kv_heads_, t, head_dim_}
                                          : Dims{batch_, t, kv_heads_, head_dim_};
}

std::string KvCache::chunk_shape_str() const {
  std::ostringstream os;
  if (layout_ == KvLayout::kHeadsFirst)
    os << "[" << batch_ << ", " << kv_heads_ << ", Tc, " << head_dim_ << "]";
  else
    os << "[" << batch_ << ", Tc, " << kv_heads_ << ", " << head_dim_ << "]";
  return os.str();
}

std::string KvCache::str() const {
  std::ostringstream os;
  os << owner_ << " cache [B=" << batch_ << ", Hkv=" << kv_heads_ << ", D=" << head_dim_ << ", "
     << dtype_name(dtype_) << " " << device_.str() << ", "
     << (layout_ == KvLayout::kHeadsFirst ? "heads-first" : "time-first") << ", length "
     << length_ << "/" << capacity_ << "]";
  return os.str();
}

void KvCache::reserve(int64_t needed) {
  if (needed <= capacity_) return;
  const int64_t cap = std::max(needed, 2 * capacity_);
  Tensor k = Tensor::empty(shape_with_time(cap), dtype_, device_);
  Tensor v = Tensor::empty(shape_with_time(cap), dtype_, device_);
  if (length_ > 0) {
    k.slice(time_dim(), 0, length_).copy_(keys());
    v.slice(time_dim(), 0, length_).copy_(values());
  }
  k_ = std::move(k);
  v_ = std::move(v);
  capacity_ = cap;
}

void KvCache::append(const Tensor& k, const Tensor& v) {
  SL_CHECK(k.defined() && v.defined() && k.dim() == 4 && k.shape() == v.shape())
      << owner_ << " KV cache: append needs k and v of one shape " << chunk_shape_str()
      << ", got k "
      << (k.defined() ? k.str() : "undefined") << ", v " << (v.defined() ? v.str() : "undefined");
  const int64_t tc = k.size(time_dim());
  SL_CHECK(k.shape() == shape_with_time(tc) && k.device() == device_ && v.device() == device_)
      << owner_ << " KV cache: append needs k and v " << chunk_shape_str() << " on "
      << device_.str() << ", got k " << k.str() << ", v " << v.str() << " (" << str() << ")";
  reserve(length_ + tc);
  k_.slice(time_dim(), length_, length_ + tc).copy_(k);
  v_.slice(time_dim(), length_, length_ + tc).copy_(v);
  length_ += tc;
}

Tensor KvCache::keys() const {
  return capacity_ == 0 ? Tensor::empty(shape_with_time(0), dtype_, device_)
                        : k_.slice(time_dim(), 0, length_);
}

Tensor KvCache::values() const {
  return capacity_ == 0 ? Tensor::empty(shape_with_time(0), dtype_, device_)
                        : v_.slice(time_dim(), 0, length_);
}

void KvCache::check_fits(const std::string& who, KvLayout layout, int64_t batch,
                         int64_t kv_heads, int64_t head_dim, DType dtype, Device device) const {
  SL_CHECK(layout == layout_ && batch == batch_ && kv_heads == kv_heads_ &&
           head_dim == head_dim_ && dtype == dtype_ && device == device_)
      << who << ": the KV cache does not fit this layer: it needs B=" << batch
      << ", Hkv=" << kv_heads << ", D=" << head_dim << ", " << dtype_name(dtype) << " "
      << device.str() << ", " << (layout == KvLayout::kHeadsFirst ? "heads-first" : "time-first")
      << "; got " << str();
}

}  // namespace sl::layers
