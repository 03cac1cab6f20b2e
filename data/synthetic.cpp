// Synthetic tasks (data/synthetic.h). One host Philox stream per batch; rows are generated in
// order from it, so a batch depends on nothing but its arguments.
#include "data/synthetic.h"

#include <algorithm>
#include <vector>

#include "data/niah.h"
#include "data/random_stream.h"

namespace sl::data {
namespace {

int64_t n_queries(const SyntheticConfig& c, int64_t seq_len) {
  return c.n_queries > 0 ? c.n_queries : (seq_len - 2 * c.n_pairs - 1) / 2;
}

int64_t copy_len(const SyntheticConfig& c, int64_t seq_len) {
  return c.copy_len > 0 ? c.copy_len : (seq_len - 1) / 2;
}

void recall_row(const SyntheticConfig& c, int64_t T, RandomStream& rng, int32_t* ids,
                int64_t* tgt) {
  const int32_t value0 = int32_t(kFirstKeyToken + c.n_keys);
  std::vector<int32_t> keys(size_t(c.n_keys));
  for (int64_t i = 0; i < c.n_keys; ++i) keys[size_t(i)] = int32_t(kFirstKeyToken + i);
  for (int64_t i = 0; i < c.n_pairs; ++i) {  // partial Fisher-Yates: P distinct keys
    int64_t j = i + rng.below(c.n_keys - i);
    std::swap(keys[size_t(i)], keys[size_t(j)]);
  }
  std::vector<int32_t> values(size_t(c.n_pairs));
  int64_t t = 0;
  for (int64_t i = 0; i < c.n_pairs; ++i) {
    values[size_t(i)] = value0 + int32_t(rng.below(c.n_values));
    ids[t++] = keys[size_t(i)];
    ids[t++] = values[size_t(i)];
  }
  ids[t++] = kSepToken;
  for (int64_t q = 0, nq = n_queries(c, T); q < nq; ++q) {
    int64_t i = rng.below(c.n_pairs);
    ids[t] = keys[size_t(i)];
    tgt[t] = values[size_t(i)];
    ++t;
    ids[t++] = values[size_t(i)];
  }
}

void copy_row(const SyntheticConfig& c, int64_t T, RandomStream& rng, int32_t* ids, int64_t* tgt) {
  const int32_t value0 = int32_t(kFirstKeyToken + c.n_keys);
  const int64_t n = copy_len(c, T);
  for (int64_t i = 0; i < n; ++i) ids[i] = value0 + int32_t(rng.below(c.n_values));
  ids[n] = kSepToken;
  for (int64_t i = 0; i < n; ++i) {
    ids[n + 1 + i] = ids[i];
    tgt[n + i] = ids[i];  // the SEP predicts x1, copy x_i predicts x_{i+1}
  }
}

}  // namespace

Status validate_synthetic(const SyntheticConfig& c, int64_t vocab_size, int64_t seq_len) {
  auto bad = [](const std::string& key, const std::string& msg) {
    return Status::InvalidArgument("data." + key + ": " + msg);
  };
  if (is_niah_task(c.task)) return validate_niah(c, vocab_size, seq_len);
  if (c.task != "assoc_recall" && c.task != "copy")
    return bad("task", "\"" + c.task +
                           "\" is not one of \"assoc_recall\", \"copy\", \"niah_single\", "
                           "\"niah_multikey\", \"niah_multivalue\", \"niah_multiquery\"");
  if (c.n_keys < 1) return bad("n_keys", std::to_string(c.n_keys) + " must be positive");
  if (c.n_values < 1) return bad("n_values", std::to_string(c.n_values) + " must be positive");
  if (kFirstKeyToken + c.n_keys + c.n_values > vocab_size)
    return bad("n_values",
               "2 + n_keys + n_values = " + std::to_string(kFirstKeyToken + c.n_keys + c.n_values) +
                   " tokens do not fit model.vocab_size = " + std::to_string(vocab_size));
  if (c.task == "assoc_recall") {
    if (c.n_pairs < 1 || c.n_pairs > c.n_keys)
      return bad("n_pairs", std::to_string(c.n_pairs) +
                                " must be in [1, data.n_keys = " + std::to_string(c.n_keys) + "]");
    if (c.n_queries < 0) return bad("n_queries", std::to_string(c.n_queries) + " < 0");
    int64_t need = 2 * c.n_pairs + 1 + 2 * std::max<int64_t>(n_queries(c, seq_len), 1);
    if (need > seq_len)
      return bad("n_pairs", std::to_string(c.n_pairs) + " pairs and " +
                                std::to_string(std::max<int64_t>(n_queries(c, seq_len), 1)) +
                                " queries need " + std::to_string(need) +
                                " tokens, more than seq_len = " + std::to_string(seq_len));
  } else {
    if (c.copy_len < 0) return bad("copy_len", std::to_string(c.copy_len) + " < 0");
    int64_t n = copy_len(c, seq_len);
    if (n < 1 || 2 * n + 1 > seq_len)
      return bad("copy_len", std::to_string(n) +
                                 " tokens need 2 * copy_len + 1 = " + std::to_string(2 * n + 1) +
                                 " <= seq_len = " + std::to_string(seq_len));
  }
  return Status::Ok();
}

Batch synthetic_batch(const SyntheticConfig& c, int64_t vocab_size, int64_t batch_size,
                      int64_t seq_len, uint64_t seed, int64_t index, int rank, Split split) {
  if (is_niah_task(c.task))
    return niah_batch(c, vocab_size, batch_size, seq_len, seed, index, rank, split);
  ThrowIfError(validate_synthetic(c, vocab_size, seq_len));
  SL_CHECK(batch_size > 0 && index >= 0 && rank >= 0)
      << "synthetic_batch: batch_size " << batch_size << ", index " << index << ", rank " << rank;
  const int64_t B = batch_size, T = seq_len;
  std::vector<int32_t> ids(size_t(B * T), kPadToken);
  std::vector<int64_t> tgt(size_t(B * T), kIgnoreIndex);
  RandomStream rng(seed, stream_offset(split, rank, index));
  for (int64_t b = 0; b < B; ++b) {
    if (c.task == "assoc_recall")
      recall_row(c, T, rng, ids.data() + b * T, tgt.data() + b * T);
    else
      copy_row(c, T, rng, ids.data() + b * T, tgt.data() + b * T);
  }
  int64_t scored = 0;
  for (int64_t v : tgt) scored += v != kIgnoreIndex;
  return {Tensor::from_vector(ids, {B, T}), Tensor::from_vector(tgt, {B, T}), scored, Tensor()};
}

}  // namespace sl::data
