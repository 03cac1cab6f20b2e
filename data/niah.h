// Needle-in-a-haystack retrieval tasks in the style of RULER, generated on the fly over the token
// layout of data/synthetic.h, extended by a haystack (noise) alphabet:
//
//   0 padding, 1 separator, keys [2, 2 + K), values [2 + K, 2 + K + V),
//   haystack [2 + K + V, 2 + K + V + n_haystack)         (K = n_keys, V = n_values)
//
// A row of length T is a context of C tokens (haystack noise with N needles "k v" inserted)
// followed by the query, which ends the row:
//
//   niah_single      1 needle;                 query  SEP k v        scored: k -> v
//   niah_multikey    N needles, distinct keys; query  SEP q a        (one asked, N-1 distractors)
//   niah_multivalue  N needles, one key, N distinct values;
//                                              query  SEP k v1 .. vN scored: k -> v1, vi -> vi+1
//                                              (values in the order they appear in the context)
//   niah_multiquery  N needles, distinct keys; query  SEP q1 a1 .. qQ aQ  (Q = n_queries, 0: N;
//                                              the Q asked keys in random order)
//
// Only the answers are scored (the target at a query/answer token is the next answer; every other
// target is kIgnoreIndex), so a row scores 1, 1, N and Q tokens respectively.
//
// Note [needle depth]
// The asked needles sit together as one block (for niah_multivalue all N needles, for
// niah_multiquery the Q asked ones in needle order); distractor needles are placed independently,
// uniformly at random. Depth counts noise tokens only: with n_noise = C - 2N noise tokens and
// data.needle_depth = d in [0, 1], exactly round(d * n_noise) noise tokens precede the block (0 at
// the start of the context, all of them at its end); d = -1 draws that count uniformly from
// [0, n_noise] per row. A distractor that falls into the block's gap goes before the block, so
// the count is exact whatever the distractors do.
//
// Batches are pure functions of (config, seed, index, rank, split), from the same Philox stream
// layout as data/synthetic.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "core/errors.h"
#include "data/synthetic.h"

namespace sl::data {

// True for "niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery".
bool is_niah_task(const std::string& task);

// The needles per row (n_needles, or the variant's default when 0) and the asked needles.
int64_t niah_needles(const SyntheticConfig& c);
int64_t niah_asked(const SyntheticConfig& c);
// Tokens of the query section (SEP and what follows) for this config.
int64_t niah_query_len(const SyntheticConfig& c);

// Checks a NIAH config. Message: "data.<key>: ...".
Status validate_niah(const SyntheticConfig& c, int64_t vocab_size, int64_t seq_len);

// The batch `index` of `split` for rank `rank` (data/synthetic.h Batch). Throws sl::Error on a
// config that validate_niah rejects.
Batch niah_batch(const SyntheticConfig& c, int64_t vocab_size, int64_t batch_size, int64_t seq_len,
                 uint64_t seed, int64_t index, int rank = 0, Split split = Split::kTrain);

}  // namespace sl::data
