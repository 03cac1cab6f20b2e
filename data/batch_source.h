// Where training and evaluation batches come from: one interface over the synthetic tasks and
// token datasets on disk (data/packed_source.h), so the trainer, `superlinear eval` and the tests
// ask for "batch `index` of split S" and nothing else.
//
// Contract: batch(index, split) is a pure function of the source's configuration, the seed, the
// rank and (index, split): asking twice gives the same tokens, which is what makes a resumed run
// see exactly the batches of a straight run (the trainer asks for index step * grad_accum + m).
// Rank r of `world` data-parallel ranks gets its own, disjoint batches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/errors.h"
#include "data/synthetic.h"

namespace sl::data {

struct SourceShape {
  int64_t vocab_size = 0;
  int64_t batch_size = 0;  // rows per batch (per rank)
  int64_t seq_len = 0;     // tokens per row
  uint64_t seed = 0;
  int rank = 0, world = 1;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Throws sl::Error on an I/O or data error (message naming the file and what is wrong).
  virtual Batch batch(int64_t index, Split split) const = 0;
  // One line for the run's log, e.g. "synthetic assoc_recall (8 pairs)".
  virtual std::string describe() const = 0;
  const SourceShape& shape() const { return shape_; }

 protected:
  explicit BatchSource(const SourceShape& s) : shape_(s) {}
  SourceShape shape_;
};

// The `data:` section of a training configuration: the synthetic task's keys (read when source
// is "synthetic") and the token-file keys (source "hdf5", data/packed_source.h).
struct DataConfig : SyntheticConfig {
  std::string source = "synthetic";  // "synthetic" or "hdf5"
  std::string path;                  // hdf5: the token file to train on (data/token_dataset.h)
  std::string eval_path;             // hdf5: a held-out token file; empty: hold out eval_fraction
  double eval_fraction = 0.01;  // hdf5 without eval_path: the last fraction of documents (>= 1)
  bool shuffle = true;          // hdf5: shuffle the training documents every epoch
};

// Checks the keys that need no file: "data.<key>: ..." (the synthetic task's keys only when
// source is synthetic).
Status validate_data_config(const DataConfig& c, int64_t vocab_size, int64_t seq_len);

// The source the `data:` section describes; a config error is a Status naming the key, a file
// error one naming the key and the file.
StatusOr<std::unique_ptr<BatchSource>> make_batch_source(const DataConfig& c,
                                                         const SourceShape& shape);
StatusOr<std::unique_ptr<BatchSource>> make_batch_source(const SyntheticConfig& c,
                                                         const SourceShape& shape);

}  // namespace sl::data
