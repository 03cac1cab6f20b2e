// `superlinear bench attention` without a GPU: argument errors, the attended-key count against
// the CPU reference's own counters and a hand count, the L^2 fit and extrapolation, the cuDNN CSV
// reader, the table and CSV, the log-log plot as a PNG, and the "needs a CUDA device" error.
#include "trainer/bench_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;
using kernels::SuperlinearConfig;

std::string error_of(const std::vector<std::string>& args) {
  StatusOr<BenchAttentionOptions> o = parse_bench_attention_args(args);
  return o.ok() ? "" : o.status().message();
}

TEST(BenchCommand, ParsesLengthsWithSuffixes) {
  EXPECT_EQ(parse_length("4096").value(), 4096);
  EXPECT_EQ(parse_length("4K").value(), 4096);
  EXPECT_EQ(parse_length("16k").value(), 16384);
  EXPECT_EQ(parse_length("1M").value(), 1 << 20);
  for (const char* bad : {"", "K", "4G", "-4K", "0", "1.5K", "4KK"}) {
    StatusOr<int64_t> n = parse_length(bad);
    ASSERT_FALSE(n.ok()) << bad;
    EXPECT_NE(n.status().message().find("--L"), std::string::npos) << n.status().message();
  }
}

TEST(BenchCommand, ParsesEveryFlag) {
  StatusOr<BenchAttentionOptions> o =
      parse_bench_attention_args({"--L",         "4K,64K",   "--gqa",         "1,2,4",
                                  "--heads",     "8",        "--hd",          "64",
                                  "--dtype",     "bf16",     "--reps",        "3",
                                  "--out",       "/tmp/x",   "--no-dense",    "--fast-backward",
                                  "--config",    "upscaled", "--dense-max-L", "32K",
                                  "--cudnn-csv", "c.csv",    "--max-seconds", "90",
                                  "--keep-partials"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o.value().lengths, (std::vector<int64_t>{4096, 65536}));
  EXPECT_EQ(o.value().gqa, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(o.value().heads, 8);
  EXPECT_EQ(o.value().head_dim, 64);
  EXPECT_EQ(o.value().reps, 3);
  EXPECT_EQ(o.value().out_dir, "/tmp/x");
  EXPECT_FALSE(o.value().dense);
  EXPECT_TRUE(o.value().fast_backward);
  EXPECT_TRUE(o.value().keep_partials);
  EXPECT_EQ(o.value().config, "upscaled");
  EXPECT_EQ(o.value().dense_max_len, 32768);
  EXPECT_EQ(o.value().cudnn_csv, "c.csv");
  EXPECT_EQ(o.value().max_seconds, 90);
  BenchAttentionOptions d = parse_bench_attention_args({}).value();
  EXPECT_EQ(d.lengths.back(), 1 << 20);
  EXPECT_TRUE(d.dense);
  EXPECT_FALSE(d.keep_partials);
}

TEST(BenchCommand, ArgumentErrorsNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--L", "4K,x"}, "--L"},
      {{"--L", ""}, "--L"},
      {{"--gqa", "3"}, "--gqa"},
      {{"--gqa", "0"}, "--gqa"},
      {{"--hd", "96"}, "--hd"},
      {{"--dtype", "f32"}, "--dtype"},
      {{"--config", "fast"}, "--config"},
      {{"--reps", "0"}, "--reps"},
      {{"--max-seconds", "-1"}, "--max-seconds"},
      {{"--out"}, "--out"},
      {{"--bogus"}, "--bogus"},
      {{"stray"}, "stray"}};
  for (const auto& [args, flag] : cases) {
    const std::string e = error_of(args);
    EXPECT_NE(e.find(flag), std::string::npos) << "'" << e << "' should name " << flag;
  }
  EXPECT_EQ(bench_command({}), 2);
  EXPECT_EQ(bench_command({"matmul"}), 2);
  EXPECT_EQ(bench_command({"attention", "--gqa", "5"}), 2);
}

TEST(BenchCommand, NeedsACudaDevice) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible";
  BenchAttentionOptions o;
  o.out_dir = testing::TempDir() + "/bench_nogpu_" + std::to_string(getpid());
  StatusOr<std::vector<AttentionBenchRow>> r = run_bench_attention(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("needs a CUDA device"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(bench_command({"attention", "--out", o.out_dir}), 1);
}

// The attended keys summed from anchors equal what the CPU reference counted while attending.
TEST(BenchCommand, AttendedKeysMatchTheReferenceCounters) {
  SuperlinearConfig windowed = SuperlinearConfig::balanced();
  windowed.s = 3, windowed.f_f = 1;  // W = 15, forward spans
  for (const SuperlinearConfig& cfg : {SuperlinearConfig::balanced(), windowed}) {
    const int64_t H = 2, L = 150, D = 8;
    Generator g(7);
    Tensor qa = Tensor::randn({1, H, L, D}, g), qs = Tensor::randn({1, H, L, D}, g);
    Tensor k = Tensor::randn({1, 1, L, D}, g), v = Tensor::randn({1, 1, L, D}, g);
    kernels::SuperlinearWork ref;
    kernels::SuperlinearForward f = kernels::superlinear_forward(qa, qs, k, v, cfg, {}, -1, &ref);
    AttendedWork w = count_attended(cfg, H, L, f.anchors.to_vector<int32_t>());
    EXPECT_EQ(w.keys, ref.total_keys) << cfg.str();
    EXPECT_EQ(w.search, ref.total_search) << cfg.str();
    if (cfg.f_f == 0) {
      EXPECT_LE(w.keys, count_attended(cfg, H, L).keys) << cfg.str();
    }
  }
}

// Balanced config by hand: W = 0; query t (T = t + 1) has floor(sqrt(T)) candidates at
// a_j = t + 1 - (j + 1)^2, each span [max(0, a_j - ceil(2 sqrt(T))), a_j].
TEST(BenchCommand, NearestCandidateBoundByHand) {
  const int64_t L = 3000;
  int64_t keys = 0, search = 0, last_keys = 0;
  for (int64_t t = 0; t < L; ++t) {
    const int64_t T = t + 1, n = int64_t(std::floor(std::sqrt(double(T))));
    const int64_t len = int64_t(std::ceil(2 * std::sqrt(double(T))));
    int64_t q = 0;
    for (int64_t j = 0; j < std::min<int64_t>(n, 3); ++j) {
      const int64_t a = t + 1 - (j + 1) * (j + 1);
      q += a - std::max<int64_t>(0, a - len) + 1;
    }
    keys += q, search += n, last_keys = q;
  }
  EXPECT_EQ(last_keys, 3 * (2 * 55 + 1));  // ceil(2 sqrt(3000)) = 110 -> 111 keys a span
  AttendedWork w = count_attended(SuperlinearConfig::balanced(), 4, L);
  EXPECT_EQ(w.keys, 4 * keys);
  EXPECT_EQ(w.search, 4 * search);
}

TEST(BenchCommand, QuadraticFitUsesTheLargestPoints) {
  const double c = 3e-9;
  std::vector<std::pair<int64_t, double>> pts;
  for (int64_t L : {1024, 4096, 16384, 65536}) pts.push_back({L, c * double(L) * double(L)});
  EXPECT_NEAR(fit_quadratic(pts) / c, 1.0, 1e-12);
  pts.push_back({256, 5.0});  // launch-bound small point: must not move the fit
  pts.push_back({512, NAN});
  EXPECT_NEAR(fit_quadratic(pts) / c, 1.0, 1e-12);
  // Two points off the curve by x2 and x0.5: the log-space fit is their geometric mean.
  EXPECT_NEAR(fit_quadratic({{1000, 2 * c * 1e6}, {2000, 0.5 * c * 4e6}}) / c, 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(fit_quadratic({})));
}

AttentionBenchRow row(int64_t L, int64_t gqa, const std::string& dense, double ms = NAN) {
  AttentionBenchRow r;
  r.L = L, r.gqa = gqa, r.hq = 16, r.hkv = 16 / gqa, r.d = 128;
  r.work = {L * 16 * 100, L * 16 * 10};
  r.sl_fwd_ms = 1e-4 * double(L), r.sl_bwd_ms = 3e-4 * double(L);
  r.dense_source = dense, r.dense_fwd_ms = ms, r.dense_bwd_ms = NAN;
  if (dense == "measured") r.dense_bwd_ms = 2 * ms;
  return r;
}

TEST(BenchCommand, DenseExtrapolatedPerGqaRatio) {
  std::vector<AttentionBenchRow> rows = {
      row(16384, 1, "measured", 10), row(32768, 1, "measured", 40), row(65536, 1, "skipped"),
      row(131072, 1, "failed"),      row(32768, 8, "measured", 8),  row(65536, 8, "skipped"),
      row(65536, 2, "off")};
  extrapolate_dense(rows);
  EXPECT_EQ(rows[2].dense_source, "extrapolated");
  EXPECT_NEAR(rows[2].dense_fwd_ms, 160, 1e-9);
  EXPECT_NEAR(rows[2].dense_bwd_ms, 320, 1e-9);
  EXPECT_NEAR(rows[3].dense_fwd_ms, 640, 1e-9);
  EXPECT_NEAR(rows[5].dense_fwd_ms, 32, 1e-9);
  EXPECT_EQ(rows[6].dense_source, "off");
  EXPECT_TRUE(std::isnan(rows[6].dense_fwd_ms));
  EXPECT_NEAR(rows[2].speedup(), 480 / (6.5536 + 3 * 6.5536), 1e-9);
}

TEST(BenchCommand, TableAndCsvCarryEveryRow) {
  std::vector<AttentionBenchRow> rows = {row(4096, 1, "measured", 1), row(8192, 1, "skipped")};
  rows.push_back(row(16384, 1, "skipped"));
  rows.back().note = "skipped: ~90 s predicted, 10 of 60 s used";
  extrapolate_dense(rows);
  BenchAttentionOptions o;
  const std::string md = attention_markdown(rows, o, "# header");
  EXPECT_EQ(md.rfind("# header", 0), 0u);
  EXPECT_NE(md.find("| 4K | 1 | 100 |"), std::string::npos) << md;
  EXPECT_NE(md.find("extrapolated"), std::string::npos);
  EXPECT_NE(md.find("| 16K | 1 | skipped: ~90 s predicted"), std::string::npos) << md;
  size_t header_cols = 0, row_cols = 0;
  std::istringstream lines(md);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| L |", 0) == 0)
      header_cols = size_t(std::count(line.begin(), line.end(), '|'));
    if (line.rfind("| 16K", 0) == 0) row_cols = size_t(std::count(line.begin(), line.end(), '|'));
  }
  EXPECT_EQ(row_cols, header_cols);
  const std::string csv = attention_csv(rows);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  std::istringstream csv_lines(csv);
  for (std::string line; std::getline(csv_lines, line);)
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), 30) << line;
  // 4 * D * keys / ms: 4 * 128 * 4096 * 1600 / 0.4096 ms = 8.192 TFLOP/s.
  EXPECT_NE(csv.find("4096,1,16,16,128,,6553600,655360,0.4096,8.192,"), std::string::npos) << csv;

  // The optional columns (fast mode, kept partials) keep measured and skipped rows aligned.
  o.fast_backward = o.keep_partials = true;
  rows[0].sl_bwd_kept_ms = 0.8192, rows[0].partials_bytes = int64_t(3) << 20;
  rows[0].search = "int8";  // the search kernel's column, after the search's GFLOP
  const std::string md2 = attention_markdown(rows, o, "# header");
  std::istringstream lines2(md2);
  std::vector<size_t> cols;
  for (std::string line; std::getline(lines2, line);)
    if (line.rfind("| ", 0) == 0) cols.push_back(size_t(std::count(line.begin(), line.end(), '|')));
  ASSERT_EQ(cols.size(), 4u) << md2;  // header and three rows
  for (size_t c : cols) EXPECT_EQ(c, cols[0]) << md2;
  // 2.5 x 6553600 keys x 4 x 128 / 0.8192 ms = 10.24 TFLOP/s, and 3 MiB of partials.
  EXPECT_NE(md2.find("| 0.819 | 10.2 | 3 |"), std::string::npos) << md2;
  EXPECT_NE(md2.find("| 0.2 | int8 | 0.410 |"), std::string::npos) << md2;
  EXPECT_NE(attention_csv(rows).find(",0.8192,10.24,3145728,int8\n"), std::string::npos);
}

TEST(BenchCommand, ReadsTheCudnnCsv) {
  const std::string path = testing::TempDir() + "/bench_cudnn_" + std::to_string(getpid()) + ".csv";
  std::ofstream(path) << "# card: H100\nL,gqa,fwd_ms,bwd_ms\n4096,1,0.5,1.25\n131072,8,nan,\n";
  auto c = read_cudnn_csv(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c.value().size(), 2u);
  EXPECT_EQ(c.value().at({4096, 1}).bwd_ms, 1.25);
  EXPECT_TRUE(std::isnan(c.value().at({131072, 8}).fwd_ms));
  std::ofstream(path) << "L,gqa,fwd_ms,bwd_ms\n4096,1,0.5,1.25\n8192,1,fast,1\n";
  c = read_cudnn_csv(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path + ":3:"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("fwd_ms"), std::string::npos);
  std::ofstream(path) << "T,fwd\n";
  c = read_cudnn_csv(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path + ":1:"), std::string::npos) << c.status().message();
  EXPECT_FALSE(read_cudnn_csv(path + ".missing").ok());
  fs::remove(path);
}

// Centre of the pixels of one colour.
std::pair<double, double> centroid(const Image& img, Rgb c) {
  double sx = 0, sy = 0, n = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x)
      if (img.at(x, y) == c) sx += x, sy += y, ++n;
  EXPECT_GT(n, 0) << "no pixel of the colour";
  return {sx / n, sy / n};
}

TEST(BenchCommand, PlotPlacesSeriesOnLogAxesAndEncodes) {
  const Rgb red{200, 0, 0}, blue{0, 0, 200}, green{0, 150, 0};
  Image img = loglog_plot(
      {{{4096}, {0.5}, red}, {{1 << 20}, {2000}, blue}, {{65536, 65536}, {NAN, -1}, green}});
  auto [rx, ry] = centroid(img, red);
  auto [bx, by] = centroid(img, blue);
  EXPECT_LT(rx, bx);
  EXPECT_GT(ry, by);  // larger times are higher up
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x) ASSERT_FALSE(img.at(x, y) == green);
  const std::vector<uint8_t> png = encode_png(img);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  ASSERT_GT(png.size(), 33u);
  EXPECT_TRUE(std::equal(sig, sig + 8, png.begin()));
  EXPECT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  EXPECT_EQ(int(png[16]) << 24 | int(png[17]) << 16 | int(png[18]) << 8 | int(png[19]),
            img.width());
  EXPECT_NO_THROW(encode_png(loglog_plot({})));

  std::vector<AttentionBenchRow> rows = {row(4096, 1, "measured", 1), row(65536, 1, "skipped")};
  extrapolate_dense(rows);
  const std::string path = testing::TempDir() + "/bench_plot_" + std::to_string(getpid()) + ".png";
  ASSERT_TRUE(write_png(path, attention_plot(rows)).ok());
  EXPECT_GT(fs::file_size(path), 100u);
  fs::remove(path);
}

}  // namespace
}  // namespace sl::trainer
