// NIAH tasks (data/niah.h). One host Philox stream per batch, rows generated in order from it;
// the needles of a row are placed by sorting (gap, kind) pairs, so placement needs no retries.
#include "data/niah.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/random_stream.h"

namespace sl::data {
namespace {

// The first n entries of a random permutation of [first, first + size).
std::vector<int32_t> distinct(int64_t first, int64_t size, int64_t n, RandomStream& rng) {
  std::vector<int32_t> all(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) all[size_t(i)] = int32_t(first + i);
  for (int64_t i = 0; i < n; ++i) std::swap(all[size_t(i)], all[size_t(i + rng.below(size - i))]);
  all.resize(size_t(n));
  return all;
}

void niah_row(const SyntheticConfig& c, int64_t T, RandomStream& rng, int32_t* ids, int64_t* tgt) {
  const int64_t N = niah_needles(c), A = niah_asked(c);
  const int64_t C = T - niah_query_len(c), n_noise = C - 2 * N;
  const int32_t value0 = int32_t(kFirstKeyToken + c.n_keys);
  const int32_t noise0 = int32_t(value0 + c.n_values);
  const bool multivalue = c.task == "niah_multivalue";
  std::vector<int32_t> keys, values;
  if (multivalue) {
    keys.assign(size_t(N), int32_t(kFirstKeyToken + rng.below(c.n_keys)));
    values = distinct(value0, c.n_values, N, rng);
  } else {
    keys = distinct(kFirstKeyToken, c.n_keys, N, rng);
    for (int64_t i = 0; i < N; ++i) values.push_back(value0 + int32_t(rng.below(c.n_values)));
  }
  // Needles 0..A-1 are asked and form the block (kind 1); the rest are distractors (kind 0).
  const int64_t block_gap =
      c.needle_depth >= 0 ? std::llround(c.needle_depth * double(n_noise)) : rng.below(n_noise + 1);
  struct Item {
    int64_t gap, kind, needle;
  };
  std::vector<Item> items{{block_gap, 1, 0}};
  for (int64_t i = A; i < N; ++i) items.push_back({rng.below(n_noise + 1), 0, i});
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.gap != b.gap ? a.gap < b.gap : a.kind < b.kind;
  });
  int64_t t = 0;
  auto put_needle = [&](int64_t i) {
    ids[t++] = keys[size_t(i)];
    ids[t++] = values[size_t(i)];
  };
  size_t next = 0;
  for (int64_t gap = 0; gap <= n_noise; ++gap) {
    for (; next < items.size() && items[next].gap == gap; ++next) {
      if (items[next].kind == 0) {
        put_needle(items[next].needle);
      } else {
        for (int64_t i = 0; i < A; ++i) put_needle(i);
      }
    }
    if (gap < n_noise) ids[t++] = noise0 + int32_t(rng.below(c.n_haystack));
  }
  ids[t++] = kSepToken;
  if (multivalue) {
    ids[t] = keys[0];
    for (int64_t i = 0; i < N; ++i) {
      tgt[t] = values[size_t(i)];
      ids[++t] = values[size_t(i)];
    }
    return;
  }
  std::vector<int32_t> order(static_cast<size_t>(A));
  for (int64_t i = 0; i < A; ++i) order[size_t(i)] = int32_t(i);
  for (int64_t i = A - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng.below(i + 1))]);
  for (int32_t i : order) {
    ids[t] = keys[size_t(i)];
    tgt[t++] = values[size_t(i)];
    ids[t++] = values[size_t(i)];
  }
}

}  // namespace

bool is_niah_task(const std::string& task) {
  return task == "niah_single" || task == "niah_multikey" || task == "niah_multivalue" ||
         task == "niah_multiquery";
}

int64_t niah_needles(const SyntheticConfig& c) {
  if (c.n_needles > 0) return c.n_needles;
  return c.task == "niah_single" ? 1 : 4;
}

int64_t niah_asked(const SyntheticConfig& c) {
  if (c.task == "niah_multivalue") return niah_needles(c);
  if (c.task == "niah_multiquery") return c.n_queries > 0 ? c.n_queries : niah_needles(c);
  return 1;
}

int64_t niah_query_len(const SyntheticConfig& c) {
  if (c.task == "niah_multivalue") return 2 + niah_needles(c);
  return 1 + 2 * niah_asked(c);
}

Status validate_niah(const SyntheticConfig& c, int64_t vocab_size, int64_t seq_len) {
  auto bad = [](const std::string& key, const std::string& msg) {
    return Status::InvalidArgument("data." + key + ": " + msg);
  };
  auto str = [](auto v) { return std::to_string(v); };
  if (!is_niah_task(c.task))
    return bad("task", "\"" + c.task +
                           "\" is not one of niah_single, niah_multikey, niah_multivalue, "
                           "niah_multiquery");
  if (c.n_keys < 1) return bad("n_keys", str(c.n_keys) + " must be positive");
  if (c.n_values < 1) return bad("n_values", str(c.n_values) + " must be positive");
  if (c.n_haystack < 1) return bad("n_haystack", str(c.n_haystack) + " must be positive");
  const int64_t used = kFirstKeyToken + c.n_keys + c.n_values + c.n_haystack;
  if (used > vocab_size)
    return bad("n_haystack", "2 + n_keys + n_values + n_haystack = " + str(used) +
                                 " tokens do not fit model.vocab_size = " + str(vocab_size));
  if (c.n_needles < 0) return bad("n_needles", str(c.n_needles) + " < 0");
  const int64_t N = niah_needles(c);
  if (c.task == "niah_single" && N != 1)
    return bad("n_needles", str(N) + ": niah_single has exactly 1 needle (use niah_multikey)");
  if (c.task == "niah_multivalue" && N > c.n_values)
    return bad("n_needles",
               str(N) + " distinct values need n_needles <= data.n_values = " + str(c.n_values));
  if (c.task != "niah_multivalue" && N > c.n_keys)
    return bad(
        "n_needles",
        str(N) + " needles with distinct keys need n_needles <= data.n_keys = " + str(c.n_keys));
  if (c.task == "niah_multiquery" && (c.n_queries < 0 || c.n_queries > N))
    return bad("n_queries", str(c.n_queries) + " must be in [0, n_needles = " + str(N) +
                                "] (0: every needle is asked)");
  if (!(c.needle_depth == -1 || (c.needle_depth >= 0 && c.needle_depth <= 1)))
    return bad("needle_depth",
               str(c.needle_depth) + " must be in [0, 1] or -1 (uniform random depth)");
  const int64_t need = 2 * N + 1 + niah_query_len(c);
  if (need > seq_len)
    return bad("n_needles", str(N) + " needles, one haystack token and a query of " +
                                str(niah_query_len(c)) + " tokens need " + str(need) +
                                " tokens, more than seq_len = " + str(seq_len));
  return Status::Ok();
}

Batch niah_batch(const SyntheticConfig& c, int64_t vocab_size, int64_t batch_size, int64_t seq_len,
                 uint64_t seed, int64_t index, int rank, Split split) {
  ThrowIfError(validate_niah(c, vocab_size, seq_len));
  SL_CHECK(batch_size > 0 && index >= 0 && rank >= 0)
      << "niah_batch: batch_size " << batch_size << ", index " << index << ", rank " << rank;
  const int64_t B = batch_size, T = seq_len;
  std::vector<int32_t> ids(size_t(B * T), kPadToken);
  std::vector<int64_t> tgt(size_t(B * T), kIgnoreIndex);
  RandomStream rng(seed, stream_offset(split, rank, index));
  for (int64_t b = 0; b < B; ++b) niah_row(c, T, rng, ids.data() + b * T, tgt.data() + b * T);
  const int64_t scored = B * niah_asked(c);
  return {Tensor::from_vector(ids, {B, T}), Tensor::from_vector(tgt, {B, T}), scored, Tensor()};
}

}  // namespace sl::data
