#include "core/tensor.h"

#include <algorithm>
#include <sstream>

#include "kernels/copy.h"

namespace sl {

// ---- Dims ----

Dims::Dims(std::initializer_list<int64_t> l) {
  SL_CHECK(l.size() <= size_t(kMaxDims)) << "at most " << kMaxDims << " dims, got " << l.size();
  for (int64_t x : l) v[n++] = x;
}

Dims::Dims(const std::vector<int64_t>& l) {
  SL_CHECK(l.size() <= size_t(kMaxDims)) << "at most " << kMaxDims << " dims, got " << l.size();
  for (int64_t x : l) v[n++] = x;
}

int64_t Dims::numel() const {
  int64_t p = 1;
  for (int i = 0; i < n; ++i) p *= v[i];
  return p;
}

bool Dims::operator==(const Dims& o) const {
  if (n != o.n) return false;
  for (int i = 0; i < n; ++i)
    if (v[i] != o.v[i]) return false;
  return true;
}

void Dims::push_back(int64_t x) {
  SL_CHECK(n < kMaxDims) << "at most " << kMaxDims << " dims";
  v[n++] = x;
}

std::string Dims::str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < n; ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

Dims contiguous_strides(const Dims& shape) {
  Dims s;
  s.n = shape.n;
  int64_t acc = 1;
  for (int i = shape.n - 1; i >= 0; --i) {
    s.v[i] = acc;
    acc *= std::max<int64_t>(shape.v[i], 1);
  }
  return s;
}

// ---- construction ----

Tensor Tensor::empty(const Dims& shape, DType dtype, Device device) {
  for (int i = 0; i < shape.n; ++i)
    SL_CHECK(shape[i] >= 0) << "negative size in shape " << shape.str();
  auto st = std::make_shared<Storage>(size_t(shape.numel()) * dtype_size(dtype), device);
  return Tensor(std::move(st), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::empty_pinned(const Dims& shape, DType dtype) {
  auto st = std::make_shared<Storage>(size_t(shape.numel()) * dtype_size(dtype), Device::cpu(),
                                      /*pinned=*/true);
  return Tensor(std::move(st), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Dims& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0);
  return t;
}

Tensor Tensor::full(const Dims& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Dims& shape, Device device) {
  SL_CHECK(int64_t(values.size()) == shape.numel())
      << "from_vector: " << values.size() << " values for shape " << shape.str();
  Tensor host = empty(shape, ScalarTraits<T>::dtype, Device::cpu());
  if (!values.empty()) memcpy(host.data_ptr(), values.data(), values.size() * sizeof(T));
  return host.to(device);
}

Tensor Tensor::randn(const Dims& shape, Generator& gen, DType dtype, Device device, double mean,
                     double std) {
  Tensor t = empty(shape, dtype, device);
  t.normal_(gen, mean, std);
  return t;
}

Tensor Tensor::rand(const Dims& shape, Generator& gen, DType dtype, Device device, double lo,
                    double hi) {
  Tensor t = empty(shape, dtype, device);
  t.uniform_(gen, lo, hi);
  return t;
}

// ---- metadata ----

int Tensor::wrap_dim(int d) const {
  int nd = shape_.n;
  int w = d < 0 ? d + nd : d;
  SL_CHECK(w >= 0 && w < nd) << "dim " << d << " out of range for a tensor of shape "
                             << shape_.str();
  return w;
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int i = shape_.n - 1; i >= 0; --i) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_.str() + " " + device().str();
}

void* Tensor::data_ptr() const {
  SL_CHECK(defined()) << "data_ptr() of an undefined tensor";
  return static_cast<char*>(storage_->data()) + offset_ * int64_t(dtype_size(dtype_));
}

// ---- views ----

Tensor Tensor::slice(int dim, int64_t start, int64_t end, int64_t step) const {
  int d = wrap_dim(dim);
  int64_t n = shape_[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  SL_CHECK(step >= 1) << "slice step must be >= 1, got " << step;
  SL_CHECK(start >= 0 && start <= end)
      << "slice [" << start << ", " << end << ") of dim " << d << " in shape " << shape_.str();
  Dims sh = shape_, st = strides_;
  sh[d] = (end - start + step - 1) / step;
  st[d] = strides_[d] * step;
  return with_view(sh, st, offset_ + start * strides_[d]);
}

Tensor Tensor::select(int dim, int64_t index) const {
  int d = wrap_dim(dim);
  if (index < 0) index += shape_[d];
  SL_CHECK(index >= 0 && index < shape_[d])
      << "select index " << index << " of dim " << d << " in shape " << shape_.str();
  Dims sh, st;
  for (int i = 0; i < shape_.n; ++i) {
    if (i == d) continue;
    sh.push_back(shape_[i]);
    st.push_back(strides_[i]);
  }
  return with_view(sh, st, offset_ + index * strides_[d]);
}

Tensor Tensor::transpose(int d0, int d1) const {
  int a = wrap_dim(d0), b = wrap_dim(d1);
  Dims sh = shape_, st = strides_;
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  return with_view(sh, st, offset_);
}

Tensor Tensor::permute(const std::vector<int>& order) const {
  SL_CHECK(int(order.size()) == dim()) << "permute order has " << order.size()
                                       << " entries for shape " << shape_.str();
  Dims sh, st;
  std::vector<bool> seen(dim(), false);
  for (int o : order) {
    int d = wrap_dim(o);
    SL_CHECK(!seen[d]) << "permute repeats dim " << d;
    seen[d] = true;
    sh.push_back(shape_[d]);
    st.push_back(strides_[d]);
  }
  return with_view(sh, st, offset_);
}

namespace {

// Resolves a single -1 entry from the element count.
Dims infer_shape(const Dims& shape, int64_t numel, const Dims& from) {
  Dims out = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < out.n; ++i) {
    if (out[i] == -1) {
      SL_CHECK(infer < 0) << "only one -1 allowed in shape " << shape.str();
      infer = i;
    } else {
      SL_CHECK(out[i] >= 0) << "bad size in shape " << shape.str();
      known *= out[i];
    }
  }
  if (infer >= 0) {
    SL_CHECK(known > 0 && numel % known == 0)
        << "cannot reshape " << from.str() << " into " << shape.str();
    out[infer] = numel / known;
  }
  SL_CHECK(out.numel() == numel) << "cannot reshape " << from.str() << " (" << numel
                                 << " elements) into " << shape.str();
  return out;
}

// Strides for viewing (shape, strides) as new_shape without a copy, if possible. Walks the old
// dims from the innermost outwards in "chunks" of dims that are contiguous with each other; each
// chunk must be exactly covered by a run of new dims, which then take strides inside the chunk.
bool view_strides(const Dims& shape, const Dims& strides, const Dims& new_shape, Dims* out) {
  out->n = new_shape.n;
  if (shape.numel() == 0 || shape.n == 0) {
    *out = contiguous_strides(new_shape);
    return true;
  }
  int view_d = new_shape.n - 1;
  int64_t chunk_stride = strides[shape.n - 1];
  int64_t old_numel = 1, new_numel = 1;
  for (int d = shape.n - 1; d >= 0; --d) {
    old_numel *= shape[d];
    bool chunk_ends =
        d == 0 || (shape[d - 1] != 1 && strides[d - 1] != old_numel * chunk_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (new_numel < old_numel || new_shape[view_d] == 1)) {
      out->v[view_d] = new_numel * chunk_stride;
      new_numel *= new_shape[view_d];
      --view_d;
    }
    if (new_numel != old_numel) return false;
    if (d > 0) {
      chunk_stride = strides[d - 1];
      old_numel = new_numel = 1;
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor Tensor::view(const Dims& shape) const {
  Dims sh = infer_shape(shape, numel(), shape_);
  Dims st;
  SL_CHECK(view_strides(shape_, strides_, sh, &st))
      << "view of shape " << shape_.str() << " with strides " << strides_.str() << " as "
      << sh.str() << " needs a copy: use reshape()";
  return with_view(sh, st, offset_);
}

Tensor Tensor::reshape(const Dims& shape) const {
  Dims sh = infer_shape(shape, numel(), shape_);
  Dims st;
  if (view_strides(shape_, strides_, sh, &st)) return with_view(sh, st, offset_);
  return contiguous().view(sh);
}

Tensor Tensor::unsqueeze(int dim) const {
  int d = dim < 0 ? dim + shape_.n + 1 : dim;
  SL_CHECK(d >= 0 && d <= shape_.n) << "unsqueeze dim " << dim << " for shape " << shape_.str();
  Dims sh, st;
  for (int i = 0; i <= shape_.n; ++i) {
    if (i == d) {
      sh.push_back(1);
      st.push_back(i < shape_.n ? strides_[i] * shape_[i] : 1);
    }
    if (i < shape_.n) {
      sh.push_back(shape_[i]);
      st.push_back(strides_[i]);
    }
  }
  return with_view(sh, st, offset_);
}

Tensor Tensor::squeeze(int dim) const {
  int d = wrap_dim(dim);
  SL_CHECK(shape_[d] == 1) << "squeeze of dim " << d << " of size " << shape_[d];
  return select(d, 0);
}

Tensor Tensor::expand(const Dims& shape) const {
  SL_CHECK(shape.n >= shape_.n) << "expand " << shape_.str() << " to " << shape.str();
  Dims st;
  st.n = shape.n;
  int lead = shape.n - shape_.n;
  for (int i = 0; i < shape.n; ++i) {
    if (i < lead) {
      st.v[i] = 0;
      continue;
    }
    int64_t own = shape_[i - lead];
    SL_CHECK(own == shape[i] || own == 1)
        << "cannot expand " << shape_.str() << " to " << shape.str();
    st.v[i] = own == shape[i] ? strides_[i - lead] : 0;
  }
  return with_view(shape, st, offset_);
}

// ---- copies ----

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = empty(shape_, dtype_, device);
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, device());
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  SL_CHECK(defined() && src.defined()) << "copy_ with an undefined tensor";
  SL_CHECK(shape_ == src.shape_) << "copy_ into " << shape_.str() << " from " << src.shape_.str();
  if (numel() == 0) return;
  if (device() == src.device()) {
    kernels::copy_strided(*this, src);
    return;
  }
  // Across devices: cast and compact on the source side, move bytes, scatter on the target side.
  Tensor packed = src.to(dtype_).contiguous();
  Tensor dst = is_contiguous() ? *this : empty(shape_, dtype_, device());
  kernels::copy_bytes(dst.data_ptr(), dst.device(), packed.data_ptr(), packed.device(),
                      packed.nbytes());
  if (dst.storage_ != storage_) kernels::copy_strided(*this, dst);
}

// ---- fills ----

Tensor& Tensor::fill_(double value) {
  kernels::fill(*this, value);
  return *this;
}

Tensor& Tensor::normal_(Generator& gen, double mean, double std) {
  kernels::fill_random(*this, gen.seed, gen.next_offset(), /*normal=*/true, mean, std);
  return *this;
}

Tensor& Tensor::uniform_(Generator& gen, double lo, double hi) {
  kernels::fill_random(*this, gen.seed, gen.next_offset(), /*normal=*/false, lo, hi - lo);
  return *this;
}

// ---- host access ----

template <class T>
std::vector<T> Tensor::to_vector() const {
  SL_CHECK(ScalarTraits<T>::dtype == dtype_)
      << "to_vector<" << dtype_name(ScalarTraits<T>::dtype) << "> of a " << dtype_name(dtype_)
      << " tensor";
  Tensor host = to(Device::cpu()).contiguous();
  std::vector<T> out(static_cast<size_t>(numel()));
  if (!out.empty()) memcpy(out.data(), host.data_ptr(), out.size() * sizeof(T));
  return out;
}

double Tensor::item() const {
  SL_CHECK(numel() == 1) << "item() of a tensor with " << numel() << " elements";
  return to(DType::F64).to_vector<double>()[0];
}

#define SL_INSTANTIATE(T)                                                                 \
  template Tensor Tensor::from_vector<T>(const std::vector<T>&, const Dims&, Device); \
  template std::vector<T> Tensor::to_vector<T>() const;
SL_INSTANTIATE(float)
SL_INSTANTIATE(double)
SL_INSTANTIATE(bf16)
SL_INSTANTIATE(f16)
SL_INSTANTIATE(int32_t)
SL_INSTANTIATE(int64_t)
#undef SL_INSTANTIATE

// ---- argument checks ----

void check_defined(const char* op, const char* arg, const Tensor& t, const char* file, int line) {
  if (!t.defined())
    detail::ErrorBuilder(file, line, "bad argument", "") << op << ": '" << arg
                                                         << "' is undefined";
}

void check_shape(const char* op, const char* arg, const Tensor& t,
                 std::initializer_list<int64_t> expected, const char* file, int line) {
  check_defined(op, arg, t, file, line);
  bool ok = int(expected.size()) == t.dim();
  int i = 0;
  for (int64_t e : expected) {
    if (ok && e != -1 && t.size(i) != e) ok = false;
    ++i;
  }
  if (ok) return;
  std::ostringstream want;
  want << "[";
  i = 0;
  for (int64_t e : expected) {
    want << (i++ ? ", " : "");
    if (e == -1)
      want << "*";
    else
      want << e;
  }
  want << "]";
  detail::ErrorBuilder(file, line, "bad argument", "")
      << op << ": '" << arg << "' has shape " << t.shape_str() << ", expected " << want.str();
}

void check_dtype(const char* op, const char* arg, const Tensor& t,
                 std::initializer_list<DType> allowed, const char* file, int line) {
  check_defined(op, arg, t, file, line);
  for (DType d : allowed)
    if (t.dtype() == d) return;
  std::ostringstream want;
  int i = 0;
  for (DType d : allowed) want << (i++ ? " or " : "") << dtype_name(d);
  detail::ErrorBuilder(file, line, "bad argument", "")
      << op << ": '" << arg << "' has dtype " << dtype_name(t.dtype()) << " (shape "
      << t.shape_str() << "), expected " << want.str();
}

void check_device(const char* op, const char* arg, const Tensor& t, Device expected,
                  const char* file, int line) {
  check_defined(op, arg, t, file, line);
  if (t.device() == expected) return;
  detail::ErrorBuilder(file, line, "bad argument", "")
      << op << ": '" << arg << "' is on " << t.device().str() << " (shape " << t.shape_str()
      << "), expected " << expected.str();
}

}  // namespace sl
