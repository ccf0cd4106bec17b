#include "api/sandboxctl/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace sbx::ctl {
namespace {

Error Usage(std::string message) {
  return Error{ErrorCode::kInvalidArgument, 0, std::move(message), {}};
}

const OptionSpec* FindLong(const std::vector<OptionSpec>& specs, std::string_view name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const OptionSpec* FindShort(const std::vector<OptionSpec>& specs, char c) {
  for (const auto& s : specs) {
    if (s.short_name != 0 && s.short_name == c) return &s;
  }
  return nullptr;
}

}  // namespace

std::optional<std::string> ParsedArgs::Last(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::All(const std::string& name) const {
  auto it = options.find(name);
  return it == options.end() ? std::vector<std::string>{} : it->second;
}

Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                             const std::vector<OptionSpec>& specs, bool stop_at_positional) {
  ParsedArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      out.has_rest = true;
      out.rest.assign(args.begin() + static_cast<ptrdiff_t>(i) + 1, args.end());
      return out;
    }
    if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
      std::string name = a.substr(2), value;
      bool inline_value = false;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      const OptionSpec* spec = FindLong(specs, name);
      if (spec == nullptr) return Usage(fmt::format("unknown option '--{}'", name));
      if (spec->takes_value && !inline_value) {
        if (i + 1 >= args.size()) return Usage(fmt::format("option '--{}' needs a value", name));
        value = args[++i];
      } else if (!spec->takes_value && inline_value) {
        return Usage(fmt::format("option '--{}' takes no value", name));
      }
      out.options[name].push_back(value);
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      // -f, -o FILE, -oFILE, -fq
      for (size_t k = 1; k < a.size(); ++k) {
        const OptionSpec* spec = FindShort(specs, a[k]);
        if (spec == nullptr) return Usage(fmt::format("unknown option '-{}'", a[k]));
        if (!spec->takes_value) {
          out.options[spec->name].push_back("");
          continue;
        }
        std::string value;
        if (k + 1 < a.size()) {
          value = a.substr(k + 1);
        } else if (i + 1 < args.size()) {
          value = args[++i];
        } else {
          return Usage(fmt::format("option '-{}' needs a value", a[k]));
        }
        out.options[spec->name].push_back(value);
        break;
      }
      continue;
    }
    if (stop_at_positional) {
      out.has_rest = true;
      out.rest.assign(args.begin() + static_cast<ptrdiff_t>(i), args.end());
      return out;
    }
    out.positional.push_back(a);
  }
  return out;
}

Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view s,
                                                          std::string_view what) {
  size_t eq = s.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Usage(fmt::format("{} '{}': use KEY=VALUE", what, s));
  }
  return std::pair{std::string(s.substr(0, eq)), std::string(s.substr(eq + 1))};
}

Result<int64_t> ParseInt(std::string_view s, std::string_view what, int64_t min, int64_t max) {
  std::string str(s);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(str.c_str(), &end, 10);
  if (str.empty() || *end != '\0' || errno == ERANGE || v < min || v > max) {
    return Usage(fmt::format("{} '{}': a whole number from {} to {}", what, s, min, max));
  }
  return static_cast<int64_t>(v);
}

Result<double> ParsePositiveNumber(std::string_view s, std::string_view what) {
  std::string str(s);
  char* end = nullptr;
  double v = std::strtod(str.c_str(), &end);
  if (str.empty() || *end != '\0' || !std::isfinite(v) || !(v > 0)) {
    return Usage(fmt::format("{} '{}': a positive number", what, s));
  }
  return v;
}

Result<std::vector<std::string>> SplitCommand(std::string_view line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else if (c == '\'') {
      size_t end = line.find('\'', i + 1);
      if (end == std::string_view::npos) return Usage("unterminated ' quote");
      cur.append(line.substr(i + 1, end - i - 1));
      i = end;
      in_word = true;
    } else if (c == '"') {
      size_t j = i + 1;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size() &&
            std::string_view("\"\\$`\n").find(line[j + 1]) != std::string_view::npos) {
          ++j;
        }
        cur.push_back(line[j]);
      }
      if (j >= line.size()) return Usage("unterminated \" quote");
      i = j;
      in_word = true;
    } else if (c == '\\') {
      if (i + 1 >= line.size()) return Usage("a trailing backslash escapes nothing");
      cur.push_back(line[++i]);
      in_word = true;
    } else {
      cur.push_back(c);
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(cur));
  return words;
}

std::string ShellQuote(std::string_view word) {
  if (word.empty()) return "''";
  bool plain = true;
  for (char c : word) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("-_./:=,+@%").find(c) != std::string_view::npos;
    plain = plain && ok;
  }
  if (plain) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

std::string JoinCommand(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out.push_back(' ');
    out += ShellQuote(a);
  }
  return out;
}

}  // namespace sbx::ctl
