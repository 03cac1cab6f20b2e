// Parsing, validation and printing of the training configuration (trainer/config.h).
//
// Overrides are applied to the YAML tree before parsing, and every key remembers where it came
// from (file:line, or the --set argument), so one reader (layers/yaml_section.h) reports both
// kinds of mistakes, in the model section (layers::parse_model_config) as everywhere else.
#include "trainer/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "layers/config_io.h"
#include "layers/recompute.h"
#include "layers/yaml_section.h"
#include "trainer/init_from.h"
#include "trainer/param_groups.h"

namespace sl::trainer {
namespace {

std::string fmt(double v) {
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Applies "a.b.c=value" to the tree. Intermediate mappings are created when absent.
Status apply_override(YAML::Node& root, const std::string& arg, yaml::ParseContext* ctx) {
  size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    return Status::InvalidArgument("--set " + arg +
                                   ": expected key=value (e.g. optimizer.lr=1e-3)");
  std::string key = arg.substr(0, eq), value = arg.substr(eq + 1);
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const std::string& p : parts)
    if (p.empty()) return Status::InvalidArgument("--set " + arg + ": empty key component");
  // Flow lists, mappings and quoted strings are YAML; anything else is the text as it is (so
  // "pattern=*M-" or "pattern=-" stay strings, not an alias or a list).
  YAML::Node v(value);
  if (!value.empty() && std::string("[{\"'").find(value[0]) != std::string::npos) {
    try {
      v = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      return Status::InvalidArgument("--set " + arg + ": " + e.msg);
    }
  }
  YAML::Node cur;
  cur.reset(root);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next.reset(cur[parts[i]]);
    } else if (!next.IsMap()) {
      return Status::InvalidArgument("--set " + arg + ": " + parts[i] + " is not a section");
    }
    cur.reset(next);
  }
  cur[parts.back()] = v;
  ctx->overrides[key] = arg;
  return Status::Ok();
}

void check_ranges(const TrainConfig& c, yaml::ParseContext* ctx) {
  auto need = [&](bool ok, const std::string& key, const std::string& msg) {
    if (!ok) ctx->invalid(key, msg);
  };
  const OptimizerConfig& o = c.optimizer;
  need(o.lr > 0, "optimizer.lr", fmt(o.lr) + " must be positive");
  need(o.beta1 >= 0 && o.beta1 < 1, "optimizer.beta1", fmt(o.beta1) + " must be in [0, 1)");
  need(o.beta2 >= 0 && o.beta2 < 1, "optimizer.beta2", fmt(o.beta2) + " must be in [0, 1)");
  need(o.eps > 0, "optimizer.eps", fmt(o.eps) + " must be positive");
  need(o.weight_decay >= 0, "optimizer.weight_decay", fmt(o.weight_decay) + " must be >= 0");
  need(o.kind == "adamw" || o.kind == "sgd", "optimizer.kind",
       quote(o.kind) + " is not one of adamw, sgd");
  need(o.momentum >= 0 && o.momentum < 1, "optimizer.momentum",
       fmt(o.momentum) + " must be in [0, 1)");
  need(!o.nesterov || o.momentum > 0, "optimizer.nesterov", "true needs optimizer.momentum > 0");
  const ScheduleConfig& s = c.schedule;
  need(s.kind == "cosine" || s.kind == "linear" || s.kind == "constant" || s.kind == "wsd",
       "schedule.kind", quote(s.kind) + " is not one of cosine, linear, constant, wsd");
  need(s.warmup_steps >= 0, "schedule.warmup_steps", std::to_string(s.warmup_steps) + " < 0");
  need(s.min_lr_ratio >= 0 && s.min_lr_ratio <= 1, "schedule.min_lr_ratio",
       fmt(s.min_lr_ratio) + " must be in [0, 1]");
  need(s.decay_fraction > 0 && s.decay_fraction <= 1, "schedule.decay_fraction",
       fmt(s.decay_fraction) + " must be in (0, 1]");
  need(c.checkpoint.every >= 0, "checkpoint.every", std::to_string(c.checkpoint.every) + " < 0");
  need(c.checkpoint.keep >= 1, "checkpoint.keep", std::to_string(c.checkpoint.keep) + " < 1");
  need(!c.checkpoint.resume.empty(), "checkpoint.resume",
       "empty (use \"auto\", \"none\" or a checkpoint file)");
  need(c.logging.every >= 1, "logging.every", std::to_string(c.logging.every) + " < 1");
  need(c.logging.eval_every >= 0, "logging.eval_every",
       std::to_string(c.logging.eval_every) + " < 0");
  need(c.logging.eval_batches >= 0, "logging.eval_batches",
       std::to_string(c.logging.eval_batches) + " < 0");
  need(c.logging.peak_tflops >= 0, "logging.peak_tflops",
       fmt(c.logging.peak_tflops) + " must be >= 0 (0: from the device name)");
  const std::string& d = c.device;
  bool cuda_n = d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                d.find_first_not_of("0123456789", 5) == std::string::npos;
  need(d == "auto" || d == "cpu" || d == "cuda" || cuda_n, "device",
       quote(d) + " is not one of auto, cpu, cuda, cuda:N");
  need(c.precision == "auto" || c.precision == "f32" || c.precision == "bf16", "precision",
       quote(c.precision) + " is not one of auto, f32, bf16");
  need(c.steps >= 1, "steps", std::to_string(c.steps) + " < 1");
  need(c.batch_size >= 1, "batch_size", std::to_string(c.batch_size) + " < 1");
  need(c.seq_len >= 2, "seq_len", std::to_string(c.seq_len) + " < 2");
  need(c.grad_accum >= 1, "grad_accum", std::to_string(c.grad_accum) + " < 1");
  need(c.grad_clip >= 0, "grad_clip", fmt(c.grad_clip) + " must be >= 0 (0: off)");
  need(c.max_skipped_steps >= 0, "max_skipped_steps", std::to_string(c.max_skipped_steps) + " < 0");
  if (!ctx->error.ok()) return;
  Status ds = data::validate_data_config(c.data, c.model.vocab_size, c.seq_len);
  if (!ds.ok()) {
    const std::string& m = ds.message();
    ctx->invalid(m.substr(0, m.find(':')), m.substr(m.find(':') + 2));
  }
  check_eval_config(c.eval, c.data, c.model.vocab_size, ctx);
  if (auto k = layers::recompute_kinds(c.recompute, c.model.pattern); !k.ok())
    ctx->invalid("recompute", k.status().message());
}

}  // namespace

StatusOr<TrainConfig> parse_train_config(const std::string& yaml_text, const std::string& file,
                                         const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) return Status::InvalidArgument(file + ": expected a mapping of sections");
  yaml::ParseContext ctx;
  ctx.file = file;
  for (const std::string& o : overrides) {
    Status s = apply_override(root, o, &ctx);
    if (!s.ok()) return s;
  }

  TrainConfig c;
  yaml::Section top(&ctx, root, "");
  YAML::Node model = top.child("model");
  {
    yaml::Section d(&ctx, top.child("data"), "data");
    d.get("task", &c.data.task);
    d.get("n_pairs", &c.data.n_pairs);
    d.get("n_queries", &c.data.n_queries);
    d.get("n_keys", &c.data.n_keys);
    d.get("n_values", &c.data.n_values);
    d.get("copy_len", &c.data.copy_len);
    d.get("n_needles", &c.data.n_needles);
    d.get("needle_depth", &c.data.needle_depth);
    d.get("n_haystack", &c.data.n_haystack);
    d.get("source", &c.data.source);
    d.get("path", &c.data.path);
    d.get("eval_path", &c.data.eval_path);
    d.get("eval_fraction", &c.data.eval_fraction);
    d.get("shuffle", &c.data.shuffle);
    d.finish();
    yaml::Section o(&ctx, top.child("optimizer"), "optimizer");
    o.get("kind", &c.optimizer.kind);
    o.get("lr", &c.optimizer.lr);
    o.get("beta1", &c.optimizer.beta1);
    o.get("beta2", &c.optimizer.beta2);
    o.get("eps", &c.optimizer.eps);
    o.get("weight_decay", &c.optimizer.weight_decay);
    o.get_list("no_decay", &c.optimizer.no_decay);
    o.get("momentum", &c.optimizer.momentum);
    o.get("nesterov", &c.optimizer.nesterov);
    parse_param_groups(&ctx, o.child("groups"), &c.optimizer.groups);
    o.finish();
    yaml::Section s(&ctx, top.child("schedule"), "schedule");
    s.get("kind", &c.schedule.kind);
    s.get("warmup_steps", &c.schedule.warmup_steps);
    s.get("min_lr_ratio", &c.schedule.min_lr_ratio);
    s.get("decay_fraction", &c.schedule.decay_fraction);
    s.finish();
    yaml::Section k(&ctx, top.child("checkpoint"), "checkpoint");
    k.get("dir", &c.checkpoint.dir);
    k.get("every", &c.checkpoint.every);
    k.get("keep", &c.checkpoint.keep);
    k.get("resume", &c.checkpoint.resume);
    k.finish();
    yaml::Section l(&ctx, top.child("logging"), "logging");
    l.get("every", &c.logging.every);
    l.get("metrics", &c.logging.metrics);
    l.get("eval_every", &c.logging.eval_every);
    l.get("eval_batches", &c.logging.eval_batches);
    l.get("tensorboard", &c.logging.tensorboard);
    l.get("peak_tflops", &c.logging.peak_tflops);
    l.finish();
    yaml::Section g(&ctx, top.child("debug"), "debug");
    g.get_list("nan_grad_steps", &c.debug.nan_grad_steps);
    g.finish();
    parse_eval_section(&ctx, top.child("eval"), &c.eval);
  }
  top.get("device", &c.device);
  top.get("precision", &c.precision);
  top.get("seed", &c.seed);
  top.get("steps", &c.steps);
  top.get("batch_size", &c.batch_size);
  top.get("seq_len", &c.seq_len);
  top.get("grad_accum", &c.grad_accum);
  top.get("grad_clip", &c.grad_clip);
  top.get("max_skipped_steps", &c.max_skipped_steps);
  top.get_list("freeze", &c.freeze);
  top.get("init_from", &c.init_from);
  top.get("convert_attention", &c.convert_attention);
  top.get("recompute", &c.recompute);
  top.get("superlinear_keep_partials", &c.superlinear_keep_partials);
  top.finish();
  if (!ctx.error.ok()) return ctx.error;

  StatusOr<layers::ModelConfig> m = layers::parse_model_config(model, &ctx);
  if (!m.ok()) return m.status();
  c.model = std::move(m).value();
  if (Status s = convert_attention_pattern(c.convert_attention, &c.model); !s.ok())
    ctx.invalid("convert_attention", s.message());
  check_ranges(c, &ctx);
  if (!ctx.error.ok()) return ctx.error;
  return c;
}

StatusOr<TrainConfig> load_train_config(const std::string& path,
                                        const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return Status::IoError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_train_config(ss.str(), path, overrides);
}

std::string to_yaml(const TrainConfig& c) {
  std::ostringstream os;
  auto list = [](const auto& v, auto item) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + item(v[i]);
    return s + "]";
  };
  os << "model:\n" << layers::to_yaml(c.model, 2);
  const data::DataConfig& d = c.data;
  os << "data:\n"
     << "  task: " << quote(d.task) << "\n"
     << "  n_pairs: " << d.n_pairs << "\n"
     << "  n_queries: " << d.n_queries << "\n"
     << "  n_keys: " << d.n_keys << "\n"
     << "  n_values: " << d.n_values << "\n"
     << "  copy_len: " << d.copy_len << "\n"
     << "  n_needles: " << d.n_needles << "\n"
     << "  needle_depth: " << fmt(d.needle_depth) << "\n"
     << "  n_haystack: " << d.n_haystack << "\n"
     << "  source: " << quote(d.source) << "\n"
     << "  path: " << quote(d.path) << "\n"
     << "  eval_path: " << quote(d.eval_path) << "\n"
     << "  eval_fraction: " << fmt(d.eval_fraction) << "\n"
     << "  shuffle: " << (d.shuffle ? "true" : "false") << "\n";
  const OptimizerConfig& o = c.optimizer;
  os << "optimizer:\n"
     << "  lr: " << fmt(o.lr) << "\n"
     << "  beta1: " << fmt(o.beta1) << "\n"
     << "  beta2: " << fmt(o.beta2) << "\n"
     << "  eps: " << fmt(o.eps) << "\n"
     << "  weight_decay: " << fmt(o.weight_decay) << "\n"
     << "  no_decay: " << list(o.no_decay, quote) << "\n"
     << "  kind: " << quote(o.kind) << "\n"
     << "  momentum: " << fmt(o.momentum) << "\n"
     << "  nesterov: " << (o.nesterov ? "true" : "false") << "\n"
     << "  groups: " << param_groups_yaml(o.groups) << "\n";
  const ScheduleConfig& s = c.schedule;
  os << "schedule:\n"
     << "  kind: " << quote(s.kind) << "\n"
     << "  warmup_steps: " << s.warmup_steps << "\n"
     << "  min_lr_ratio: " << fmt(s.min_lr_ratio) << "\n"
     << "  decay_fraction: " << fmt(s.decay_fraction) << "\n";
  os << "checkpoint:\n"
     << "  dir: " << quote(c.checkpoint.dir) << "\n"
     << "  every: " << c.checkpoint.every << "\n"
     << "  keep: " << c.checkpoint.keep << "\n"
     << "  resume: " << quote(c.checkpoint.resume) << "\n";
  os << "logging:\n"
     << "  every: " << c.logging.every << "\n"
     << "  metrics: " << quote(c.logging.metrics) << "\n"
     << "  eval_every: " << c.logging.eval_every << "\n"
     << "  eval_batches: " << c.logging.eval_batches << "\n"
     << "  tensorboard: " << quote(c.logging.tensorboard) << "\n"
     << "  peak_tflops: " << fmt(c.logging.peak_tflops) << "\n";
  os << "debug:\n"
     << "  nan_grad_steps: "
     << list(c.debug.nan_grad_steps, [](int64_t v) { return std::to_string(v); }) << "\n";
  os << eval_yaml(c.eval);
  os << "device: " << quote(c.device) << "\n"
     << "precision: " << quote(c.precision) << "\n"
     << "seed: " << c.seed << "\n"
     << "steps: " << c.steps << "\n"
     << "batch_size: " << c.batch_size << "\n"
     << "seq_len: " << c.seq_len << "\n"
     << "grad_accum: " << c.grad_accum << "\n"
     << "grad_clip: " << fmt(c.grad_clip) << "\n"
     << "max_skipped_steps: " << c.max_skipped_steps << "\n"
     << "freeze: " << list(c.freeze, quote) << "\n"
     << "init_from: " << quote(c.init_from) << "\n"
     << "convert_attention: " << quote(c.convert_attention) << "\n"
     << "recompute: " << quote(c.recompute) << "\n"
     << "superlinear_keep_partials: " << (c.superlinear_keep_partials ? "true" : "false") << "\n";
  return os.str();
}

}  // namespace sl::trainer
