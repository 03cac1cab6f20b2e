// Checkpoint files: named tensors and text blobs in one self-checking binary file, written
// atomically, one file per checkpoint in a directory ("ckpt_00000300.slck" for step 300).
//
// Format (little-endian, as written by the host):
//
//   header   "SLCKPT01"                      8 bytes
//            u64 record count
//   record   u32 name length, name bytes (UTF-8)
//            u8 kind (0 tensor, 1 text), u8 dtype (core/dtype.h DType value), u8 ndim, u8 0
//            i64 shape[ndim]
//            u64 byte count, the bytes (a tensor's elements row-major, or the text)
//   trailer  u64 FNV-1a 64 of every byte before the trailer
//            "SLCKEND1"                      8 bytes
//
// A file that is truncated, has a bad trailer or checksum, or records that do not add up is
// Corruption naming the file. Writing goes to a temporary file in the same directory, which is
// fsynced, renamed over the final name and followed by an fsync of the directory, so a crash
// leaves either the old set of checkpoints or the new one, never a partial file under a
// checkpoint name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"

namespace sl::trainer {

struct CheckpointData {
  std::vector<std::pair<std::string, Tensor>> tensors;  // any device; read back on the CPU
  std::map<std::string, std::string> texts;

  void add(const std::string& name, const Tensor& t) { tensors.emplace_back(name, t); }
  // The tensor with this name, or nullptr.
  const Tensor* find(const std::string& name) const;
  // The tensor with this name, which must have `shape` and `dtype`; otherwise Corruption naming
  // `path` (the checkpoint file) and the tensor.
  StatusOr<Tensor> get(const std::string& name, const Dims& shape, DType dtype,
                       const std::string& path) const;
  // OK when the stored "model_config" text equals `model_yaml`; otherwise Corruption (no record)
  // or InvalidArgument naming `path`, showing the stored configuration and ending with `advice`.
  Status check_model_config(const std::string& model_yaml, const std::string& path,
                            const std::string& advice) const;
};

Status write_checkpoint(const std::string& path, const CheckpointData& data);
StatusOr<CheckpointData> read_checkpoint(const std::string& path);

// "<dir>/ckpt_<step, 8 digits>.slck"
std::string checkpoint_path(const std::string& dir, int64_t step);
// (step, path) of every checkpoint-named file in dir, ascending by step; empty if dir is absent.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
// Deletes all but the `keep` newest checkpoints of dir.
void prune_checkpoints(const std::string& dir, int64_t keep);

// The newest checkpoint of dir that reads back intact, its data in *out. Corrupt ones are
// skipped, each with a line in *warnings naming the file and the problem. NotFound if none.
StatusOr<std::string> latest_valid_checkpoint(const std::string& dir, CheckpointData* out,
                                              std::vector<std::string>* warnings);

}  // namespace sl::trainer
