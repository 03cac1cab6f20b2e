// The host random stream of the synthetic tasks (data/synthetic.cpp, data/niah.cpp): Philox
// (core/philox.h) keyed by the seed, one offset per (split, rank, batch index), so every batch is
// a pure function of its arguments and the streams of different batches never overlap.
#pragma once

#include <cstdint>

#include "core/philox.h"
#include "data/synthetic.h"

namespace sl::data {

class RandomStream {
 public:
  RandomStream(uint64_t seed, uint64_t offset) : seed_(seed), offset_(offset) {}
  uint32_t next() {
    if (lane_ == 4) {
      block_ = philox4x32_10(counter_++, offset_, seed_);
      lane_ = 0;
    }
    return block_.x[lane_++];
  }
  // Uniform in [0, n).
  int64_t below(int64_t n) { return int64_t((uint64_t(next()) * uint64_t(n)) >> 32); }

 private:
  uint64_t seed_, offset_, counter_ = 0;
  Philox4 block_{};
  int lane_ = 4;
};

// (split, rank, index) -> a Philox offset: 2 bits of split, 14 of rank, 48 of index.
inline uint64_t stream_offset(Split split, int rank, int64_t index) {
  return (uint64_t(split) << 62) | (uint64_t(rank & 0x3fff) << 48) |
         (uint64_t(index) & ((uint64_t(1) << 48) - 1));
}

}  // namespace sl::data
