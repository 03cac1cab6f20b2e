// The O(L^2) oracle of superlinear attention: spec §4-8 read literally, in f64. For every query
// it walks all stripes, filters the candidates, sorts them fully, builds window and span masks
// over all Lkv keys and runs one masked softmax per slot over the union.
//
// Non-obvious decision: it shares only the scalar schedule formulas of superlinear.h (o(i),
// len_b, len_f: those must be bit-identical everywhere by spec §4); the candidate filter, top-k,
// bounds, masks, merge and gate are written independently of superlinear_cpu.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/superlinear.h"

namespace sl::kernels {

SuperlinearOracle superlinear_dense_oracle(const Tensor& qa_in, const Tensor& qs_in,
                                           const Tensor& k_in, const Tensor& v_in,
                                           const SuperlinearConfig& c, const Tensor& ds_in,
                                           int64_t q_start) {
  const char* op = "superlinear_dense_oracle";
  SL_CHECK_SHAPE(op, qa_in, -1, -1, -1, -1);
  SL_CHECK_SHAPE(op, k_in, qa_in.size(0), -1, -1, qa_in.size(3));
  const int64_t B = qa_in.size(0), Hq = qa_in.size(1), Lq = qa_in.size(2), D = qa_in.size(3);
  const int64_t Hkv = k_in.size(1), Lkv = k_in.size(2);
  SL_CHECK_SHAPE(op, qs_in, B, Hq, Lq, D);
  SL_CHECK_SHAPE(op, v_in, B, Hkv, Lkv, D);
  SL_CHECK(Hq % Hkv == 0) << op << ": Hq % Hkv != 0";
  if (q_start < 0) q_start = Lkv - Lq;
  SL_CHECK(q_start + Lq <= Lkv) << op << ": queries past the keys";
  const int K = c.k;
  std::vector<double> qa = qa_in.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> qs = qs_in.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> kk = k_in.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> vv = v_in.to(DType::F64).contiguous().to_vector<double>();
  std::vector<int32_t> ds =
      ds_in.defined() ? ds_in.contiguous().to_vector<int32_t>() : std::vector<int32_t>();

  std::vector<double> out(size_t(B * Hq * Lq * D)), scores(size_t(B * Hq * Lq * K));
  std::vector<int32_t> anchors(size_t(B * Hq * Lq * K));
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t W = stripe_offset(c, c.s + 1) - 1;
  auto dot = [&](const double* a, const double* b) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
    return s;
  };

  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t t = q_start + i, sb = ds.empty() ? 0 : ds[size_t(b * Lkv + t)];
        const int64_t T = t + 1 - sb;
        const double* q_a = &qa[size_t(((b * Hq + h) * Lq + i) * D)];
        const double* q_s = &qs[size_t(((b * Hq + h) * Lq + i) * D)];
        const int64_t kvo = (b * Hkv + h / (Hq / Hkv)) * Lkv * D;
        auto key = [&](int64_t u) { return &kk[size_t(kvo + u * D)]; };
        auto val = [&](int64_t u) { return &vv[size_t(kvo + u * D)]; };

        // Candidates: every stripe whose anchor is a position >= 0, then i > s and a_i >= s_b.
        std::vector<std::pair<double, int64_t>> cand;
        for (int64_t st = 1; t + 1 - stripe_offset(c, st) >= 0; ++st) {
          int64_t a = t + 1 - stripe_offset(c, st);
          if (st > c.s && a >= sb) cand.push_back({dot(q_s, key(a)), a});
        }
        std::sort(cand.begin(), cand.end(), [](const auto& x, const auto& y) {
          return x.first != y.first ? x.first > y.first : x.second < y.second;
        });

        std::vector<char> win(size_t(Lkv), 0);
        for (int64_t u = 0; u < Lkv; ++u) win[size_t(u)] = u >= std::max(sb, t - W + 1) && u <= t;
        const int64_t sw = std::max(sb, t - W + 1);

        std::vector<double> g(static_cast<size_t>(K)), o(static_cast<size_t>(K * D), 0.0);
        int nvalid = 0;
        for (int j = 0; j < K; ++j) {
          const bool valid = j < int(cand.size());
          const int64_t a = valid ? cand[size_t(j)].second : -1;
          anchors[size_t(((b * Hq + h) * Lq + i) * K + j)] = int32_t(a);
          scores[size_t(((b * Hq + h) * Lq + i) * K + j)] = valid ? cand[size_t(j)].first : -inf;
          std::vector<char> mask = win;
          if (valid) {
            ++nvalid;
            int64_t lo = std::max(a - len_b(c, T), sb), hi = a;
            if (c.f_f > 0) {
              hi = std::min(a + len_f(c, T), t);
              if (W > 0) hi = std::min(hi, sw - 1);
            }
            for (int64_t u = lo; u <= hi; ++u) mask[size_t(u)] = 1;
          }
          double m = -inf;
          for (int64_t u = 0; u < Lkv; ++u)
            if (mask[size_t(u)]) m = std::max(m, dot(q_a, key(u)) / std::sqrt(double(D)));
          if (m == -inf) continue;
          double sum = 0;
          for (int64_t u = 0; u < Lkv; ++u)
            if (mask[size_t(u)]) {
              double e = std::exp(dot(q_a, key(u)) / std::sqrt(double(D)) - m);
              sum += e;
              for (int64_t d = 0; d < D; ++d) o[size_t(j * D + d)] += e * val(u)[d];
            }
          for (int64_t d = 0; d < D; ++d) o[size_t(j * D + d)] /= sum;
        }
        double gs = 0;
        for (int j = 0; j < K; ++j) {
          g[size_t(j)] = nvalid == 0  ? 1.0
                         : j < nvalid ? std::exp(cand[size_t(j)].first - cand[0].first)
                                      : 0.0;
          gs += g[size_t(j)];
        }
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int j = 0; j < K; ++j) acc += g[size_t(j)] / gs * o[size_t(j * D + d)];
          out[size_t(((b * Hq + h) * Lq + i) * D + d)] = acc;
        }
      }
  SuperlinearOracle r;
  r.out = Tensor::from_vector(out, {B, Hq, Lq, D});
  r.anchors = Tensor::from_vector(anchors, {B, Hq, Lq, K});
  r.scores = Tensor::from_vector(scores, {B, Hq, Lq, K});
  return r;
}

}  // namespace sl::kernels
