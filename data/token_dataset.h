// Token datasets on disk: tokenised documents in one HDF5 file, written by `superlinear data
// build` (data/build_command.h) or scripts/tiktoken_to_hdf5.py, read by the packed batch source
// (data/packed_source.h).
//
// Format "superlinear-tokens", version 1 (this comment is the reference):
//
//   root attributes
//     format      string  "superlinear-tokens"
//     version     integer 1
//     vocab_size  int64   every token id is in [0, vocab_size)
//     tokenizer   string  what produced the ids: "bytes" (data/byte_tokenizer.h), "tiktoken:gpt2"
//   /tokens       1-D, every document's tokens back to back; uint16 when vocab_size <= 65536, else
//                 int32 (readers also accept int32 for a small vocabulary); chunked and
//                 deflate-compressed
//   /doc_offsets  1-D int64 of length n_docs + 1: document i is tokens[offsets[i], offsets[i+1]);
//                 offsets[0] = 0, non-decreasing (empty documents are allowed), last = n_tokens
//
// Strings are fixed- or variable-length HDF5 strings (h5py writes variable-length ones). A file
// with no tokens is invalid. The one non-obvious decision: the writer builds the file under a
// temporary name in the same directory and renames it over the final name on close(), so a crash
// or an error never leaves a half-written file under the name a training config points to.
//
// Errors are Status values whose message starts with the file name and says what is wrong (no
// such file, not HDF5, truncated or corrupt, a missing or mistyped attribute or dataset, offsets
// that do not add up, an empty dataset, a token id >= vocab_size at a given position). HDF5's own
// error printing is switched off while these functions run, so only our message is seen.
//
// Threading: a TokenDataset or writer is used from one thread at a time (the HDF5 library in this
// build is not thread-safe); PackedSource serialises its reads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"

namespace sl::data {

inline constexpr const char* kTokenFormat = "superlinear-tokens";
inline constexpr int64_t kTokenFormatVersion = 1;

// Streams documents into a new token file. Not copyable; movable.
class TokenDatasetWriter {
 public:
  // Starts `path` (the parent directory must exist). vocab_size >= 1 chooses the token dtype.
  static StatusOr<TokenDatasetWriter> create(const std::string& path, int64_t vocab_size,
                                             const std::string& tokenizer);
  TokenDatasetWriter(TokenDatasetWriter&&) noexcept;
  TokenDatasetWriter& operator=(TokenDatasetWriter&&) noexcept;
  // Without a successful close(), the temporary file is removed and `path` is left untouched.
  ~TokenDatasetWriter();

  // Appends one document (may be empty). Ids must be in [0, vocab_size).
  Status append(const int32_t* tokens, int64_t n);
  Status append(const std::vector<int32_t>& tokens) {
    return append(tokens.data(), int64_t(tokens.size()));
  }
  // Writes the offsets and moves the file to its final name. A file with no tokens is an error
  // (nothing is left on disk). The writer is finished after close(), whatever it returns.
  Status close();

  int64_t n_docs() const;
  int64_t n_tokens() const;

 private:
  struct Impl;
  explicit TokenDatasetWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A validated, open token file. The offsets are held in memory (8 bytes per document); tokens are
// read on demand. Not copyable; movable.
class TokenDataset {
 public:
  // Opens and validates everything but the token values (those are checked as they are read).
  static StatusOr<TokenDataset> open(const std::string& path);
  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;
  ~TokenDataset();

  const std::string& path() const;
  int64_t vocab_size() const;
  const std::string& tokenizer() const;
  int bytes_per_token() const;  // 2 (uint16) or 4 (int32) as stored
  int64_t n_tokens() const;
  int64_t n_docs() const;
  const std::vector<int64_t>& doc_offsets() const;  // n_docs + 1 entries
  int64_t doc_length(int64_t i) const { return doc_offsets()[i + 1] - doc_offsets()[i]; }

  // tokens[start, start + n) into out[0, n). Corruption naming the file and the position when the
  // range cannot be read or an id is outside [0, vocab_size); InvalidArgument when the range is
  // outside [0, n_tokens).
  Status read(int64_t start, int64_t n, int32_t* out) const;
  StatusOr<std::vector<int32_t>> read(int64_t start, int64_t n) const;
  // The tokens of document i (0 <= i < n_docs).
  StatusOr<std::vector<int32_t>> document(int64_t i) const;

 private:
  struct Impl;
  explicit TokenDataset(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sl::data
