// Command-line parsing for sandboxctl: options declared per command, `--opt VALUE`,
// `--opt=VALUE`, `-o VALUE`, `--` to end the options; and the small text helpers the commands
// share (K=V pairs, numbers, shell-like word splitting and quoting, UTF-8 and base64).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/utf8.h"
#include "base/base64.h"
#include "base/result.h"

namespace sbx::ctl {

struct OptionSpec {
  std::string name;     // long name without dashes: "tail"
  char short_name = 0;  // 'f' for -f; 0 for none
  bool takes_value = false;
};

struct ParsedArgs {
  // Values by long name, in the order given; a flag without a value records "".
  std::map<std::string, std::vector<std::string>> options;
  std::vector<std::string> positional;
  // Everything after the first "--" (or, with stop_at_positional, from the first positional on).
  std::vector<std::string> rest;
  bool has_rest = false;

  bool Has(const std::string& name) const { return options.count(name) > 0; }
  // The last value given for `name`, or nullopt.
  std::optional<std::string> Last(const std::string& name) const;
  std::vector<std::string> All(const std::string& name) const;
};

// Parses `args` against `specs`. With `stop_at_positional`, the first argument that is not an
// option starts `rest` (as in `run [OPTIONS] ARGV…`), else positionals are collected and only
// "--" starts `rest`. kInvalidArgument names the offending option.
Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                             const std::vector<OptionSpec>& specs, bool stop_at_positional);

// "K=V" into {K, V}; K must be non-empty. `what` names the option in the message.
Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view s,
                                                          std::string_view what);
// A whole decimal integer within [min, max].
Result<int64_t> ParseInt(std::string_view s, std::string_view what, int64_t min, int64_t max);
// A positive decimal number ("0.5", "2").
Result<double> ParsePositiveNumber(std::string_view s, std::string_view what);

// Splits a command line into words the way a POSIX shell would without expanding anything:
// blanks separate words; '…' quotes literally; "…" quotes with \" \\ \$ \` escapes; a backslash
// outside quotes escapes the next character. kInvalidArgument on an unterminated quote.
Result<std::vector<std::string>> SplitCommand(std::string_view line);
// Quotes a word for display so that a shell would read it back as one word.
std::string ShellQuote(std::string_view word);
std::string JoinCommand(const std::vector<std::string>& argv);

// The API takes text fields as UTF-8 (base/utf8.h) and bytes as base64.
using sbx::IsValidUtf8;
// Standard base64 (base/base64.h). Decode skips what is not in the alphabet ('=' included), as
// the API's *_b64 fields need nothing stricter.
using sbx::Base64Decode;
using sbx::Base64Encode;

}  // namespace sbx::ctl
