// `superlinear bench attention`: superlinear attention (kernels/superlinear.h) against our dense
// flash attention (kernels/attention.h) and, from a CSV that experiments/bench_attention_cudnn.py
// writes, PyTorch's cuDNN SDPA, over a list of context lengths and GQA ratios. Writes a Markdown
// table (stdout and DIR/attention.md), DIR/attention.csv and a log-log plot DIR/attention.png.
//
// Counting (spec §11): superlinear forward FLOPs = 4 * D * (attended keys), the attended keys
// summed exactly over every query and head from the anchors the forward kept (window keys + every
// kept span's length, kernels::superlinear_work); backward = 2.5 x forward; the search (2 * D per
// candidate score) is reported apart and counted in neither. Dense: 4 * D * T (T + 1) / 2 per
// head forward, 2.5 x backward.
//
// The one non-obvious decision: dense times beyond --dense-max-L (or past an out-of-memory) are
// extrapolated as c * L^2 with c fit in log space on the two largest measured lengths only: the
// causal work is exactly quadratic, and the smaller lengths carry fixed launch and tail costs that
// would pull c down.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "kernels/superlinear.h"
#include "trainer/png.h"

namespace sl::trainer {

struct BenchAttentionOptions {
  std::vector<int64_t> lengths = {int64_t(4) << 10,   int64_t(16) << 10,  int64_t(64) << 10,
                                  int64_t(128) << 10, int64_t(256) << 10, int64_t(1) << 20};
  std::vector<int64_t> gqa = {1, 8};  // Hq / Hkv
  int64_t heads = 16;                 // Hq
  int64_t head_dim = 128;             // D: 64 or 128 (the dense kernels' sizes)
  DType dtype = DType::BF16;          // bf16 only (both kernels' common training dtype)
  std::string config = "balanced";    // balanced | upscaled (SuperlinearConfig)
  int reps = 0;                       // timed repetitions (median); 0: ~1.5 s worth, 1..10
  std::string out_dir = "bench";
  bool dense = true;                           // --no-dense: superlinear only
  int64_t dense_max_len = int64_t(128) << 10;  // longer: dense extrapolated, not run
  bool fast_backward = false;                  // also time the fast (atomic) superlinear backward
  bool keep_partials = false;  // also time the backward from kept partials (Note [kept partials])
  std::string cudnn_csv;       // optional PyTorch cuDNN SDPA times
  double max_seconds = 0;      // > 0: skip superlinear cases predicted (L^1.5) past this total
};

// "4096", "4K"/"4k" (x 1024) or "1M"/"1m" (x 1024^2); InvalidArgument naming `flag` otherwise.
StatusOr<int64_t> parse_length(const std::string& text, const std::string& flag = "--L");

// The arguments after "bench attention". Errors name the flag and the bad value.
StatusOr<BenchAttentionOptions> parse_bench_attention_args(const std::vector<std::string>& args);

// Attended keys and search scores summed over `slices` heads (or batch x heads) of L queries at
// t = 0 .. L - 1 (one document), from anchors int32 [slices, L, k] as the forward saves them; with
// `anchors` empty, for the k nearest candidates of every query (the most keys when f_f = 0).
struct AttendedWork {
  int64_t keys = 0, search = 0;
};
AttendedWork count_attended(const kernels::SuperlinearConfig& cfg, int64_t slices, int64_t L,
                            const std::vector<int32_t>& anchors = {});

// c in t = c * L^2, the geometric mean of ms / L^2 over the `largest` points with the largest L
// (all points when fewer). NaN with no point; points with a non-finite or non-positive time are
// ignored.
double fit_quadratic(std::vector<std::pair<int64_t, double>> points, size_t largest = 2);

// One line or point series of a log-log plot; points with x or y <= 0 or non-finite are skipped.
struct PlotSeries {
  std::vector<double> x, y;
  Rgb colour;
  bool dashed = false;
};
// Axes with ticks and labels at powers of 2 (x, labelled in units of 1024 when >= 1024) and of 10
// (y), light grid lines, each series as a 2-pixel polyline with a square marker at every point.
Image loglog_plot(const std::vector<PlotSeries>& series, int width = 800, int height = 560);

// PyTorch cuDNN SDPA times: CSV with the header "L,gqa,fwd_ms,bwd_ms" ('#' lines are comments;
// an empty or "nan" time means not measured). Errors name the file and line.
struct CudnnTime {
  double fwd_ms = NAN, bwd_ms = NAN;
};
StatusOr<std::map<std::pair<int64_t, int64_t>, CudnnTime>> read_cudnn_csv(const std::string& path);

// One (L, GQA) case. Times in ms (NaN: not measured), sizes in bytes (-1: not measured).
struct AttentionBenchRow {
  int64_t L = 0, gqa = 1, hq = 0, hkv = 0, d = 0;
  std::string note;    // empty when the superlinear op ran, else why not ("skipped: ...")
  std::string search;  // the search kernel the forward ran (kernels::superlinear_search_kernel)
  AttendedWork work;
  double sl_fwd_ms = NAN, sl_bwd_ms = NAN, sl_bwd_fast_ms = NAN;
  // --keep-partials: the backward from the kept window and span outputs, and their bytes.
  double sl_bwd_kept_ms = NAN;
  int64_t partials_bytes = -1;
  int64_t peak_bytes = -1;  // allocator high-water mark over forward + backward, inputs in
  // Most bytes alive at once beyond Q, Qs, K, V, O (and, in the backward, dO and the gradients):
  // the forward's (the metadata it writes and scratch) and the backward's (the metadata kept
  // for it and scratch).
  int64_t fwd_workspace_bytes = -1, bwd_workspace_bytes = -1;
  // What a training step keeps for the backward (kernels::drop_unsaved): anchors, lse_s, and
  // scores and lse_w where the backward reads them.
  int64_t metadata_bytes = -1;
  int64_t kv_bytes = 0;  // K + V
  double dense_fwd_ms = NAN, dense_bwd_ms = NAN;
  std::string dense_source = "off";  // measured | extrapolated | off | failed: ...
  CudnnTime cudnn;

  double sl_fwd_flops() const { return 4.0 * double(d) * double(work.keys); }
  double dense_fwd_flops() const { return 4.0 * double(d) * double(hq) * L * (L + 1.0) / 2.0; }
  double speedup() const { return (dense_fwd_ms + dense_bwd_ms) / (sl_fwd_ms + sl_bwd_ms); }
};

// Fills dense_fwd_ms / dense_bwd_ms of rows without a measured dense time from fit_quadratic over
// the measured rows of the same GQA ratio (dense_source "extrapolated"); rows with dense "off"
// stay off.
void extrapolate_dense(std::vector<AttentionBenchRow>& rows);

std::string attention_markdown(const std::vector<AttentionBenchRow>& rows,
                               const BenchAttentionOptions& opts, const std::string& header);
std::string attention_csv(const std::vector<AttentionBenchRow>& rows);
// Time of fwd + bwd against L: superlinear (blue), dense measured (red, solid) and extrapolated
// (red, dashed), cuDNN (green); the GQA ratios after the first in lighter shades.
Image attention_plot(const std::vector<AttentionBenchRow>& rows);

// Measures every case on cuda:0 (trainer/bench_attention.cpp), prints the table to `out` and
// writes attention.md, attention.csv and attention.png into opts.out_dir. InvalidArgument "needs
// a CUDA device" without one; a case that fails (out of memory) is a row with its note, not an
// error; IoError naming the file that could not be written.
StatusOr<std::vector<AttentionBenchRow>> run_bench_attention(const BenchAttentionOptions& opts,
                                                             std::FILE* out = stdout);

// `superlinear bench <name> [args]`; returns the process exit code.
int bench_command(const std::vector<std::string>& args);

}  // namespace sl::trainer
