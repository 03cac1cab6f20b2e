// Learning-rate schedules. Step s (0-based) of a run of `total` steps uses lr_at(s):
//
//   warmup (all kinds):  s < W:  lr * (s + 1) / W
//   after warmup, with p = (s - W) / max(total - W - 1, 1) in [0, 1] and lo = min_lr_ratio * lr:
//     constant:  lr
//     linear:    lr - (lr - lo) * p
//     cosine:    lo + (lr - lo) * (1 + cos(pi * p)) / 2
//     wsd:       warmup, stable at lr, then the last D = ceil(decay_fraction * total) steps decay
//                linearly: s >= total - D:  lr - (lr - lo) * (s - (total - D) + 1) / D
// So the last step of linear/cosine/wsd runs at exactly lo.
#pragma once

#include <cstdint>

#include "trainer/config.h"

namespace sl::trainer {

double lr_at(const ScheduleConfig& s, double lr, int64_t step, int64_t total);

}  // namespace sl::trainer
