// `superlinear data ...`: building token files from text with the byte tokenizer, and describing
// them.
//
//   superlinear data build --output OUT.h5 [--doc-per-file | --doc-per-line | --separator TEXT]
//                          INPUT...
//   superlinear data info FILE.h5
//
// Inputs are text files or directories. A directory is walked recursively; its regular files are
// taken in sorted path order (so the same tree always gives the same file), skipping hidden
// entries (names starting with '.') and the output file itself. Files named on the command line
// are taken in the order given. Documents: a whole file (the default), each line (no line end;
// a trailing '\r' is dropped), or the pieces between occurrences of TEXT. Empty documents (an
// empty file, a blank line, two adjacent separators) are skipped. Each document is encoded as
// BOS, bytes, EOS (data/byte_tokenizer.h).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/errors.h"

namespace sl::data {

struct BuildOptions {
  enum class Split { kPerFile, kPerLine, kSeparator };
  std::string output;
  std::vector<std::string> inputs;
  Split split = Split::kPerFile;
  std::string separator;  // kSeparator: non-empty
};

struct BuildSummary {
  int64_t files = 0;
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t text_bytes = 0;   // bytes of document text read
  int64_t file_bytes = 0;   // size of the written file
  int bytes_per_token = 0;  // as stored in /tokens
  // Uncompressed token bytes / file bytes.
  double compression_ratio() const;
};

// The input files in the order they are read. NotFound naming an input that does not exist;
// InvalidArgument when no file is found.
StatusOr<std::vector<std::string>> list_input_files(const std::vector<std::string>& inputs,
                                                    const std::string& output = "");

// Writes options.output (atomically, data/token_dataset.h). Errors name the file concerned.
StatusOr<BuildSummary> build_token_dataset(const BuildOptions& options);

// The `data` command; `args` are the words after "data". Prints a summary to `out`, errors and
// usage to `err`; returns the process exit code (0 ok, 1 failure, 2 usage).
int data_command(const std::vector<std::string>& args, std::FILE* out = stdout,
                 std::FILE* err = stderr);

}  // namespace sl::data
