// Which parameters train, and with which learning-rate scale and weight decay.
//
// Rules, applied to every dotted parameter name (fnmatch globs):
//   freeze            a name matching any glob is frozen: no gradient kept, no optimizer state.
//   optimizer.groups  the first group whose `params` glob matches sets lr_scale and, when given,
//                     weight_decay; names no group matches get lr_scale 1.
//   no_decay          decides the weight decay (0 or optimizer.weight_decay) of names whose group
//                     sets none.
// A freeze or group glob that matches no parameter is an error naming it: a typo would otherwise
// silently train (or freeze) the wrong thing. no_decay globs may match nothing (its defaults
// cover several architectures).
#pragma once

#include <string>
#include <vector>

#include "core/errors.h"
#include "layers/yaml_section.h"
#include "trainer/config.h"

namespace sl::trainer {

struct ParamRule {
  bool frozen = false;
  double lr_scale = 1.0;
  double weight_decay = 0.0;
};

// One rule per name, in order. InvalidArgument names the unmatched glob ("freeze: glob '...'
// matches no parameter" / "optimizer.groups[1].params: ...").
StatusOr<std::vector<ParamRule>> resolve_param_rules(const std::vector<std::string>& names,
                                                     const OptimizerConfig& opt,
                                                     const std::vector<std::string>& freeze);

// Reads optimizer.groups (a list of {params, lr_scale, weight_decay} mappings) into *out; errors
// go to ctx naming "optimizer.groups[i].key".
void parse_param_groups(yaml::ParseContext* ctx, const YAML::Node& node,
                        std::vector<ParamGroupConfig>* out);
// The flow-style YAML list that parse_param_groups reads back to `groups`.
std::string param_groups_yaml(const std::vector<ParamGroupConfig>& groups);

}  // namespace sl::trainer
