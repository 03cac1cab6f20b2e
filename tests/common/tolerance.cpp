#include "tests/common/tolerance.h"

#include <cmath>
#include <random>
#include <sstream>

namespace sl::test {

double eps(DType p) {
  switch (p) {
    case DType::F32:
      return std::ldexp(1.0, -23);
    case DType::BF16:
      return std::ldexp(1.0, -7);
    case DType::F16:
      return std::ldexp(1.0, -10);
    case DType::F64:
      return std::ldexp(1.0, -52);
    default:
      return 0;
  }
}

namespace {

std::string index_str(const Dims& shape, int64_t linear) {
  std::vector<int64_t> idx(shape.n);
  for (int i = shape.n - 1; i >= 0; --i) {
    idx[i] = linear % shape[i];
    linear /= shape[i];
  }
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < shape.n; ++i) os << (i ? ", " : "") << idx[i];
  os << ")";
  return os.str();
}

std::vector<double> host_f64(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
}

}  // namespace

::testing::AssertionResult AllClose(const Tensor& out, const Tensor& ref, const Tol& tol) {
  if (out.shape() != ref.shape())
    return ::testing::AssertionFailure()
           << "shape mismatch: out " << out.shape_str() << " vs ref " << ref.shape_str();
  std::vector<double> a = host_f64(out), r = host_f64(ref);
  double sumsq = 0;
  for (double v : r) sumsq += v * v;
  double rms = r.empty() ? 0 : std::sqrt(sumsq / double(r.size()));
  double scale =
      2 * eps(tol.precision) * std::sqrt(double(std::max<int64_t>(1, tol.n_reduce))) * tol.factor;
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1, bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a[i] - r[i]);
    bool nan = std::isnan(a[i]) != std::isnan(r[i]) || std::isinf(a[i]) != std::isinf(r[i]);
    if (std::isnan(a[i]) && std::isnan(r[i])) err = 0, nan = false;
    if (std::isinf(a[i]) && a[i] == r[i]) err = 0;
    double bound = scale * (std::fabs(r[i]) + rms) + tol.atol;
    if (err > max_abs || nan) {
      max_abs = nan ? INFINITY : err;
      worst = int64_t(i);
    }
    if (r[i] != 0) max_rel = std::max(max_rel, err / std::fabs(r[i]));
    if (nan || err > bound) {
      if (bad < 5)
        first << "\n  at " << index_str(out.shape(), int64_t(i)) << ": out " << a[i] << ", ref "
              << r[i] << ", |err| " << err << " > bound " << bound;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << a.size() << " elements out of tolerance (precision "
         << dtype_name(tol.precision) << ", n_reduce " << tol.n_reduce << ", rms(ref) " << rms
         << "); max abs err " << max_abs << " at "
         << (worst >= 0 ? index_str(out.shape(), worst) : "-") << ", max rel err " << max_rel
         << first.str();
}

::testing::AssertionResult AllCloseToNaive(const Tensor& out, const Tensor& naive,
                                           const Tensor& ref, DType precision) {
  if (out.shape() != ref.shape() || naive.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shape mismatch: out " << out.shape_str() << ", naive "
                                         << naive.shape_str() << ", ref " << ref.shape_str();
  std::vector<double> a = host_f64(out), n = host_f64(naive), r = host_f64(ref);
  double sumsq = 0, err_out = 0, err_naive = 0;
  int64_t worst = -1;
  for (size_t i = 0; i < r.size(); ++i) {
    sumsq += r[i] * r[i];
    double e = std::fabs(a[i] - r[i]);
    if (std::isnan(a[i]) != std::isnan(r[i])) e = INFINITY;
    if (e > err_out || std::isnan(e)) err_out = std::isnan(e) ? INFINITY : e, worst = int64_t(i);
    err_naive = std::max(err_naive, std::fabs(n[i] - r[i]));
  }
  double rms = r.empty() ? 0 : std::sqrt(sumsq / double(r.size()));
  double bound = 2 * err_naive + eps(precision) * rms;
  if (err_out <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max |out - ref| " << err_out << " at " << index_str(out.shape(), worst) << " (out "
         << a[size_t(worst)] << ", ref " << r[size_t(worst)] << ") exceeds 2 x max |naive - ref| ("
         << err_naive << ") + eps(" << dtype_name(precision) << ") x rms(ref) (" << rms
         << ") = " << bound;
}

::testing::AssertionResult AllEqual(const Tensor& out, const Tensor& ref) {
  if (out.shape() != ref.shape())
    return ::testing::AssertionFailure()
           << "shape mismatch: out " << out.shape_str() << " vs ref " << ref.shape_str();
  std::vector<double> a = host_f64(out), r = host_f64(ref);
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < a.size(); ++i) {
    bool same = a[i] == r[i] || (std::isnan(a[i]) && std::isnan(r[i]));
    if (!same) {
      if (bad < 5)
        first << "\n  at " << index_str(out.shape(), int64_t(i)) << ": out " << a[i] << ", ref "
              << r[i];
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << a.size() << " elements differ" << first.str();
}

Tensor randn(const Dims& shape, uint64_t seed, DType dtype, Device device, double std) {
  Generator g(seed);
  return Tensor::randn(shape, g, dtype, device, 0.0, std);
}

Tensor random_seq_idx(int64_t b, int64_t t, int64_t max_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> v(size_t(b * t));
  for (int64_t i = 0; i < b; ++i) {
    int32_t id = 0;
    int64_t left = 1 + int64_t(rng() % uint64_t(max_len));
    for (int64_t j = 0; j < t; ++j) {
      if (left-- == 0) {
        ++id;
        left = int64_t(rng() % uint64_t(max_len));
      }
      v[size_t(i * t + j)] = id;
    }
  }
  return Tensor::from_vector(v, {b, t});
}

Tensor rand(const Dims& shape, uint64_t seed, double lo, double hi, DType dtype, Device device) {
  Generator g(seed);
  return Tensor::rand(shape, g, dtype, device, lo, hi);
}

}  // namespace sl::test
