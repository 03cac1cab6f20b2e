// The `recompute:` setting (layers/recompute.h).
#include "layers/recompute.h"

namespace sl::layers {

StatusOr<std::string> recompute_kinds(const std::string& spec, const std::string& pattern) {
  if (spec == "none") return std::string();
  if (spec.empty())
    return Status::InvalidArgument("empty (use \"none\", \"all\" or block letters, e.g. \"M*S\")");
  std::string kinds;
  for (char k : spec == "all" ? pattern : spec) {
    if (std::string("M*S-E").find(k) == std::string::npos)
      return Status::InvalidArgument("\"" + spec + "\": '" + std::string(1, k) +
                                     "' is not a block letter (M * S - E), \"none\" or \"all\"");
    if (pattern.find(k) == std::string::npos)
      return Status::InvalidArgument("\"" + spec + "\": no '" + std::string(1, k) +
                                     "' block in model.pattern \"" + pattern + "\"");
    if (kinds.find(k) == std::string::npos) kinds += k;
  }
  return kinds;
}

}  // namespace sl::layers
