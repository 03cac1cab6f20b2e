// The `eval:` section of a training configuration: what `superlinear eval` measures beyond the
// loss on the data's eval split. Parsed, checked and printed here; trainer/config.cpp calls these.
//
//   eval:
//     niah:                      # needle-in-a-haystack accuracy over lengths x depths
//       task: niah_single        # any niah_* task (data/niah.h); the other NIAH keys
//       lengths: [256, 1024]     #   (n_keys, n_values, n_haystack, n_needles, n_queries) come
//       depths: [0, 0.5, 1]      #   from the data: section
//       samples: 32              # rows per cell, rounded up to a multiple of batch_size
//       batch_size: 8
//
// The grid is off while `lengths` is empty (the default), so a config without the section
// evaluates the loss only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/synthetic.h"

namespace YAML {
class Node;
}

namespace sl::yaml {
struct ParseContext;
}

namespace sl::trainer {

struct NiahEvalConfig {
  std::string task = "niah_single";
  std::vector<int64_t> lengths;  // row lengths (tokens); empty: no NIAH evaluation
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};  // each in [0, 1] or -1 (random)
  int64_t samples = 32;
  int64_t batch_size = 8;

  bool enabled() const { return !lengths.empty(); }
  // The data config of one cell: `data` with this task and depth (and 1 needle for
  // niah_single, whatever data.n_needles says), nothing else changed.
  data::SyntheticConfig cell(const data::SyntheticConfig& data, double depth) const;
};

struct EvalConfig {
  NiahEvalConfig niah;
};

// Reads the `eval` mapping (undefined or null: defaults) into *out; errors go to ctx.
void parse_eval_section(yaml::ParseContext* ctx, const YAML::Node& node, EvalConfig* out);
// Value checks, given the data section and vocabulary: "eval.niah.<key>: ...".
void check_eval_config(const EvalConfig& e, const data::SyntheticConfig& data, int64_t vocab_size,
                       yaml::ParseContext* ctx);
// "eval:\n  niah:\n ..." as parse_eval_section reads it back.
std::string eval_yaml(const EvalConfig& e);

}  // namespace sl::trainer
