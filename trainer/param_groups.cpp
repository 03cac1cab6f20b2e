// Parameter selection: freeze, groups, no_decay (trainer/param_groups.h).
#include "trainer/param_groups.h"

#include <fnmatch.h>

#include <charconv>

namespace sl::trainer {
namespace {

bool matches(const std::string& glob, const std::string& name) {
  return fnmatch(glob.c_str(), name.c_str(), 0) == 0;
}

std::string number(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

StatusOr<std::vector<ParamRule>> resolve_param_rules(const std::vector<std::string>& names,
                                                     const OptimizerConfig& opt,
                                                     const std::vector<std::string>& freeze) {
  auto unmatched = [&](const std::string& glob) {
    for (const std::string& n : names)
      if (matches(glob, n)) return false;
    return true;
  };
  std::string some;
  for (size_t i = 0; i < names.size() && i < 3; ++i) some += (i ? ", " : "") + names[i];
  const std::string examples = " (parameter names look like " + some + ", ...)";
  for (const std::string& g : freeze)
    if (unmatched(g))
      return Status::InvalidArgument("freeze: glob '" + g + "' matches no parameter" + examples);
  for (size_t i = 0; i < opt.groups.size(); ++i)
    if (unmatched(opt.groups[i].params))
      return Status::InvalidArgument("optimizer.groups[" + std::to_string(i) + "].params: glob '" +
                                     opt.groups[i].params + "' matches no parameter" + examples);
  std::vector<ParamRule> rules;
  for (const std::string& n : names) {
    ParamRule r;
    for (const std::string& g : freeze) r.frozen = r.frozen || matches(g, n);
    bool no_decay = false;
    for (const std::string& g : opt.no_decay) no_decay = no_decay || matches(g, n);
    r.weight_decay = no_decay ? 0.0 : opt.weight_decay;
    for (const ParamGroupConfig& g : opt.groups) {
      if (!matches(g.params, n)) continue;
      r.lr_scale = g.lr_scale;
      if (g.weight_decay >= 0) r.weight_decay = g.weight_decay;
      break;
    }
    rules.push_back(r);
  }
  return rules;
}

void parse_param_groups(yaml::ParseContext* ctx, const YAML::Node& node,
                        std::vector<ParamGroupConfig>* out) {
  const std::string key = "optimizer.groups";
  if (!node || node.IsNull()) return;
  const std::string origin = ctx->origin(key, node);
  if (!node.IsSequence())
    return ctx->fail(origin, key, "expected a list of {params: GLOB, lr_scale: X, weight_decay: Y}");
  // The entries are read with a context of their own: ParseContext::origin attributes a key to
  // --set only when the override names it or a key below it, not an element of an overridden list.
  yaml::ParseContext local;
  local.file = ctx->file;
  std::vector<ParamGroupConfig> groups;
  for (size_t i = 0; i < node.size() && local.error.ok(); ++i) {
    const std::string prefix = key + "[" + std::to_string(i) + "]";
    yaml::Section s(&local, node[i], prefix);
    ParamGroupConfig g;
    s.get("params", &g.params);
    s.get("lr_scale", &g.lr_scale);
    s.get("weight_decay", &g.weight_decay);
    s.finish();
    if (!local.error.ok()) break;
    const std::string where = local.origin(prefix, node[i]);
    if (g.params.empty())
      local.fail(where, prefix + ".params", "missing (a glob over parameter names)");
    else if (!(g.lr_scale >= 0))
      local.fail(where, prefix + ".lr_scale", number(g.lr_scale) + " must be >= 0");
    else if (node[i]["weight_decay"] && !(g.weight_decay >= 0))
      local.fail(where, prefix + ".weight_decay", number(g.weight_decay) + " must be >= 0");
    groups.push_back(g);
  }
  if (local.error.ok()) {
    *out = std::move(groups);
  } else if (origin.rfind("--set ", 0) == 0) {
    const std::string& m = local.error.message();  // "<file>:<line>: <key>: <problem>"
    size_t at = m.find(": " + key);
    size_t colon = m.find(": ", at + 2);
    ctx->fail(origin, m.substr(at + 2, colon - at - 2), m.substr(colon + 2));
  } else if (ctx->error.ok()) {
    ctx->error = local.error;
  }
}

std::string param_groups_yaml(const std::vector<ParamGroupConfig>& groups) {
  std::string s = "[";
  for (size_t i = 0; i < groups.size(); ++i) {
    const ParamGroupConfig& g = groups[i];
    s += (i ? ", " : "") + std::string("{params: ") + quoted(g.params) +
         ", lr_scale: " + number(g.lr_scale);
    if (g.weight_decay >= 0) s += ", weight_decay: " + number(g.weight_decay);
    s += "}";
  }
  return s + "]";
}

}  // namespace sl::trainer
