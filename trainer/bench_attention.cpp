// The GPU side of `superlinear bench attention` (trainer/bench_command.h): builds each case's
// random inputs on cuda:0, measures the superlinear op's memory and times, then the dense flash
// attention's times, and writes the table, CSV and plot.
//
// Non-obvious decision: memory is measured on the first forward and backward call (which also
// warm the kernels up) from the caching allocator's counters, before the timed repetitions, whose
// extra outputs would otherwise inflate the peak.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/allocator.h"
#include "core/device.h"
#include "kernels/attention.h"
#include "trainer/bench_command.h"

#if SL_WITH_CUDA
#include "core/cuda_context.h"
#include "experiments/bench_util.h"
#endif

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

#if SL_WITH_CUDA

using kernels::SuperlinearConfig;

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return Status::IoError(path + ": cannot write");
  return Status::Ok();
}

Tensor randn(const Dims& shape, uint64_t seed, double std = 1) {
  Generator g(seed);
  return Tensor::randn(shape, g, DType::BF16, Device::cuda(0), 0, std);
}

// The allocator's size of t; 0 when t is undefined (a field the forward did not keep).
int64_t rounded(const Tensor& t) {
  return t.defined() ? int64_t(cuda_alloc::round_size(t.nbytes())) : 0;
}

void measure_superlinear(AttentionBenchRow& r, const SuperlinearConfig& cfg, int reps,
                         bool fast_backward, bool keep_partials) {
  cuda_alloc::empty_cache(0);
  const Tensor qa = randn({1, r.hq, r.L, r.d}, 1);
  const Tensor qs = randn({1, r.hq, r.L, r.d}, 2, 1.0 / std::sqrt(double(r.d)));
  const Tensor k = randn({1, r.hkv, r.L, r.d}, 3), v = randn({1, r.hkv, r.L, r.d}, 4);
  const Tensor dout = randn({1, r.hq, r.L, r.d}, 5);
  cuda::synchronize(0);

  const int64_t before_fwd = cuda_alloc::stats(0).allocated;
  cuda_alloc::reset_peak(0);
  kernels::SuperlinearForward f = kernels::superlinear_forward(qa, qs, k, v, cfg);
  cuda::synchronize(0);
  const int64_t fwd_peak = cuda_alloc::stats(0).peak_allocated;
  const int64_t fwd_ws = fwd_peak - before_fwd - rounded(f.out);
  // What a training step keeps until the backward (Note [saved for backward]), as
  // ag::superlinear_attention does.
  kernels::drop_unsaved(f, qa, k, cfg);
  r.metadata_bytes = rounded(f.anchors) + rounded(f.scores) + rounded(f.lse_w) + rounded(f.lse_s);

  const int64_t before_bwd = cuda_alloc::stats(0).allocated;
  cuda_alloc::reset_peak(0);
  int64_t bwd_ws = 0;
  {
    kernels::SuperlinearGrads g = kernels::superlinear_backward(dout, qa, qs, k, v, f, cfg);
    cuda::synchronize(0);
    const int64_t grads = rounded(g.dqa) + rounded(g.dqs) + rounded(g.dk) + rounded(g.dv);
    bwd_ws = cuda_alloc::stats(0).peak_allocated - before_bwd - grads + r.metadata_bytes;
  }
  r.peak_bytes = std::max(fwd_peak, cuda_alloc::stats(0).peak_allocated);
  r.fwd_workspace_bytes = fwd_ws;
  r.bwd_workspace_bytes = bwd_ws;
  r.kv_bytes = int64_t(k.nbytes() + v.nbytes());

  r.work = count_attended(cfg, r.hq, r.L, f.anchors.to(Device::cpu()).to_vector<int32_t>());
  r.search = kernels::superlinear_search_kernel(qa, k);
  r.sl_fwd_ms =
      bench::time_auto([&] { (void)kernels::superlinear_forward(qa, qs, k, v, cfg); }, reps);
  r.sl_bwd_ms = bench::time_auto(
      [&] { (void)kernels::superlinear_backward(dout, qa, qs, k, v, f, cfg); }, reps);
  if (fast_backward)
    r.sl_bwd_fast_ms = bench::time_auto(
        [&] {
          (void)kernels::superlinear_backward(dout, qa, qs, k, v, f, cfg, Tensor(), -1, false);
        },
        reps);
  if (!keep_partials) return;
  // Note [kept partials]: the forward's outputs stay and the backward skips the y pass. A
  // failure here (out of memory: (k + 1) outputs more) leaves the columns empty, not the row.
  try {
    f = kernels::SuperlinearForward();
    f = kernels::superlinear_forward(qa, qs, k, v, cfg, Tensor(), -1, nullptr, true);
    if (!f.span_out.defined()) return;  // off the tensor-core path nothing is kept: "-"
    kernels::drop_unsaved(f, qa, k, cfg);
    r.partials_bytes = rounded(f.span_out) + rounded(f.window_out);
    r.sl_bwd_kept_ms = bench::time_auto(
        [&] { (void)kernels::superlinear_backward(dout, qa, qs, k, v, f, cfg); }, reps);
  } catch (const Error& e) {
    r.partials_bytes = -1;
    std::fprintf(stderr, "L=%lld gqa=%lld kept partials: %s\n", (long long)r.L, (long long)r.gqa,
                 std::string(e.what()).substr(0, std::string(e.what()).find('\n')).c_str());
  }
}

void measure_dense(AttentionBenchRow& r, int reps) {
  cuda_alloc::empty_cache(0);
  const Tensor q = randn({1, r.L, r.hq, r.d}, 11);
  const Tensor k = randn({1, r.L, r.hkv, r.d}, 12), v = randn({1, r.L, r.hkv, r.d}, 13);
  const Tensor dout = randn({1, r.L, r.hq, r.d}, 14);
  kernels::AttentionOutput o = kernels::attention_forward(q, k, v);
  (void)kernels::attention_backward(q, k, v, o.out, o.lse, dout);
  r.dense_fwd_ms = bench::time_auto([&] { (void)kernels::attention_forward(q, k, v); }, reps);
  r.dense_bwd_ms = bench::time_auto(
      [&] { (void)kernels::attention_backward(q, k, v, o.out, o.lse, dout); }, reps);
  r.dense_source = "measured";
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

#endif  // SL_WITH_CUDA

}  // namespace

StatusOr<std::vector<AttentionBenchRow>> run_bench_attention(const BenchAttentionOptions& o,
                                                             std::FILE* out) {
  if (cuda_device_count() == 0)
    return Status::InvalidArgument(std::string("needs a CUDA device (") +
                                   (SL_WITH_CUDA ? "none is visible" : "this is a CPU-only build") +
                                   ")");
  std::map<std::pair<int64_t, int64_t>, CudnnTime> cudnn;
  if (!o.cudnn_csv.empty()) {
    auto c = read_cudnn_csv(o.cudnn_csv);
    if (!c.ok()) return c.status();
    cudnn = std::move(c).value();
  }
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return Status::IoError(o.out_dir + ": cannot create the output folder: " + ec.message());
  std::vector<AttentionBenchRow> rows;
#if SL_WITH_CUDA
  const SuperlinearConfig cfg =
      o.config == "upscaled" ? SuperlinearConfig::upscaled() : SuperlinearConfig::balanced();
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  std::map<int64_t, std::pair<int64_t, double>> last;  // gqa -> (L, seconds) of the last case
  for (int64_t L : o.lengths) {
    for (int64_t g : o.gqa) {
      AttentionBenchRow r;
      r.L = L, r.gqa = g, r.hq = o.heads, r.hkv = o.heads / g, r.d = o.head_dim;
      r.kv_bytes = 2 * r.hkv * L * r.d * int64_t(dtype_size(o.dtype));
      if (auto c = cudnn.find({L, g}); c != cudnn.end()) r.cudnn = c->second;
      const auto case_t0 = Clock::now();
      double predicted = 0;
      if (auto p = last.find(g); p != last.end())
        predicted = p->second.second * std::pow(double(L) / double(p->second.first), 1.5);
      if (o.max_seconds > 0 && since(t0) + predicted > o.max_seconds) {
        char buf[128];
        std::snprintf(buf, sizeof(buf), "skipped: ~%.0f s predicted, %.0f of %.0f s used",
                      predicted, since(t0), o.max_seconds);
        r.note = buf;
      } else {
        try {
          measure_superlinear(r, cfg, o.reps, o.fast_backward, o.keep_partials);
          last[g] = {L, since(case_t0)};
        } catch (const Error& e) {
          r.note = "failed: " + first_line(e.what());
        }
      }
      if (o.dense && L > o.dense_max_len) r.dense_source = "skipped";
      if (o.dense && L <= o.dense_max_len) {
        try {
          measure_dense(r, o.reps);
        } catch (const Error& e) {
          r.dense_source = "failed";
          std::fprintf(stderr, "dense L=%lld gqa=%lld: %s\n", (long long)L, (long long)g,
                       first_line(e.what()).c_str());
        }
      }
      cuda_alloc::empty_cache(0);
      std::fprintf(stderr, "L=%lld gqa=%lld: %s (%.1f s)\n", (long long)L, (long long)g,
                   r.note.empty() ? "done" : r.note.c_str(), since(case_t0));
      rows.push_back(std::move(r));
    }
  }
  extrapolate_dense(rows);
  char header[256];
  std::snprintf(header, sizeof(header),
                "# Attention: %s, superlinear %s (%s), B=1 Hq=%lld D=%lld bf16, reps %s",
                bench::device_name().c_str(), o.config.c_str(), cfg.str().c_str(),
                (long long)o.heads, (long long)o.head_dim,
                o.reps > 0 ? std::to_string(o.reps).c_str() : "auto");
  const std::string md = attention_markdown(rows, o, header);
  std::fputs(md.c_str(), out);
  std::fflush(out);
  const fs::path dir(o.out_dir);
  Status s = write_text((dir / "attention.md").string(), md);
  if (s.ok()) s = write_text((dir / "attention.csv").string(), attention_csv(rows));
  if (s.ok()) s = write_png((dir / "attention.png").string(), attention_plot(rows));
  if (!s.ok()) return s;
#else
  (void)out;
#endif
  return rows;
}

}  // namespace sl::trainer
