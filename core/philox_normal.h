// Standard normal draws from Philox (Box–Muller in double), host and device. See core/philox.h.
#pragma once

#include <cmath>

#include "core/philox.h"

namespace sl {

// Element i of a normal fill: lanes (0,1) and (2,3) of a block each give a Box–Muller pair.
SL_HD float philox_normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox4x32_10(i >> 2, offset, seed);
  int lane = int(i & 3);
  uint32_t a = r.x[lane & 2], b = r.x[(lane & 2) + 1];
  double u1 = (double(a) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
  double u2 = double(b) * (1.0 / 4294967296.0);          // [0, 1)
  double rad = sqrt(-2.0 * log(u1));
  double ang = 6.283185307179586476925 * u2;
  return float((lane & 1) ? rad * sin(ang) : rad * cos(ang));
}

}  // namespace sl
