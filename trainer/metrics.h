// Training output: the progress line and the metrics JSONL file.
//
// On a terminal the progress line is rewritten in place (\r, erase to end of line); to a file or
// pipe each report is its own line. Other messages go through line(), which first ends a pending
// in-place line. Metrics records are one JSON object per line, appended and flushed per record;
// NaN/Inf values are written as null (JSON has no NaN). MetricsFile also mirrors every record to a
// TensorBoard event file when one is opened (trainer/tensorboard.h).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "trainer/tensorboard.h"

namespace sl::trainer {

struct Progress {
  int64_t step = 0, total = 0;
  double loss = 0, lr = 0, tokens_per_s = 0, grad_norm = 0, eta_s = 0;
  int64_t skipped = 0;
  double mfu = 0;  // model FLOPs utilisation in [0, 1]; 0: not known (not shown)
};

class Console {
 public:
  // quiet: print nothing.
  Console(std::FILE* out, bool quiet);
  void progress(const Progress& p);
  void line(const std::string& text);

 private:
  std::FILE* out_;
  bool quiet_, tty_, pending_ = false;
};

class MetricsFile {
 public:
  MetricsFile() = default;
  // Opens `path` for appending (creating its directory); an empty path writes nothing.
  Status open(const std::string& path);
  // Also writes every record as TensorBoard scalars to a new event file in `dir` (empty: none).
  Status open_tensorboard(const std::string& dir) { return tb_.open(dir); }
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  // {"step": step, key: value, ...}; to TensorBoard: the scalar `key` at `step` for each pair.
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& values);

 private:
  std::FILE* f_ = nullptr;
  TensorBoardWriter tb_;
};

// "1:02:03", "4:05" or "0:07".
std::string format_duration(double seconds);

}  // namespace sl::trainer
