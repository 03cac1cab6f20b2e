// Learning-rate schedules (trainer/schedule.h).
#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sl::trainer {

double lr_at(const ScheduleConfig& s, double lr, int64_t step, int64_t total) {
  const int64_t W = s.warmup_steps;
  if (step < W) return lr * double(step + 1) / double(W);
  if (s.kind == "constant") return lr;
  const double lo = s.min_lr_ratio * lr;
  if (s.kind == "wsd") {
    const int64_t D = std::max<int64_t>(1, int64_t(std::ceil(s.decay_fraction * double(total))));
    const int64_t start = total - D;
    if (step < start) return lr;
    return lr - (lr - lo) * std::min(1.0, double(step - start + 1) / double(D));
  }
  const double p =
      std::clamp(double(step - W) / double(std::max<int64_t>(total - W - 1, 1)), 0.0, 1.0);
  if (s.kind == "linear") return lr - (lr - lo) * p;
  return lo + (lr - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

}  // namespace sl::trainer
