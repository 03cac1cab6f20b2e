// KvCache: the keys and values one attention-like layer has seen so far, for chunked prefill and
// decode (spec §12). Per token and layer it holds 2 * Hkv * D values of the layer's dtype; the
// search queries Qs are never cached.
//
// Layouts, one per layer kind, so each attention op reads the filled part as a view:
//   kHeadsFirst  [B, Hkv, capacity, D]  SuperlinearAttention (kernels::superlinear_forward's k/v
//                                       layout; the op makes the [.., length, ..] view contiguous)
//   kTimeFirst   [B, capacity, Hkv, D]  Attention (kernels::attention_forward reads the strided
//                                       view in place)
// Positions are absolute: key u of the cache is the token at position u of each row. One
// document per row: packed prompts (doc_starts / seq_idx) are out of scope here.
//
// The one non-obvious decision: the buffers grow by doubling (to at least the needed length), so
// appending n tokens one at a time copies O(n) values in all; a caller that knows the final
// length passes it as the initial capacity and nothing is ever reallocated.
//
// Not thread-safe; a cache belongs to one layer of one generation stream.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace sl::layers {

enum class KvLayout { kHeadsFirst, kTimeFirst };

class KvCache {
 public:
  // An empty cache for `owner` (a name used in errors, e.g. "SuperlinearAttention"); batch,
  // kv_heads, head_dim >= 1, capacity >= 0 (0 allocates on the first append).
  KvCache(std::string owner, KvLayout layout, int64_t batch, int64_t kv_heads, int64_t head_dim,
          DType dtype, Device device, int64_t capacity = 0);

  // Appends Tc tokens: k and v in the cache's layout with Tc in place of capacity ([B, Hkv, Tc, D]
  // or [B, Tc, Hkv, D]), any strides, the cache's device; cast to its dtype. Throws sl::Error
  // naming the owner and the expected shape otherwise.
  void append(const Tensor& k, const Tensor& v);

  // Views of the filled part (no copy): [B, Hkv, length, D] or [B, length, Hkv, D]. Valid until
  // the next append that grows the buffers.
  Tensor keys() const;
  Tensor values() const;

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  int64_t kv_heads() const { return kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  KvLayout layout() const { return layout_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const std::string& owner() const { return owner_; }
  // "SuperlinearAttention cache [B=1, Hkv=2, D=64, bf16 cuda:0, heads-first, length 10/16]".
  std::string str() const;

  // Forgets every token (the buffers are kept).
  void clear() { length_ = 0; }
  // Throws sl::Error naming `who` and both descriptions unless this cache has this layout,
  // batch, kv_heads, head_dim, dtype and device.
  void check_fits(const std::string& who, KvLayout layout, int64_t batch, int64_t kv_heads,
                  int64_t head_dim, DType dtype, Device device) const;

 private:
  Dims shape_with_time(int64_t t) const;
  std::string chunk_shape_str() const;  // "[B, Hkv, Tc, D]" with the sizes filled in
  int time_dim() const { return layout_ == KvLayout::kHeadsFirst ? 2 : 1; }
  void reserve(int64_t needed);

  std::string owner_;
  KvLayout layout_;
  int64_t batch_, kv_heads_, head_dim_;
  DType dtype_;
  Device device_;
  int64_t capacity_ = 0, length_ = 0;
  Tensor k_, v_;  // full buffers, `capacity_` along the time dimension
};

}  // namespace sl::layers
