// The safetensors format (Hugging Face): read and write named tensors, single files and sharded
// checkpoints (model.safetensors.index.json).
//
//   u64 N (little-endian) | N bytes of JSON header | data
//   header: {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [2, 3],
//            "data_offsets": [begin, end]}, ...}   offsets relative to the start of the data
//
// The one non-obvious decision: the reader is as strict as the reference implementation —
// entries sorted by offset must tile the data section exactly (no gap, no overlap, nothing
// after the last tensor) — and checks everything before reading a byte of data, so a truncated
// or malformed file is a Status (Corruption, or InvalidArgument for an unsupported dtype) naming
// the file and the tensor, never a crash or a partially filled tensor. The JSON is parsed with
// yaml-cpp (JSON is YAML flow syntax); duplicate names are detected here, since yaml-cpp keeps both.
//
// Writing follows the reference: tensors ordered by dtype size (largest first), then by name, so
// every tensor is aligned to its element size; the header is padded with spaces to a multiple of
// 8 bytes. Files are written to a hidden temporary file in the same directory, fsynced and
// renamed into place.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"

namespace sl::layers {

// Named tensors in file order, and the file's "__metadata__" (string to string).
struct SafetensorsData {
  std::vector<std::pair<std::string, Tensor>> tensors;  // CPU, contiguous, the file's dtypes
  std::map<std::string, std::string> metadata;

  void add(const std::string& name, const Tensor& t) { tensors.emplace_back(name, t); }
  // The tensor with this name, or nullptr.
  const Tensor* find(const std::string& name) const;
};

// One header entry: where a tensor lies in the data section.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // [begin, end) relative to the data section
};

// The safetensors dtype string of a dtype ("F32", "BF16", "F16", "F64", "I64", "I32").
const char* safetensors_dtype_name(DType t);

// Reads and validates the header only (entries sorted by offset).
StatusOr<std::vector<SafetensorsEntry>> read_safetensors_header(
    const std::string& path, std::map<std::string, std::string>* metadata = nullptr);
// Reads a whole file.
StatusOr<SafetensorsData> read_safetensors(const std::string& path);
// Writes a file atomically. Tensors may be on any device and strided; names must be unique and
// non-empty and not "__metadata__".
Status write_safetensors(const std::string& path, const SafetensorsData& data);

// A Hugging Face model directory's weights: model.safetensors.index.json when present (every
// shard it names read, every tensor of a shard listed under that shard in weight_map and vice
// versa, no name twice), else model.safetensors. The metadata is that of the first shard.
StatusOr<SafetensorsData> read_safetensors_dir(const std::string& dir);
// Writes dir/model.safetensors, or, when the tensors' bytes exceed max_shard_bytes, shards
// "model-00001-of-0000N.safetensors" (each as full as the limit allows, in the given order; a
// tensor larger than the limit gets a shard of its own) and model.safetensors.index.json
// ({"metadata": {"total_size": bytes}, "weight_map": {name: shard}}), written last. Returns the
// file names written (relative to dir). max_shard_bytes <= 0 means no limit.
StatusOr<std::vector<std::string>> write_safetensors_dir(const std::string& dir,
                                                         const SafetensorsData& data,
                                                         int64_t max_shard_bytes);

// JSON helpers shared with layers/hf_checkpoint.cpp: a quoted, escaped JSON string, and an
// atomic write of a text file (temporary file, fsync, rename).
std::string json_quote(const std::string& s);
Status write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace sl::layers
