#include "layers/yaml_section.h"

namespace sl::yaml {

std::string ParseContext::origin(const std::string& key, const YAML::Node& n) const {
  for (auto& [k, arg] : overrides)
    if (k == key || k.rfind(key + ".", 0) == 0) return "--set " + arg;
  int line = n && n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
  return line > 0 ? file + ":" + std::to_string(line) : file;
}

void ParseContext::fail(const std::string& where_str, const std::string& key,
                        const std::string& msg) {
  if (error.ok()) error = Status::InvalidArgument(where_str + ": " + key + ": " + msg);
}

void ParseContext::invalid(const std::string& key, const std::string& msg) {
  auto it = where.find(key);
  fail(it == where.end() ? file : it->second, key, msg);
}

Section::Section(ParseContext* ctx, const YAML::Node& node, std::string prefix)
    : ctx_(ctx), node_(node), prefix_(std::move(prefix)) {
  if (node_ && !node_.IsNull() && !node_.IsMap())
    ctx_->fail(ctx_->origin(prefix_, node_), prefix_, "expected a mapping");
}

YAML::Node Section::lookup(const char* key) {
  known_.push_back(key);
  if (!is_map()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node v = node_[key];  // const operator[]: never inserts
  if (v) ctx_->where[dotted(key)] = ctx_->origin(dotted(key), v);
  return v;
}

void Section::fail_at(const char* key, const YAML::Node& v, const std::string& msg) {
  ctx_->fail(ctx_->origin(dotted(key), v), dotted(key), msg);
}

void Section::finish() {
  if (!is_map()) return;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    std::string k = it->first.as<std::string>("");
    bool ok = false;
    for (const std::string& known : known_) ok = ok || known == k;
    if (ok) continue;
    std::string list;
    for (const std::string& known : known_) list += (list.empty() ? "" : ", ") + known;
    ctx_->fail(ctx_->origin(dotted(k), it->first), dotted(k), "unknown key (known: " + list + ")");
    return;
  }
}

}  // namespace sl::yaml
