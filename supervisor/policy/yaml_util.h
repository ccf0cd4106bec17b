// What the policy library's YAML files (commands.yaml, jobs.yaml) share. Internal to the policy
// library: it includes yaml-cpp, which no public header does. Errors read "source:line: what;
// what to do" (kInvalidArgument, context = source). Nothing here throws.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::policy::internal {

// The node's 1-based line; 0 when unknown.
int LineOf(const YAML::Node& n);
Error At(const std::string& source, int line, const std::string& what);
Error At(const std::string& source, const YAML::Node& n, const std::string& what);
// "a, b, c".
std::string Join(const std::set<std::string>& names);
// Every key of `map` is a plain name out of `known`; `where` reads "at the top level" or "in
// rule set 'ci'".
Status CheckKeys(const YAML::Node& map, const std::set<std::string>& known,
                 const std::string& source, const std::string& where);
// A whole number of at most 18 digits (no sum or product of two overflows); no sign.
std::optional<int64_t> ParseDigits(std::string_view s);
// `name` reads "allow_within.pids"; `where` says in which section; `example` a valid value.
Result<int64_t> ParsePositiveInt(const YAML::Node& n, const std::string& source,
                                 const std::string& name, const std::string& where,
                                 std::string_view example);
// Bytes, or a number with a KiB, MiB or GiB suffix: 536870912, 512MiB, 1GiB.
Result<int64_t> ParseSize(const YAML::Node& n, const std::string& source, const std::string& name,
                          const std::string& where);
// A positive decimal number of CPUs, such as 1 or 0.5.
Result<double> ParseCpus(const YAML::Node& n, const std::string& source, const std::string& name,
                         const std::string& where);
// The one YAML document of `text` (refused when it holds more: yaml-cpp 0.7's LoadAll never
// returns on a stray top-level ','); `what` names the file's kind ("a policy file").
Result<YAML::Node> LoadOneDocument(std::string_view text, const std::string& source,
                                   std::string_view what);

}  // namespace sbx::policy::internal
