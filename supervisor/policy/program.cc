#include "supervisor/policy/program.h"

#include <algorithm>
#include <initializer_list>

namespace sbx::policy::internal {
namespace {

struct WrapperSpec {
  std::string_view name;
  std::string_view short_with_arg;                        // option letters that take a value
  std::initializer_list<std::string_view> long_with_arg;  // "--user": the value may follow
  int positionals = 0;  // operands before the command: timeout's DURATION, flock's FILE
  bool privileged = false;
  bool assignments = false;  // NAME=value words may come before the command (env, sudo)
  char string_option = 0;    // this option's value is a shell command line (flock -c, env -S)
};

// Option letters and operands from each program's manual page (sudo(8), env(1), timeout(1),
// xargs(1), flock(1), stdbuf(1), nice(1), ionice(1), time(1), chroot(8), watch(1)).
// clang-format off
const WrapperSpec kWrappers[] = {
    {"sudo", "CDghpRrtTUu",
     {"--user", "--group", "--chdir", "--prompt", "--close-from", "--host", "--role", "--type",
      "--command-timeout", "--other-user", "--chroot"},
     0, true, true, 0},
    {"doas", "uC", {}, 0, true, false, 0},
    {"pkexec", "", {"--user"}, 0, true, false, 0},
    {"run0", "uDg", {"--user", "--group", "--chdir", "--unit", "--property", "--description",
                     "--slice", "--nice", "--setenv", "--machine"},
     0, true, false, 0},
    {"env", "uCS", {"--unset", "--chdir", "--split-string"}, 0, false, true, 'S'},
    {"nice", "n", {"--adjustment"}, 0, false, false, 0},
    {"nohup", "", {}, 0, false, false, 0},
    {"setsid", "", {}, 0, false, false, 0},
    {"time", "fo", {"--format", "--output"}, 0, false, false, 0},
    {"timeout", "sk", {"--signal", "--kill-after"}, 1, false, false, 0},
    {"stdbuf", "ioe", {"--input", "--output", "--error"}, 0, false, false, 0},
    {"ionice", "cn", {"--class", "--classdata"}, 0, false, false, 0},
    {"chrt", "", {}, 1, false, false, 0},
    {"taskset", "", {}, 1, false, false, 0},
    {"chroot", "", {"--userspec", "--groups"}, 1, false, false, 0},
    {"command", "", {}, 0, false, false, 0},
    {"builtin", "", {}, 0, false, false, 0},
    {"exec", "a", {}, 0, false, false, 0},
    {"busybox", "", {}, 0, false, false, 0},
    {"xargs", "adEILnPs",
     {"--arg-file", "--delimiter", "--max-lines", "--max-args", "--max-procs", "--max-chars",
      "--process-slot-var"},
     0, false, false, 0},
    {"flock", "wEc", {"--timeout", "--conflict-exit-code", "--command"}, 1, false, false, 'c'},
    {"watch", "n", {"--interval"}, 0, false, false, 0},
    {"strace", "eoOpPsSEuUXb", {"--output", "--attach", "--string-limit", "--user"}, 0, false,
     false, 0},
};
// clang-format on

const WrapperSpec* FindWrapper(std::string_view name) {
  for (const WrapperSpec& w : kWrappers) {
    if (w.name == name) return &w;
  }
  return nullptr;
}

bool IsAssignment(std::string_view w) {
  size_t eq = w.find('=');
  if (eq == 0 || eq == std::string_view::npos) return false;
  auto name_char = [](char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  return !(w[0] >= '0' && w[0] <= '9') && std::all_of(w.begin(), w.begin() + eq, name_char);
}

bool IsShellName(std::string_view b) {
  static constexpr std::string_view kShells[] = {"sh",   "bash", "dash", "zsh",  "ksh",
                                                 "mksh", "ash",  "yash", "posh", "rbash"};
  return std::find(std::begin(kShells), std::end(kShells), b) != std::end(kShells);
}

std::string JoinRest(const std::vector<std::string>& words, size_t from) {
  std::string s;
  for (size_t i = from; i < words.size(); ++i) {
    if (i > from) s += ' ';
    s += words[i];
  }
  return s;
}

// For sh/bash…: the -c string, if any. Options per bash(1) and dash(1): -o/+o and -O/+O take a
// value, --rcfile/--init-file take a value, the first operand after -c is the command string.
std::optional<std::string> ShellCommandString(const std::vector<std::string>& words, size_t p) {
  bool has_c = false;
  for (size_t i = p + 1; i < words.size(); ++i) {
    std::string_view w = words[i];
    if (w == "--" || w == "-") {
      if (has_c && i + 1 < words.size()) return words[i + 1];
      return std::nullopt;
    }
    if (w.starts_with("--")) {
      if (w == "--rcfile" || w == "--init-file") ++i;
      continue;
    }
    if ((w.starts_with('-') || w.starts_with('+')) && w.size() > 1) {
      if (w[0] == '-' && w.find('c') != std::string_view::npos) has_c = true;
      if (w.back() == 'o' || w.back() == 'O') ++i;
      continue;
    }
    if (has_c) return std::string(w);
    return std::nullopt;  // a script file
  }
  return std::nullopt;
}

// su [options] [-] [user [args]]: -c/--command S runs S through the target user's shell.
std::optional<std::string> SuCommandString(const std::vector<std::string>& words, size_t p) {
  for (size_t i = p + 1; i < words.size(); ++i) {
    std::string_view w = words[i];
    if ((w == "-c" || w == "--command" || w == "-C" || w == "--session-command") &&
        i + 1 < words.size()) {
      return words[i + 1];
    }
    if (w.starts_with("--command=")) return std::string(w.substr(10));
    if (w.starts_with("-c") && w.size() > 2 && w[1] == 'c') return std::string(w.substr(2));
  }
  return std::nullopt;
}

}  // namespace

std::string_view Basename(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

ProgramView Look(const std::vector<std::string>& words) {
  ProgramView v;
  size_t i = 0;
  while (i < words.size() && IsAssignment(words[i])) ++i;
  // A wrapper wrapping a wrapper (sudo env nice rm …) is looked through again, up to a bound.
  for (int hops = 0; hops < 16 && i < words.size(); ++hops) {
    const std::string_view name = Basename(words[i]);
    if (name == "su") {
      v.privileged = true;
      v.program = i;
      v.shell_string = SuCommandString(words, i);
      return v;
    }
    if (name == "eval") {
      v.program = i;
      v.shell_string = JoinRest(words, i + 1);
      return v;
    }
    if (IsShellName(name)) {
      v.program = i;
      v.shell_string = ShellCommandString(words, i);
      return v;
    }
    const WrapperSpec* spec = FindWrapper(name);
    if (spec == nullptr) break;
    v.wrappers.push_back(name);
    v.privileged = v.privileged || spec->privileged;
    size_t j = i + 1;
    bool lookup_only = false;
    for (; j < words.size(); ++j) {
      std::string_view w = words[j];
      if (w == "--") {
        ++j;
        break;
      }
      if (w.starts_with("--")) {
        size_t eq = w.find('=');
        std::string_view opt = w.substr(0, eq);
        std::string_view value;
        const bool takes = std::find(spec->long_with_arg.begin(), spec->long_with_arg.end(), opt) !=
                           spec->long_with_arg.end();
        if (takes && eq == std::string_view::npos && j + 1 < words.size()) {
          value = words[++j];
        } else if (eq != std::string_view::npos) {
          value = w.substr(eq + 1);
        }
        if (spec->string_option != 0 && (opt == "--command" || opt == "--split-string")) {
          std::string s(value);
          if (j + 1 < words.size()) {
            s += ' ';
            s += JoinRest(words, j + 1);
          }
          v.shell_string = std::move(s);
          v.program = words.size();
          return v;
        }
        continue;
      }
      if (w == "-" && name == "env") continue;  // "env -" is "env -i"
      if (w.size() < 2 || w[0] != '-') break;
      // A cluster of letters; the first that takes a value takes the rest of the word or the
      // next word.
      for (size_t k = 1; k < w.size(); ++k) {
        if (name == "command" && (w[k] == 'v' || w[k] == 'V')) lookup_only = true;
        if (spec->short_with_arg.find(w[k]) == std::string_view::npos) continue;
        std::string value;
        if (k + 1 < w.size()) {
          value = std::string(w.substr(k + 1));
        } else if (j + 1 < words.size()) {
          value = words[++j];
        }
        if (w[k] == spec->string_option) {
          if (j + 1 < words.size()) {
            value += ' ';
            value += JoinRest(words, j + 1);
          }
          v.shell_string = std::move(value);
          v.program = words.size();
          return v;
        }
        break;
      }
    }
    if (spec->assignments) {
      while (j < words.size() && IsAssignment(words[j])) ++j;
    }
    j += static_cast<size_t>(spec->positionals);
    // flock FILE -c S: the string option may follow the operand.
    if (spec->string_option != 0 && j + 1 < words.size() &&
        (words[j] == std::string{'-', spec->string_option} || words[j] == "--command")) {
      v.shell_string = words[j + 1];
      v.program = words.size();
      return v;
    }
    if (lookup_only || j >= words.size()) {
      v.program = words.size();
      return v;
    }
    if (name == "watch") {
      v.program = words.size();
      v.shell_string = JoinRest(words, j);
      return v;
    }
    i = j;
  }
  v.program = std::min(i, words.size());
  return v;
}

Interpreter InterpreterOf(std::string_view b) {
  if (IsShellName(b)) return Interpreter::kShell;
  if (b.starts_with("python") || b.starts_with("pypy")) return Interpreter::kPython;
  if (b == "perl" || b.starts_with("perl5")) return Interpreter::kPerl;
  if (b == "ruby" || b.starts_with("ruby")) return Interpreter::kRuby;
  if (b == "node" || b == "nodejs" || b == "deno" || b == "bun") return Interpreter::kNode;
  return Interpreter::kNone;
}

bool ReadsProgramFromStdin(const std::vector<std::string>& words, size_t program) {
  if (program >= words.size()) return false;
  const Interpreter kind = InterpreterOf(Basename(words[program]));
  if (kind == Interpreter::kNone) return false;
  // Options that carry the program text (or name a module) instead of a file: -c for shells and
  // python (and -m), -e/-E for perl and ruby, -e/-p/--eval/--print for node.
  std::string_view code_letters, value_letters;
  switch (kind) {
    case Interpreter::kShell:
      code_letters = "c";
      break;
    case Interpreter::kPython:
      code_letters = "cm";
      value_letters = "WX";
      break;
    case Interpreter::kPerl:
      code_letters = "eE";
      value_letters = "IMmx";
      break;
    case Interpreter::kRuby:
      code_letters = "e";
      value_letters = "rICEx";
      break;
    case Interpreter::kNode:
      code_letters = "ep";
      value_letters = "r";
      break;
    case Interpreter::kNone:
      return false;
  }
  for (size_t i = program + 1; i < words.size(); ++i) {
    std::string_view w = words[i];
    if (w == "-") return true;
    if (w == "--") return i + 1 >= words.size() || words[i + 1] == "-";
    if (kind == Interpreter::kNode && (w == "--eval" || w == "--print")) return false;
    if (w.starts_with("--")) continue;
    if (kind == Interpreter::kShell && w.starts_with('+') && w.size() > 1) {
      if (w.back() == 'o' || w.back() == 'O') ++i;
      continue;
    }
    if (w.starts_with('-') && w.size() > 1) {
      if (kind == Interpreter::kShell && w.find('s') != std::string_view::npos) return true;
      for (size_t k = 1; k < w.size(); ++k) {
        if (code_letters.find(w[k]) != std::string_view::npos) return false;
        if (value_letters.find(w[k]) != std::string_view::npos) {
          if (k + 1 == w.size()) ++i;
          break;
        }
        if (kind == Interpreter::kShell && (w[k] == 'o' || w[k] == 'O')) {
          ++i;
          break;
        }
      }
      continue;
    }
    return false;  // a script file
  }
  return true;
}

}  // namespace sbx::policy::internal
