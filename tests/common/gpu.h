// GPU test gating: a GPU test on a machine without one is reported as skipped, never as passed.
#pragma once

#include <gtest/gtest.h>

#include "core/device.h"

namespace sl::test {
// Why GPU tests cannot run here ("" when they can).
std::string no_gpu_reason();
}  // namespace sl::test

#define SL_REQUIRE_GPU()                                                   \
  do {                                                                     \
    std::string sl_reason_ = ::sl::test::no_gpu_reason();                  \
    if (!sl_reason_.empty()) GTEST_SKIP() << "skipped: no GPU (" << sl_reason_ << ")"; \
  } while (0)
