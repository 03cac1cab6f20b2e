// Packed batches from token files (data/packed_source.h, Note [packing]). One lock covers the
// epoch cache and every file read, since the HDF5 library is not thread-safe.
#include "data/packed_source.h"

#include <algorithm>

#include "core/philox.h"

namespace sl::data {
namespace {

// Philox offsets of the per-epoch shuffles ("SHUF" in the high bits, the epoch below).
constexpr uint64_t kShuffleStream = uint64_t(0x53485546) << 32;

std::string prefixed(const char* key, const Status& s) {
  return std::string(key) + ": " + s.message();
}

}  // namespace

StatusOr<std::unique_ptr<PackedSource>> PackedSource::open(const DataConfig& c,
                                                           const SourceShape& shape) {
  if (shape.batch_size < 1 || shape.seq_len < 1 || shape.world < 1 || shape.rank < 0 ||
      shape.rank >= shape.world)
    return Status::InvalidArgument("data: batch_size " + std::to_string(shape.batch_size) +
                                   ", seq_len " + std::to_string(shape.seq_len) + ", rank " +
                                   std::to_string(shape.rank) + " of " +
                                   std::to_string(shape.world) + " are not a valid shape");
  auto load = [&](const char* key,
                  const std::string& path) -> StatusOr<std::unique_ptr<TokenDataset>> {
    if (path.empty()) return Status::InvalidArgument(std::string(key) + ": empty");
    StatusOr<TokenDataset> d = TokenDataset::open(path);
    if (!d.ok()) return Status::InvalidArgument(prefixed(key, d.status()));
    if (d.value().vocab_size() > shape.vocab_size)
      return Status::InvalidArgument(
          std::string(key) + ": " + path + " has vocab_size " +
          std::to_string(d.value().vocab_size()) + " (tokenizer \"" + d.value().tokenizer() +
          "\") but model.vocab_size is " + std::to_string(shape.vocab_size) +
          "; its token ids would not fit the model (set model.vocab_size >= " +
          std::to_string(d.value().vocab_size()) + ")");
    return std::make_unique<TokenDataset>(std::move(d).value());
  };
  std::unique_ptr<PackedSource> src(new PackedSource(shape, c.shuffle));
  StatusOr<std::unique_ptr<TokenDataset>> train = load("data.path", c.path);
  if (!train.ok()) return train.status();
  src->train_file_ = std::move(train).value();
  const TokenDataset& tf = *src->train_file_;
  int64_t n_train_docs = tf.n_docs();
  if (!c.eval_path.empty()) {
    StatusOr<std::unique_ptr<TokenDataset>> ev = load("data.eval_path", c.eval_path);
    if (!ev.ok()) return ev.status();
    src->eval_file_ = std::move(ev).value();
    src->eval_desc_ = "eval " + c.eval_path;
  } else {
    if (!(c.eval_fraction > 0 && c.eval_fraction < 1))
      return Status::InvalidArgument("data.eval_fraction: " + std::to_string(c.eval_fraction) +
                                     " must be in (0, 1) when data.eval_path is empty");
    int64_t n_eval = std::max<int64_t>(1, int64_t(c.eval_fraction * double(tf.n_docs())));
    if (n_eval >= tf.n_docs())
      return Status::InvalidArgument("data.eval_fraction: " + c.path + " has " +
                                     std::to_string(tf.n_docs()) + " document(s); holding out " +
                                     std::to_string(n_eval) +
                                     " leaves none for training (give a separate data.eval_path)");
    n_train_docs = tf.n_docs() - n_eval;
    src->eval_desc_ = "eval: last " + std::to_string(n_eval) + " documents held out";
  }
  auto fill = [&](Part* p, const TokenDataset* file, int64_t first, int64_t end, bool shuffle) {
    p->file = file;
    p->shuffle = shuffle;
    for (int64_t i = first; i < end; ++i)
      if (file->doc_length(i) > 0) {
        p->docs.push_back(i);
        p->n_tokens += file->doc_length(i);
      }
    p->rows = (p->n_tokens + shape.seq_len - 1) / shape.seq_len;
  };
  fill(&src->train_, &tf, 0, n_train_docs, c.shuffle);
  if (src->eval_file_)
    fill(&src->eval_, src->eval_file_.get(), 0, src->eval_file_->n_docs(), false);
  else
    fill(&src->eval_, &tf, n_train_docs, tf.n_docs(), false);
  if (src->train_.n_tokens == 0)
    return Status::InvalidArgument("data.path: " + c.path +
                                   ": the training documents hold no tokens");
  if (src->eval_.n_tokens == 0)
    return Status::InvalidArgument(c.eval_path.empty()
                                       ? "data.eval_fraction: " + c.path +
                                             ": the held-out documents hold no tokens"
                                       : "data.eval_path: " + c.eval_path + ": no tokens");
  return src;
}

std::vector<int64_t> PackedSource::epoch_order(Split split, int64_t e) const {
  const Part& p = part(split);
  std::vector<int64_t> order = p.docs;
  if (!p.shuffle) return order;
  const uint64_t offset = kShuffleStream ^ uint64_t(e);
  uint64_t block = 0;
  for (size_t i = order.size(); i > 1; --i) {  // Fisher-Yates from the back
    Philox4 r = philox4x32_10(block++, offset, shape_.seed);
    uint64_t x = (uint64_t(r.x[0]) << 32) | r.x[1];
    std::swap(order[i - 1], order[size_t(x % i)]);
  }
  return order;
}

std::shared_ptr<const PackedSource::Epoch> PackedSource::epoch(Split split, int64_t e) const {
  std::shared_ptr<const Epoch>* slots = cache_[split == Split::kEval ? 1 : 0];
  for (int k = 0; k < 2; ++k)
    if (slots[k] && slots[k]->epoch == e) return slots[k];
  auto ep = std::make_shared<Epoch>();
  ep->epoch = e;
  ep->order = epoch_order(split, e);
  ep->start.resize(ep->order.size() + 1);
  const TokenDataset& f = *part(split).file;
  for (size_t k = 0; k < ep->order.size(); ++k)
    ep->start[k + 1] = ep->start[k] + f.doc_length(ep->order[k]);
  slots[1] = std::move(slots[0]);
  slots[0] = ep;
  return ep;
}

void PackedSource::fill_row(const Part& p, const Epoch& ep, int64_t row, int32_t* ids, int64_t* tgt,
                            int32_t* seq) const {
  const int64_t T = shape_.seq_len, S = p.n_tokens;
  const int64_t begin = row * T, end = std::min(begin + T + 1, S);
  std::vector<int32_t> tok(size_t(T + 1), kPadToken), doc(size_t(T + 1), 0);
  // The document holding `begin`: the last k with start[k] <= begin.
  size_t k =
      size_t(std::upper_bound(ep.start.begin(), ep.start.end(), begin) - ep.start.begin()) - 1;
  int32_t local = 0;
  for (int64_t pos = begin; pos < end; ++k, ++local) {
    const int64_t d = ep.order[k], in_doc = pos - ep.start[k];
    const int64_t n = std::min(ep.start[k + 1], end) - pos;
    const int64_t at = pos - begin;
    ThrowIfError(p.file->read(p.file->doc_offsets()[size_t(d)] + in_doc, n, tok.data() + at));
    std::fill(doc.begin() + at, doc.begin() + at + n, local);
    pos += n;
  }
  const int64_t real = end - begin;
  std::fill(doc.begin() + real, doc.end(), local);  // padding: one more document
  for (int64_t t = 0; t < T; ++t) {
    ids[t] = tok[size_t(t)];
    seq[t] = doc[size_t(t)];
    const bool scored = t + 1 < real && doc[size_t(t + 1)] == doc[size_t(t)];
    tgt[t] = scored ? int64_t(tok[size_t(t + 1)]) : kIgnoreIndex;
  }
}

Batch PackedSource::batch(int64_t index, Split split) const {
  SL_CHECK(index >= 0) << "PackedSource::batch: negative index " << index;
  const int64_t B = shape_.batch_size, T = shape_.seq_len;
  const Part& p = part(split);
  Batch b;
  b.ids = Tensor::empty({B, T}, DType::I32);
  b.targets = Tensor::empty({B, T}, DType::I64);
  b.seq_idx = Tensor::empty({B, T}, DType::I32);
  int32_t* ids = b.ids.data<int32_t>();
  int64_t* tgt = b.targets.data<int64_t>();
  int32_t* seq = b.seq_idx.data<int32_t>();
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t r = 0; r < B; ++r) {
    const int64_t g = (index * shape_.world + shape_.rank) * B + r;
    const int64_t e = split == Split::kEval ? 0 : g / p.rows;
    std::shared_ptr<const Epoch> ep = epoch(split, e);
    fill_row(p, *ep, g % p.rows, ids + r * T, tgt + r * T, seq + r * T);
  }
  b.n_scored = 0;
  for (int64_t i = 0; i < B * T; ++i) b.n_scored += tgt[i] != kIgnoreIndex;
  return b;
}

std::string PackedSource::describe() const {
  const TokenDataset& f = *train_file_;
  return "hdf5 " + f.path() + " (tokenizer " + f.tokenizer() + ", " +
         std::to_string(train_.docs.size()) + " documents, " + std::to_string(train_.n_tokens) +
         " tokens, " + std::to_string(train_.rows) + " rows per epoch" +
         (shuffle_ ? ", shuffled" : "") + "; " + eval_desc_ + ", " +
         std::to_string(eval_.n_tokens) + " tokens)";
}

}  // namespace sl::data
