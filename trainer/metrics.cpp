// Training output (trainer/metrics.h).
#include "trainer/metrics.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>

namespace sl::trainer {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
  return buf;
}

Console::Console(std::FILE* out, bool quiet)
    : out_(out), quiet_(quiet), tty_(out && ::isatty(::fileno(out))) {}

void Console::progress(const Progress& p) {
  if (quiet_) return;
  char tok[32];
  if (p.tokens_per_s >= 1e6)
    std::snprintf(tok, sizeof(tok), "%.2fM", p.tokens_per_s / 1e6);
  else
    std::snprintf(tok, sizeof(tok), "%.1fk", p.tokens_per_s / 1e3);
  char mfu[32] = "";
  if (p.mfu > 0) std::snprintf(mfu, sizeof(mfu), " | mfu %.1f%%", 100 * p.mfu);
  std::fprintf(out_, "%sstep %lld/%lld | loss %.4f | lr %.2e | %s tok/s%s | grad %.3f%s | eta %s%s",
               tty_ ? "\r" : "", static_cast<long long>(p.step), static_cast<long long>(p.total),
               p.loss, p.lr, tok, mfu, p.grad_norm,
               p.skipped ? (" | skipped " + std::to_string(p.skipped)).c_str() : "",
               format_duration(p.eta_s).c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(out_);
  pending_ = tty_;
}

void Console::line(const std::string& text) {
  if (quiet_) return;
  if (pending_) std::fputc('\n', out_);
  pending_ = false;
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

Status MetricsFile::open(const std::string& path) {
  if (path.empty()) return Status::Ok();
  std::filesystem::path p(path);
  std::error_code ec;
  if (!p.parent_path().empty()) std::filesystem::create_directories(p.parent_path(), ec);
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) return Status::IoError(path + ": cannot open for appending");
  return Status::Ok();
}

MetricsFile::~MetricsFile() {
  if (f_) std::fclose(f_);
}

void MetricsFile::write(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  tb_.write(step, values);
  if (!f_) return;
  std::fprintf(f_, "{\"step\": %lld", static_cast<long long>(step));
  for (const auto& [k, v] : values) {
    if (std::isfinite(v))
      std::fprintf(f_, ", \"%s\": %.9g", k.c_str(), v);
    else
      std::fprintf(f_, ", \"%s\": null", k.c_str());
  }
  std::fprintf(f_, "}\n");
  std::fflush(f_);
}

}  // namespace sl::trainer
