// Learning-rate schedules at their key steps: warmup, midpoints, the last step, WSD's stable
// and decay phases. Expected values are worked by hand from the formulas in trainer/schedule.h.
#include "trainer/schedule.h"

#include <gtest/gtest.h>

namespace sl::trainer {
namespace {

ScheduleConfig make(const std::string& kind, int64_t warmup, double min_ratio = 0.1) {
  ScheduleConfig s;
  s.kind = kind;
  s.warmup_steps = warmup;
  s.min_lr_ratio = min_ratio;
  return s;
}

TEST(Schedule, WarmupIsLinearFromLrOverW) {
  for (const char* kind : {"cosine", "linear", "constant", "wsd"}) {
    ScheduleConfig s = make(kind, 4);
    EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 0, 100), 0.25) << kind;
    EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 1, 100), 0.5) << kind;
    EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 3, 100), 1.0) << kind;
    EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 4, 100), 1.0) << kind;  // first step after warmup
  }
}

TEST(Schedule, Cosine) {
  ScheduleConfig s = make("cosine", 10);  // decay over steps 10..110 (p = (s - 10) / 100)
  EXPECT_DOUBLE_EQ(lr_at(s, 2.0, 10, 111), 2.0);
  EXPECT_NEAR(lr_at(s, 2.0, 60, 111), 0.2 + 1.8 * 0.5, 1e-12);  // halfway: (lr + lo) / 2
  EXPECT_NEAR(lr_at(s, 2.0, 35, 111), 0.2 + 1.8 * 0.5 * (1 + std::sqrt(0.5)), 1e-12);
  EXPECT_NEAR(lr_at(s, 2.0, 110, 111), 0.2, 1e-12);  // the last step runs at lo
}

TEST(Schedule, Linear) {
  ScheduleConfig s = make("linear", 0, 0.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 0, 11), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 5, 11), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 10, 11), 0.0);
}

TEST(Schedule, Constant) {
  ScheduleConfig s = make("constant", 2);
  EXPECT_DOUBLE_EQ(lr_at(s, 0.3, 2, 10), 0.3);
  EXPECT_DOUBLE_EQ(lr_at(s, 0.3, 9, 10), 0.3);
}

TEST(Schedule, WarmupStableDecay) {
  ScheduleConfig s = make("wsd", 5, 0.0);
  s.decay_fraction = 0.2;  // 100 steps: decay over the last 20 (80..99)
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 50, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 79, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 80, 100), 1.0 - 1.0 / 20);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 89, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 99, 100), 0.0);
}

}  // namespace
}  // namespace sl::trainer
