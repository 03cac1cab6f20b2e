// `superlinear bench` (trainer/bench_command.h): arguments, the counting and the L^2 fit, the
// table, CSV and plot. The GPU measurement itself is in trainer/bench_attention.cpp.
#include "trainer/bench_command.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace sl::trainer {
namespace {

StatusOr<int64_t> parse_int(const std::string& flag, const std::string& v) {
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
    return Status::InvalidArgument(flag + ": '" + v + "' is not a positive integer");
  int64_t n = std::stoll(v);
  if (n <= 0) return Status::InvalidArgument(flag + ": '" + v + "' is not a positive integer");
  return n;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  if (!s.empty() && s.back() == ',') out.push_back("");
  return out;
}

std::string fmt(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string csv_num(double v) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

double mib(int64_t bytes) {
  return bytes < 0 ? NAN : double(bytes) / (1024.0 * 1024.0);
}
double tflops(double flops, double ms) {
  return flops / (ms * 1e-3) / 1e12;
}

std::string length_label(int64_t L) {
  if (L % (int64_t(1) << 20) == 0) return std::to_string(L >> 20) + "M";
  if (L % 1024 == 0) return std::to_string(L >> 10) + "K";
  return std::to_string(L);
}

// ---- the plotter ----

struct Frame {
  int left = 64, right = 16, top = 16, bottom = 36, w = 0, h = 0;
  double x0 = 12, x1 = 20, y0 = -1, y1 = 3;  // log2 x, log10 y bounds
  double px(double x) const { return left + (std::log2(x) - x0) / (x1 - x0) * (w - left - right); }
  double py(double y) const { return top + (y1 - std::log10(y)) / (y1 - y0) * (h - top - bottom); }
};

bool plottable(double x, double y) {
  return std::isfinite(x) && std::isfinite(y) && x > 0 && y > 0;
}

void draw_line(Image& img, double xa, double ya, double xb, double yb, Rgb c, bool dashed) {
  const int n = std::max(1, int(std::ceil(std::max(std::fabs(xb - xa), std::fabs(yb - ya)))));
  for (int i = 0; i <= n; ++i) {
    if (dashed && (i / 6) % 2 == 1) continue;
    const double t = double(i) / n;
    img.fill(int(std::lround(xa + t * (xb - xa))) - 1, int(std::lround(ya + t * (yb - ya))) - 1, 2,
             2, c);
  }
}

std::string tick_label(double v) {
  if (v >= 1) return std::to_string(int64_t(std::llround(v)));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", int(std::ceil(-std::log10(v) - 1e-9)), v);
  return buf;
}

Rgb lighter(Rgb c, int shade) {
  const double t = std::min(0.6, 0.45 * shade);
  auto mix = [&](uint8_t v) { return uint8_t(std::lround(v + t * (255 - v))); };
  return {mix(c.r), mix(c.g), mix(c.b)};
}

}  // namespace

StatusOr<int64_t> parse_length(const std::string& text, const std::string& flag) {
  std::string digits = text;
  int64_t scale = 1;
  if (!text.empty() && (text.back() == 'K' || text.back() == 'k')) scale = int64_t(1) << 10;
  if (!text.empty() && (text.back() == 'M' || text.back() == 'm')) scale = int64_t(1) << 20;
  if (scale > 1) digits.pop_back();
  StatusOr<int64_t> n = parse_int(flag, digits);
  if (!n.ok() || n.value() > (int64_t(1) << 40) / scale)
    return Status::InvalidArgument(flag + ": '" + text + "' is not a length (e.g. 4096, 4K or 1M)");
  return n.value() * scale;
}

StatusOr<BenchAttentionOptions> parse_bench_attention_args(const std::vector<std::string>& args) {
  BenchAttentionOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto is = [&](const char* flag) { return a == flag; };
    const bool takes_value = is("--L") || is("--gqa") || is("--heads") || is("--hd") ||
                             is("--dtype") || is("--reps") || is("--out") || is("--config") ||
                             is("--dense-max-L") || is("--cudnn-csv") || is("--max-seconds");
    if (takes_value && i + 1 >= args.size()) return Status::InvalidArgument(a + ": needs a value");
    const std::string v = takes_value ? args[++i] : "";
    if (is("--L")) {
      o.lengths.clear();
      for (const std::string& s : split_commas(v)) {
        StatusOr<int64_t> n = parse_length(s, "--L");
        if (!n.ok()) return n.status();
        o.lengths.push_back(n.value());
      }
    } else if (is("--gqa")) {
      o.gqa.clear();
      for (const std::string& s : split_commas(v)) {
        StatusOr<int64_t> n = parse_int("--gqa", s);
        if (!n.ok()) return n.status();
        o.gqa.push_back(n.value());
      }
    } else if (is("--heads") || is("--hd") || is("--reps") || is("--dense-max-L")) {
      StatusOr<int64_t> n = is("--dense-max-L") ? parse_length(v, a) : parse_int(a, v);
      if (!n.ok()) return n.status();
      if (is("--heads")) o.heads = n.value();
      if (is("--hd")) o.head_dim = n.value();
      if (is("--reps")) o.reps = int(std::min<int64_t>(n.value(), 1000));
      if (is("--dense-max-L")) o.dense_max_len = n.value();
    } else if (is("--dtype")) {
      if (v != "bf16")
        return Status::InvalidArgument("--dtype: '" + v +
                                       "' is not supported; only bf16 is benchmarked (the "
                                       "superlinear kernels run f32 and bf16, the dense ones "
                                       "bf16 and f16)");
    } else if (is("--config")) {
      if (v != "balanced" && v != "upscaled")
        return Status::InvalidArgument("--config: '" + v + "' is not balanced or upscaled");
      o.config = v;
    } else if (is("--out")) {
      o.out_dir = v;
    } else if (is("--cudnn-csv")) {
      o.cudnn_csv = v;
    } else if (is("--max-seconds")) {
      char* end = nullptr;
      o.max_seconds = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.max_seconds > 0))
        return Status::InvalidArgument("--max-seconds: '" + v + "' is not a positive number");
    } else if (is("--no-dense")) {
      o.dense = false;
    } else if (is("--fast-backward")) {
      o.fast_backward = true;
    } else if (is("--keep-partials")) {
      o.keep_partials = true;
    } else {
      return Status::InvalidArgument("unexpected argument '" + a + "'");
    }
  }
  if (o.lengths.empty()) return Status::InvalidArgument("--L: no length given");
  if (o.gqa.empty()) return Status::InvalidArgument("--gqa: no ratio given");
  for (int64_t g : o.gqa)
    if (o.heads % g != 0)
      return Status::InvalidArgument("--gqa: " + std::to_string(g) + " does not divide --heads " +
                                     std::to_string(o.heads));
  if (o.head_dim != 64 && o.head_dim != 128)
    return Status::InvalidArgument("--hd: " + std::to_string(o.head_dim) +
                                   " is not 64 or 128 (the dense kernels' head sizes)");
  return o;
}

AttendedWork count_attended(const kernels::SuperlinearConfig& cfg, int64_t slices, int64_t L,
                            const std::vector<int32_t>& anchors) {
  AttendedWork total;
  if (anchors.empty()) {
    kernels::SuperlinearWork w = kernels::superlinear_work(cfg, L, 0);
    return {w.total_keys * slices, w.total_search * slices};
  }
  const size_t per = size_t(L) * size_t(cfg.k);
  SL_CHECK(anchors.size() == per * size_t(slices))
      << "count_attended: " << anchors.size() << " anchors for " << slices << " x " << L
      << " queries and k = " << cfg.k;
  for (int64_t s = 0; s < slices; ++s) {
    const auto first = anchors.begin() + ptrdiff_t(size_t(s) * per);
    kernels::SuperlinearWork w = kernels::superlinear_work(
        cfg, L, 0, {}, std::vector<int32_t>(first, first + ptrdiff_t(per)));
    total.keys += w.total_keys;
    total.search += w.total_search;
  }
  return total;
}

double fit_quadratic(std::vector<std::pair<int64_t, double>> points, size_t largest) {
  std::erase_if(points, [](const auto& p) { return !(std::isfinite(p.second) && p.second > 0); });
  std::sort(points.begin(), points.end());
  if (points.empty() || largest == 0) return NAN;
  const size_t from = points.size() > largest ? points.size() - largest : 0;
  double sum = 0;
  for (size_t i = from; i < points.size(); ++i)
    sum += std::log(points[i].second) - 2.0 * std::log(double(points[i].first));
  return std::exp(sum / double(points.size() - from));
}

Image loglog_plot(const std::vector<PlotSeries>& series, int width, int height) {
  Frame f;
  f.w = width, f.h = height;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const PlotSeries& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!plottable(s.x[i], s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  if (std::isfinite(xmin)) {
    f.x0 = std::floor(std::log2(xmin)), f.x1 = std::max(f.x0 + 1, std::ceil(std::log2(xmax)));
    f.y0 = std::floor(std::log10(ymin)), f.y1 = std::max(f.y0 + 1, std::ceil(std::log10(ymax)));
  }
  Image img(width, height);
  const Rgb grid{225, 225, 225}, ink{0, 0, 0};
  const int plot_w = width - f.left - f.right, plot_h = height - f.top - f.bottom;
  for (double e = f.x0; e <= f.x1 + 1e-9; ++e) {
    const int x = int(std::lround(f.px(std::exp2(e))));
    img.fill(x, f.top, 1, plot_h, grid);
    img.fill(x, f.top + plot_h, 1, 5, ink);
    const double v = std::exp2(e);
    const std::string label = tick_label(v >= 1024 ? v / 1024 : v);
    img.text(x - Image::text_width(label, 2) / 2, f.top + plot_h + 9, label, ink, 2);
  }
  for (double e = f.y0; e <= f.y1 + 1e-9; ++e) {
    const int y = int(std::lround(f.py(std::pow(10.0, e))));
    img.fill(f.left, y, plot_w, 1, grid);
    img.fill(f.left - 5, y, 5, 1, ink);
    const std::string label = tick_label(std::pow(10.0, e));
    img.text(f.left - 9 - Image::text_width(label, 2), y - 5, label, ink, 2);
  }
  img.fill(f.left, f.top, 1, plot_h + 1, ink);
  img.fill(f.left, f.top + plot_h, plot_w + 1, 1, ink);
  for (const PlotSeries& s : series) {
    bool have_prev = false;
    double xp = 0, yp = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!plottable(s.x[i], s.y[i])) continue;
      const double x = f.px(s.x[i]), y = f.py(s.y[i]);
      if (have_prev) draw_line(img, xp, yp, x, y, s.colour, s.dashed);
      img.fill(int(std::lround(x)) - 3, int(std::lround(y)) - 3, 7, 7, s.colour);
      xp = x, yp = y, have_prev = true;
    }
  }
  return img;
}

StatusOr<std::map<std::pair<int64_t, int64_t>, CudnnTime>> read_cudnn_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IoError(path + ": cannot open the cuDNN CSV");
  std::map<std::pair<int64_t, int64_t>, CudnnTime> out;
  bool header = false;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (!header) {
      if (line != "L,gqa,fwd_ms,bwd_ms")
        return Status::InvalidArgument(where + "expected the header 'L,gqa,fwd_ms,bwd_ms', got '" +
                                       line + "'");
      header = true;
      continue;
    }
    std::vector<std::string> f = split_commas(line);
    if (f.size() != 4)
      return Status::InvalidArgument(where + "expected 4 fields (L,gqa,fwd_ms,bwd_ms), got " +
                                     std::to_string(f.size()));
    StatusOr<int64_t> L = parse_int("L", f[0]), g = parse_int("gqa", f[1]);
    if (!L.ok()) return Status::InvalidArgument(where + L.status().message());
    if (!g.ok()) return Status::InvalidArgument(where + g.status().message());
    CudnnTime t;
    double* dst[2] = {&t.fwd_ms, &t.bwd_ms};
    for (int k = 0; k < 2; ++k) {
      const std::string& s = f[size_t(2 + k)];
      if (s.empty() || s == "nan") continue;
      char* end = nullptr;
      *dst[k] = std::strtod(s.c_str(), &end);
      if (*end != '\0' || !(*dst[k] > 0))
        return Status::InvalidArgument(where + (k ? "bwd_ms" : "fwd_ms") + " '" + s +
                                       "' is not a positive number, empty or nan");
    }
    out[{L.value(), g.value()}] = t;
  }
  if (!header) return Status::InvalidArgument(path + ": no 'L,gqa,fwd_ms,bwd_ms' header");
  return out;
}

void extrapolate_dense(std::vector<AttentionBenchRow>& rows) {
  std::map<int64_t, std::vector<std::pair<int64_t, double>>> fwd, bwd;
  for (const AttentionBenchRow& r : rows)
    if (r.dense_source == "measured") {
      fwd[r.gqa].push_back({r.L, r.dense_fwd_ms});
      bwd[r.gqa].push_back({r.L, r.dense_bwd_ms});
    }
  for (AttentionBenchRow& r : rows) {
    if (r.dense_source == "measured" || r.dense_source == "off" || !fwd.count(r.gqa)) continue;
    const double L2 = double(r.L) * double(r.L);
    r.dense_fwd_ms = fit_quadratic(fwd[r.gqa]) * L2;
    r.dense_bwd_ms = fit_quadratic(bwd[r.gqa]) * L2;
    r.dense_source = "extrapolated";
  }
}

std::string attention_markdown(const std::vector<AttentionBenchRow>& rows,
                               const BenchAttentionOptions& o, const std::string& header) {
  const bool cudnn = !o.cudnn_csv.empty();
  std::ostringstream md;
  md << header
     << "\n\n| L | GQA | keys/query | search GFLOP | search | SL fwd ms | SL fwd TFLOP/s | "
     << "SL bwd ms | SL bwd TFLOP/s | ";
  if (o.fast_backward) md << "SL bwd fast ms | SL bwd fast TFLOP/s | ";
  if (o.keep_partials) md << "SL bwd kept ms | SL bwd kept TFLOP/s | partials MiB | ";
  md << "SL peak MiB | fwd workspace MiB | bwd workspace MiB | metadata MiB | K+V MiB | dense fwd "
     << "ms | dense fwd TFLOP/s "
     << "| dense bwd ms | dense bwd TFLOP/s | dense | speed-up |";
  if (cudnn) md << " cuDNN fwd+bwd ms | speed-up vs cuDNN |";
  md << "\n|";
  const int extra = (o.fast_backward ? 2 : 0) + (o.keep_partials ? 3 : 0);
  const int cols = 20 + extra + (cudnn ? 2 : 0);
  for (int c = 0; c < cols; ++c) md << "---|";
  md << "\n";
  for (const AttentionBenchRow& r : rows) {
    const double queries = double(r.hq) * double(r.L);
    const double sf = r.sl_fwd_flops(), df = r.dense_fwd_flops();
    std::vector<std::string> c = {length_label(r.L), std::to_string(r.gqa)};
    if (r.note.empty()) {
      c.insert(c.end(), {fmt(double(r.work.keys) / queries, 0),
                         fmt(2.0 * double(r.d) * double(r.work.search) / 1e9, 1),
                         r.search.empty() ? "-" : r.search, fmt(r.sl_fwd_ms, 3),
                         fmt(tflops(sf, r.sl_fwd_ms), 1), fmt(r.sl_bwd_ms, 3),
                         fmt(tflops(2.5 * sf, r.sl_bwd_ms), 1)});
      if (o.fast_backward)
        c.insert(c.end(), {fmt(r.sl_bwd_fast_ms, 3), fmt(tflops(2.5 * sf, r.sl_bwd_fast_ms), 1)});
      if (o.keep_partials)
        c.insert(c.end(), {fmt(r.sl_bwd_kept_ms, 3), fmt(tflops(2.5 * sf, r.sl_bwd_kept_ms), 1),
                           fmt(mib(r.partials_bytes), 0)});
      c.insert(c.end(), {fmt(mib(r.peak_bytes), 0), fmt(mib(r.fwd_workspace_bytes), 0),
                         fmt(mib(r.bwd_workspace_bytes), 0), fmt(mib(r.metadata_bytes), 0)});
    } else {
      c.push_back(r.note);
      c.resize(c.size() + 10 + size_t(extra), "-");
    }
    c.insert(c.end(),
             {fmt(mib(r.kv_bytes), 0), fmt(r.dense_fwd_ms, 3), fmt(tflops(df, r.dense_fwd_ms), 1),
              fmt(r.dense_bwd_ms, 3), fmt(tflops(2.5 * df, r.dense_bwd_ms), 1), r.dense_source,
              fmt(r.speedup(), 2)});
    if (cudnn) {
      const double t = r.cudnn.fwd_ms + r.cudnn.bwd_ms;
      c.insert(c.end(), {fmt(t, 3), fmt(t / (r.sl_fwd_ms + r.sl_bwd_ms), 2)});
    }
    md << "|";
    for (const std::string& cell : c) md << " " << cell << " |";
    md << "\n";
  }
  md << "\nSL: superlinear attention (" << o.config << "), backward deterministic"
     << (o.fast_backward ? " (and the fast atomic mode)" : "")
     << (o.keep_partials ? "; 'kept': the backward from the window and span outputs the forward "
                           "kept (Note [kept partials]; 'partials MiB' their size, not in the "
                           "workspace columns)"
                         : "")
     << ". FLOPs (spec §11): SL forward = 4 * D * attended keys, the keys summed over every query "
        "and head from the anchors the forward kept (window keys + kept span lengths); backward = "
        "2.5 x forward; the search (2 * D per candidate score, 'search GFLOP') is not counted; "
        "'search': the search kernel the forward ran (stream, int8 or bf16 on tensor cores, Notes "
        "[stream search], [int8 search]; lanes; cpu). "
        "Dense: 4 * D * T (T + 1) / 2 per head forward, 2.5 x backward. Dense 'extrapolated': "
        "c * L^2 fit on the two largest measured lengths. Speed-up: dense (fwd + bwd) / SL "
        "(fwd + bwd). Peak: allocator high-water mark over the SL forward and backward, inputs "
        "included. Workspace: the most bytes alive at once beyond Q, Qs, K, V, O (and, in the "
        "backward, dO and the four gradients): metadata + scratch, in the allocator's "
        "rounded sizes, for the forward and the backward apart; the forward's all the metadata it "
        "writes, the backward's what a training step keeps for it ('metadata': anchors and lse_s, "
        "and scores and lse_w where that backward reads them). Plot "
        "(attention.png): ms of fwd + bwd against L in K tokens, log-log; blue superlinear, red "
        "dense (dashed: extrapolated), green cuDNN; the later GQA ratios in lighter shades.\n";
  return md.str();
}

std::string attention_csv(const std::vector<AttentionBenchRow>& rows) {
  std::ostringstream c;
  c << "L,gqa,hq,hkv,d,note,attended_keys,search_scores,sl_fwd_ms,sl_fwd_tflops,sl_bwd_ms,"
       "sl_bwd_tflops,sl_bwd_fast_ms,sl_bwd_fast_tflops,sl_peak_bytes,sl_fwd_workspace_bytes,"
       "sl_bwd_workspace_bytes,"
       "sl_metadata_bytes,kv_bytes,dense_fwd_ms,dense_fwd_tflops,dense_bwd_ms,dense_bwd_tflops,"
       "dense_source,speedup,cudnn_fwd_ms,cudnn_bwd_ms,sl_bwd_kept_ms,sl_bwd_kept_tflops,"
       "sl_partials_bytes,search\n";
  for (const AttentionBenchRow& r : rows) {
    const double sf = r.sl_fwd_flops(), df = r.dense_fwd_flops();
    std::string note = r.note;
    std::replace(note.begin(), note.end(), ',', ';');
    std::string src = r.dense_source;
    std::replace(src.begin(), src.end(), ',', ';');
    c << r.L << "," << r.gqa << "," << r.hq << "," << r.hkv << "," << r.d << "," << note << ","
      << r.work.keys << "," << r.work.search << "," << csv_num(r.sl_fwd_ms) << ","
      << csv_num(tflops(sf, r.sl_fwd_ms)) << "," << csv_num(r.sl_bwd_ms) << ","
      << csv_num(tflops(2.5 * sf, r.sl_bwd_ms)) << "," << csv_num(r.sl_bwd_fast_ms) << ","
      << csv_num(tflops(2.5 * sf, r.sl_bwd_fast_ms)) << "," << r.peak_bytes << ","
      << r.fwd_workspace_bytes << "," << r.bwd_workspace_bytes << "," << r.metadata_bytes << ","
      << r.kv_bytes << "," << csv_num(r.dense_fwd_ms) << "," << csv_num(tflops(df, r.dense_fwd_ms))
      << "," << csv_num(r.dense_bwd_ms) << "," << csv_num(tflops(2.5 * df, r.dense_bwd_ms)) << ","
      << src << "," << csv_num(r.speedup()) << "," << csv_num(r.cudnn.fwd_ms) << ","
      << csv_num(r.cudnn.bwd_ms) << "," << csv_num(r.sl_bwd_kept_ms) << ","
      << csv_num(tflops(2.5 * sf, r.sl_bwd_kept_ms)) << "," << r.partials_bytes << "," << r.search
      << "\n";
  }
  return c.str();
}

Image attention_plot(const std::vector<AttentionBenchRow>& rows) {
  std::vector<int64_t> ratios;
  for (const AttentionBenchRow& r : rows)
    if (std::find(ratios.begin(), ratios.end(), r.gqa) == ratios.end()) ratios.push_back(r.gqa);
  std::vector<PlotSeries> series;
  for (size_t g = 0; g < ratios.size(); ++g) {
    const int shade = int(g);
    PlotSeries sl{{}, {}, lighter({30, 90, 200}, shade)};
    PlotSeries dense{{}, {}, lighter({200, 40, 40}, shade)};
    PlotSeries extra{{}, {}, lighter({200, 40, 40}, shade), true};
    PlotSeries cudnn{{}, {}, lighter({30, 150, 60}, shade)};
    for (const AttentionBenchRow& r : rows) {
      if (r.gqa != ratios[g]) continue;
      const double L = double(r.L);
      sl.x.push_back(L), sl.y.push_back(r.sl_fwd_ms + r.sl_bwd_ms);
      const double d = r.dense_fwd_ms + r.dense_bwd_ms;
      if (r.dense_source == "measured") {
        dense.x.push_back(L), dense.y.push_back(d);
        extra.x.assign(1, L), extra.y.assign(1, d);
      } else if (r.dense_source == "extrapolated") {
        extra.x.push_back(L), extra.y.push_back(d);
      }
      cudnn.x.push_back(L), cudnn.y.push_back(r.cudnn.fwd_ms + r.cudnn.bwd_ms);
    }
    if (extra.x.size() < 2) extra.x.clear(), extra.y.clear();
    for (PlotSeries* s : {&extra, &dense, &cudnn, &sl}) series.push_back(std::move(*s));
  }
  return loglog_plot(series);
}

int bench_command(const std::vector<std::string>& args) {
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: superlinear bench attention [--L 4K,16K,64K,128K,256K,1M] [--gqa 1,8] "
                 "[--heads 16] [--hd 128]\n"
                 "         [--dtype bf16] [--config balanced|upscaled] [--reps N] [--out DIR] "
                 "[--no-dense] [--dense-max-L 128K]\n"
                 "         [--fast-backward] [--keep-partials] [--cudnn-csv FILE] "
                 "[--max-seconds S]\n");
    return 2;
  };
  if (args.empty() || args[0] != "attention") return usage();
  StatusOr<BenchAttentionOptions> o =
      parse_bench_attention_args(std::vector<std::string>(args.begin() + 1, args.end()));
  if (!o.ok()) {
    std::fprintf(stderr, "superlinear bench attention: %s\n", o.status().message().c_str());
    return usage();
  }
  StatusOr<std::vector<AttentionBenchRow>> r = run_bench_attention(o.value(), stdout);
  if (!r.ok()) {
    std::fprintf(stderr, "superlinear bench attention: %s\n", r.status().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace sl::trainer
