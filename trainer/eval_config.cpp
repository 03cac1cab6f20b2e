// The eval: section (trainer/eval_config.h). Each grid cell is checked with the NIAH validator
// itself, so a length too short for the needles is reported before any model is loaded.
#include "trainer/eval_config.h"

#include <charconv>
#include <sstream>

#include "data/niah.h"
#include "layers/yaml_section.h"

namespace sl::trainer {
namespace {

std::string num(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

}  // namespace

data::SyntheticConfig NiahEvalConfig::cell(const data::SyntheticConfig& data, double depth) const {
  data::SyntheticConfig c = data;
  c.task = task;
  c.needle_depth = depth;
  if (task == "niah_single") c.n_needles = 1;
  return c;
}

void parse_eval_section(yaml::ParseContext* ctx, const YAML::Node& node, EvalConfig* out) {
  yaml::Section e(ctx, node, "eval");
  YAML::Node niah = e.child("niah");
  e.finish();
  yaml::Section n(ctx, niah, "eval.niah");
  n.get("task", &out->niah.task);
  n.get_list("lengths", &out->niah.lengths);
  n.get_list("depths", &out->niah.depths);
  n.get("samples", &out->niah.samples);
  n.get("batch_size", &out->niah.batch_size);
  n.finish();
}

void check_eval_config(const EvalConfig& e, const data::SyntheticConfig& data, int64_t vocab_size,
                       yaml::ParseContext* ctx) {
  const NiahEvalConfig& n = e.niah;
  if (!n.enabled()) return;
  if (!data::is_niah_task(n.task))
    return ctx->invalid("eval.niah.task", "\"" + n.task +
                                              "\" is not one of niah_single, niah_multikey, "
                                              "niah_multivalue, niah_multiquery");
  if (n.samples < 1) return ctx->invalid("eval.niah.samples", std::to_string(n.samples) + " < 1");
  if (n.batch_size < 1)
    return ctx->invalid("eval.niah.batch_size", std::to_string(n.batch_size) + " < 1");
  if (n.depths.empty()) return ctx->invalid("eval.niah.depths", "empty (e.g. [0, 0.5, 1])");
  for (double d : n.depths)
    if (!(d == -1 || (d >= 0 && d <= 1)))
      return ctx->invalid("eval.niah.depths",
                          num(d) + " must be in [0, 1] or -1 (uniform random depth)");
  for (int64_t len : n.lengths) {
    Status s = data::validate_niah(n.cell(data, n.depths[0]), vocab_size, len);
    if (!s.ok())
      return ctx->invalid("eval.niah.lengths", "length " + std::to_string(len) + " with task " +
                                                   n.task + ": " + s.message());
  }
}

std::string eval_yaml(const EvalConfig& e) {
  const NiahEvalConfig& n = e.niah;
  std::ostringstream os;
  os << "eval:\n  niah:\n    task: \"" << n.task << "\"\n    lengths: [";
  for (size_t i = 0; i < n.lengths.size(); ++i) os << (i ? ", " : "") << n.lengths[i];
  os << "]\n    depths: [";
  for (size_t i = 0; i < n.depths.size(); ++i) os << (i ? ", " : "") << num(n.depths[i]);
  os << "]\n    samples: " << n.samples << "\n    batch_size: " << n.batch_size << "\n";
  return os.str();
}

}  // namespace sl::trainer
