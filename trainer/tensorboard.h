// TensorBoard event files written without TensorFlow: scalar summaries that TensorBoard reads.
//
// A file "events.out.tfevents.<unix seconds>.<hostname>" in the log directory is a sequence of
// TFRecords, each framing one serialized tensorflow.Event protobuf:
//
//   u64 length (little-endian) | u32 masked_crc32c(length) | payload | u32 masked_crc32c(payload)
//
// masked_crc32c(x) = rotate_right(crc32c(x), 15) + 0xa282ead8, crc32c being the Castagnoli CRC
// (reflected polynomial 0x82f63b78) as TensorFlow computes it. The first record is
// Event{wall_time, file_version: "brain.Event:2"}; each write() is one
// Event{wall_time (1, double), step (2, int64), summary (5)} whose Summary holds one
// Value{tag (1), simple_value (2, float)} per scalar. The protobuf is encoded by hand (field
// numbers from tensorflow/core/util/event.proto and framework/summary.proto), which is the one
// non-obvious decision: no protobuf dependency for four fields.
//
// Each write() is flushed, so a crashed run keeps every step it logged. If a file of the same
// name exists (two runs started in the same second), ".1", ".2", ... is appended to the name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"

namespace sl::trainer {

// CRC-32C (Castagnoli) of the bytes, and TensorFlow's masked form of it.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  TensorBoardWriter() = default;
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Creates `dir` (and its parents) and a new event file in it, with the file_version record.
  // An empty dir writes nothing. IoError names the directory or file on failure.
  Status open(const std::string& dir);
  bool is_open() const { return f_ != nullptr; }
  // The event file's path ("" when not open).
  const std::string& path() const { return path_; }

  // One Event at `step` with a scalar per (tag, value), values rounded to f32; flushed.
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& values);

 private:
  void record(const std::string& payload);

  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace sl::trainer
