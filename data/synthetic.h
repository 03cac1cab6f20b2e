// Synthetic language-modelling tasks generated on the fly: multi-query associative recall and
// copying, over a byte-level vocabulary; the needle-in-a-haystack tasks (task niah_*) are
// data/niah.h.
//
// A batch is a pure function of (config, seed, index, rank, split): nothing is stored, so a run
// resumed at step s sees exactly the batches a straight run would (the trainer asks for index
// s * grad_accum + micro). Random numbers come from Philox (core/philox.h) keyed by the seed,
// with one Philox offset per (split, rank, index), so streams never overlap.
//
// Token layout (both tasks): 0 padding, 1 separator, keys in [2, 2 + n_keys), values in
// [2 + n_keys, 2 + n_keys + n_values).
//
//   assoc_recall:  k1 v1 k2 v2 ... kP vP SEP q1 a1 q2 a2 ... qQ aQ PAD ...
//     P distinct keys, each with a random value; queries drawn from the P keys (with
//     replacement); a_i is the value paired with q_i. Only the answers are scored:
//     targets[t] = a_i at the position of q_i, ignore_index (-100) everywhere else.
//   copy:          x1 ... xN SEP x1 ... xN PAD ...
//     x drawn from the value alphabet; scored on the second copy: targets at the SEP and at
//     x1..x(N-1) of the copy are the next token.
#pragma once

#include <cstdint>
#include <string>

#include "core/errors.h"
#include "core/tensor.h"

namespace sl::data {

constexpr int32_t kPadToken = 0;
constexpr int32_t kSepToken = 1;
constexpr int32_t kFirstKeyToken = 2;
constexpr int64_t kIgnoreIndex = -100;

// The `data:` section of a training configuration.
struct SyntheticConfig {
  std::string task = "assoc_recall";  // "assoc_recall", "copy" or a niah_* task
  int64_t n_pairs = 8;                // assoc_recall: key-value pairs per sequence
  int64_t n_queries = 0;  // assoc_recall: queries per sequence; 0: as many as seq_len allows
  int64_t n_keys = 32;    // size of the key alphabet (>= n_pairs)
  int64_t n_values = 32;  // size of the value alphabet
  int64_t copy_len = 0;   // copy: tokens to copy; 0: (seq_len - 1) / 2
  // niah_* (data/niah.h); n_queries is also the asked needles of niah_multiquery (0: all).
  int64_t n_needles = 0;      // needles per sequence; 0: 1 for niah_single, 4 otherwise
  double needle_depth = -1;   // fraction of the haystack before the asked needles; -1: random
  int64_t n_haystack = 32;    // size of the haystack (noise) alphabet, after the values
};

enum class Split : uint32_t { kTrain = 0, kEval = 1 };

struct Batch {
  Tensor ids;        // [B, T] i32, CPU
  Tensor targets;    // [B, T] i64, CPU; kIgnoreIndex where not scored
  int64_t n_scored;  // number of targets != kIgnoreIndex
  Tensor seq_idx;    // [B, T] i32 document id per token (packed rows), or undefined
};

// Checks the config against the vocabulary and sequence length. Message: "data.<key>: ...".
Status validate_synthetic(const SyntheticConfig& c, int64_t vocab_size, int64_t seq_len);

// The batch `index` of `split` for data-parallel rank `rank`. Throws sl::Error on a config that
// validate_synthetic rejects.
Batch synthetic_batch(const SyntheticConfig& c, int64_t vocab_size, int64_t batch_size,
                      int64_t seq_len, uint64_t seed, int64_t index, int rank = 0,
                      Split split = Split::kTrain);

}  // namespace sl::data
