// Reading typed configuration sections from YAML, with errors that say where a value came from.
//
// A Section wraps one YAML mapping: get() reads a known key into a typed field, finish() rejects
// every key nobody asked for. All sections of one parse share a ParseContext, which keeps the
// first error and, for every key read, its origin: "file:line", or "--set key=value" when the
// value came from a command-line override. Messages read "<origin>: <dotted.key>: <problem>".
// Used by the model section (layers/config.cpp) and the training config (trainer/config.cpp).
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "core/errors.h"

namespace sl::yaml {

struct ParseContext {
  std::string file;
  std::map<std::string, std::string> overrides;  // dotted key -> "key=value" as given to --set
  std::map<std::string, std::string> where;      // dotted key -> its origin, once read
  Status error;                                  // the first error

  // Where the value of `key` (read from node `n`) came from.
  std::string origin(const std::string& key, const YAML::Node& n) const;
  // Records an error (only the first one is kept).
  void fail(const std::string& where_str, const std::string& key, const std::string& msg);
  // A value rule broken: reported at the key's recorded origin (the file for a default).
  void invalid(const std::string& key, const std::string& msg);
};

template <class T>
const char* yaml_type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  if constexpr (std::is_integral_v<T>) return "an integer";
  if constexpr (std::is_floating_point_v<T>) return "a number";
  return "a string";
}

class Section {
 public:
  // `prefix` is the section's dotted path ("" for the top level, "model.mamba", ...).
  Section(ParseContext* ctx, const YAML::Node& node, std::string prefix);

  template <class T>
  void get(const char* key, T* out) {
    YAML::Node v = lookup(key);
    if (!v) return;
    if (!v.IsScalar()) return fail_at(key, v, "expected a single value");
    try {
      *out = v.as<T>();
    } catch (const YAML::Exception&) {
      fail_at(key, v, "'" + v.Scalar() + "' is not " + yaml_type_name<T>());
    }
  }

  template <class T>
  void get_list(const char* key, std::vector<T>* out) {
    YAML::Node v = lookup(key);
    if (!v) return;
    if (v.IsNull()) return out->clear();
    if (!v.IsSequence()) return fail_at(key, v, "expected a list, e.g. [a, b]");
    std::vector<T> items;
    for (const YAML::Node& item : v) {
      try {
        items.push_back(item.as<T>());
      } catch (const YAML::Exception&) {
        return fail_at(key, v, "an element is not " + std::string(yaml_type_name<T>()));
      }
    }
    *out = std::move(items);
  }

  // A nested mapping (undefined when absent); counts as a known key.
  YAML::Node child(const char* key) { return lookup(key); }
  // Every key of the mapping must have been asked for.
  void finish();
  // The dotted name of `key` in this section.
  std::string dotted(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
  }

 private:
  bool is_map() const { return node_ && node_.IsMap(); }
  YAML::Node lookup(const char* key);
  void fail_at(const char* key, const YAML::Node& v, const std::string& msg);

  ParseContext* ctx_;
  const YAML::Node node_;
  std::string prefix_;
  std::vector<std::string> known_;
};

}  // namespace sl::yaml
