// Batches packed from a token file (data/token_dataset.h): documents are concatenated, cut into
// rows, and every token carries its document id, so Mamba state and attention reset at document
// starts (layers/module.h, SequenceInfo::seq_idx).
//
// Note [packing]. Per split, an epoch is a stream: the split's documents in epoch order,
// back to back. Training documents are shuffled per epoch by (seed, epoch) (Fisher-Yates over a
// Philox stream; the rank plays no part, so all ranks share one order) unless data.shuffle is
// false; eval documents stay in file order. With T = seq_len and S tokens in the stream, row r of
// the epoch covers stream positions [r*T, r*T + T] (T + 1 tokens): ids = row[:-1],
// targets = row[1:]. Consecutive rows overlap by one token, so every token of the epoch is an
// input exactly once; there are ceil(S / T) rows per epoch (the same every epoch) and the last is
// padded (id 0, target ignored). A long document simply continues in the next row.
//   targets: the target of a document's last token would be the next document's first token,
//   which cannot be predicted from the document, so it is data::kIgnoreIndex (as is a padding
//   position's); everything else is scored.
//   seq_idx [B, T] int32: 0 for the document of the row's first token, +1 at every document that
//   starts within the row (padding counts as one more document), so it changes exactly at
//   document starts.
//
// Batch `index` of a split takes global rows g = (index * world + rank) * batch_size + b, b in
// [0, batch_size): ranks get disjoint rows that together cover every row. Training row g is row
// g % R of epoch g / R (R rows per epoch); eval rows wrap around (g % R).
//
// Eval split: data.eval_path when given (all of its documents), otherwise the last
// max(1, floor(eval_fraction * n_docs)) documents of data.path, which then never appear in
// training; at least one document must remain for training.
//
// Memory: per split the document list, and per cached epoch its order and stream offsets
// (O(n_docs)); tokens are read from the file per batch. batch() may be called from several
// threads (reads are serialised).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data/batch_source.h"
#include "data/token_dataset.h"

namespace sl::data {

class PackedSource : public BatchSource {
 public:
  // Opens data.path (and data.eval_path). Errors name the config key and the file: missing or
  // invalid files, a file vocab_size larger than the model's (shape.vocab_size), a split with no
  // tokens.
  static StatusOr<std::unique_ptr<PackedSource>> open(const DataConfig& c,
                                                      const SourceShape& shape);

  // Throws sl::Error naming the file and position when the file cannot be read.
  Batch batch(int64_t index, Split split) const override;
  std::string describe() const override;

  int64_t rows_per_epoch(Split split) const { return part(split).rows; }
  int64_t tokens_per_epoch(Split split) const { return part(split).n_tokens; }
  // The split's documents (indices into its file), in file order.
  const std::vector<int64_t>& documents(Split split) const { return part(split).docs; }
  const TokenDataset& file(Split split) const { return *part(split).file; }
  // The split's documents in the order of epoch `epoch` (file order for eval or shuffle: false).
  std::vector<int64_t> epoch_order(Split split, int64_t epoch) const;

 private:
  struct Part {
    const TokenDataset* file = nullptr;
    std::vector<int64_t> docs;  // non-empty documents only
    int64_t n_tokens = 0, rows = 0;
    bool shuffle = false;
  };
  struct Epoch {
    int64_t epoch = -1;
    std::vector<int64_t> order;  // document indices in stream order
    std::vector<int64_t> start;  // stream position of order[k]; start.back() = n_tokens
  };

  PackedSource(const SourceShape& s, bool shuffle) : BatchSource(s), shuffle_(shuffle) {}
  const Part& part(Split split) const { return split == Split::kEval ? eval_ : train_; }
  std::shared_ptr<const Epoch> epoch(Split split, int64_t e) const;
  void fill_row(const Part& p, const Epoch& ep, int64_t row, int32_t* ids, int64_t* tgt,
                int32_t* seq) const;

  bool shuffle_;
  std::unique_ptr<TokenDataset> train_file_, eval_file_;  // eval_file_ only with eval_path
  Part train_, eval_;
  std::string eval_desc_;
  mutable std::mutex mu_;
  mutable std::shared_ptr<const Epoch> cache_[2][2];  // per split, the two latest epochs
};

}  // namespace sl::data
