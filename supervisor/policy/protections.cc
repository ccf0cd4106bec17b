#include "supervisor/policy/protections.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "supervisor/policy/program.h"

namespace sbx::policy::internal {
namespace {

// sh -c "sh -c '…'" nests; past this depth the command is refused rather than read.
constexpr int kMaxShellStringDepth = 4;

// Directories whose recursive removal (or chmod/chown) wrecks the system.
// clang-format off
constexpr std::string_view kSystemDirs[] = {
    "/bin",  "/boot", "/dev",     "/etc",      "/home",     "/lib",       "/lib32",
    "/lib64", "/libx32", "/media", "/mnt",      "/opt",      "/proc",      "/root",
    "/run",  "/sbin", "/snap",    "/srv",      "/sys",      "/usr",       "/var",
    "/usr/bin", "/usr/lib", "/usr/lib64", "/usr/local", "/usr/sbin", "/usr/share", "/var/lib"};
// clang-format on

// Devices a program may write to without harm.
constexpr std::string_view kHarmlessDevices[] = {"/dev/null",   "/dev/zero",    "/dev/full",
                                                 "/dev/random", "/dev/urandom", "/dev/tty",
                                                 "/dev/stdout", "/dev/stderr",  "/dev/stdin"};
constexpr std::string_view kHarmlessDevicePrefixes[] = {"/dev/fd/", "/dev/pts/", "/dev/shm/",
                                                        "/dev/mqueue/"};

constexpr std::string_view kDownloaders[] = {"curl", "wget",  "fetch", "aria2c",
                                             "http", "https", "xh"};

// A glob, or an expansion the shell fills in later ($X may be empty, `…` anything).
bool HasUnknown(std::string_view component) {
  return component.find_first_of("*?[{$`") != std::string_view::npos;
}

struct Normalized {
  std::string dir;       // "/usr": the directory named, or the one above its first unknown
  bool globbed = false;  // a component below `dir` is unknown: "/usr/*" names what is in /usr
};

// Lexical: "//usr/./bin/.." -> "/usr". `path` starts with '/'.
Normalized NormalizeAbsolute(std::string_view path) {
  std::vector<std::string_view> parts;
  Normalized n;
  size_t i = 0;
  while (i < path.size()) {
    size_t slash = path.find('/', i);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view c = path.substr(i, slash - i);
    i = slash + 1;
    if (c.empty() || c == ".") continue;
    if (HasUnknown(c)) {
      n.globbed = true;
      break;
    }
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(c);
  }
  // Built with push_back/append: assigning "/" here trips GCC 12's -Wrestrict false positive
  // (GCC bug 105329) in optimised builds.
  std::string dir;
  dir.reserve(path.size() + 1);
  dir.push_back('/');
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k > 0) dir.push_back('/');
    dir.append(parts[k]);
  }
  n.dir = std::move(dir);
  return n;
}

bool IsRootLike(std::string_view rest) {
  return rest.empty() || (rest[0] == '/' && NormalizeAbsolute(rest).dir == "/");
}

// Why removing `path` recursively would wreck the system, or nothing.
std::optional<std::string> CriticalPath(std::string_view path) {
  if (path.starts_with('~')) {
    size_t slash = path.find('/');
    if (IsRootLike(slash == std::string_view::npos ? "" : path.substr(slash))) {
      return "the home directory";
    }
    return std::nullopt;
  }
  if (path == "$HOME" || path.starts_with("$HOME/") || path.starts_with("${HOME}")) {
    if (IsRootLike(path.substr(path[1] == '{' ? 7 : 5))) return "the home directory";
    return std::nullopt;
  }
  if (path.starts_with('$')) {
    // "$DIR/" and "$A$B/" are "/" when the variables are empty or unset.
    size_t k = 0;
    while (k < path.size() && path[k] == '$') {
      if (k + 1 < path.size() && path[k + 1] == '{') {
        k = path.find('}', k);
        if (k == std::string_view::npos) return std::nullopt;
        ++k;
      } else {
        ++k;
        while (k < path.size() &&
               (std::isalnum(static_cast<unsigned char>(path[k])) || path[k] == '_')) {
          ++k;
        }
      }
    }
    std::string_view after = path.substr(k);
    if (!after.empty() && after[0] == '/' && IsRootLike(after)) {
      return fmt::format("/ whenever {} is empty", path.substr(0, k));
    }
    return std::nullopt;
  }
  if (!path.starts_with('/')) return std::nullopt;
  Normalized n = NormalizeAbsolute(path);
  if (n.dir == "/") {
    return n.globbed ? std::string("everything under /") : std::string("the whole file system");
  }
  if (std::find(std::begin(kSystemDirs), std::end(kSystemDirs), n.dir) != std::end(kSystemDirs)) {
    return n.globbed ? fmt::format("everything in the system directory {}", n.dir)
                     : fmt::format("the system directory {}", n.dir);
  }
  return std::nullopt;
}

bool IsHarmfulDevice(std::string_view path) {
  if (!path.starts_with('/')) return false;
  const std::string p = NormalizeAbsolute(path).dir;
  if (!p.starts_with("/dev/")) return false;
  if (std::find(std::begin(kHarmlessDevices), std::end(kHarmlessDevices), p) !=
      std::end(kHarmlessDevices)) {
    return false;
  }
  for (std::string_view prefix : kHarmlessDevicePrefixes) {
    if (p.starts_with(prefix)) return false;
  }
  return true;
}

bool IsDownloader(std::string_view name) {
  return std::find(std::begin(kDownloaders), std::end(kDownloaders), name) !=
         std::end(kDownloaders);
}

// getopt_long accepts any unambiguous prefix: rm --rec, chmod --recur.
bool IsLongPrefix(std::string_view w, std::string_view option, size_t min_len) {
  return w.size() >= min_len && option.starts_with(w);
}

struct Operands {
  bool recursive = false;
  bool no_preserve_root = false;
  std::vector<std::string_view> paths;
};

// rm, chmod, chown, chgrp: options anywhere before "--" (GNU permutes), -r/-R in a cluster (-r
// only for rm: chmod -r is a mode).
Operands ParseRecursiveOperands(const std::vector<std::string>& words, size_t p, bool rm) {
  Operands o;
  bool end_of_options = false;
  for (size_t i = p + 1; i < words.size(); ++i) {
    std::string_view w = words[i];
    if (!end_of_options && w == "--") {
      end_of_options = true;
      continue;
    }
    if (!end_of_options && w.starts_with("--")) {
      std::string_view name = w.substr(0, w.find('='));
      if (IsLongPrefix(name, "--recursive", rm ? 3 : 5)) o.recursive = true;
      if (IsLongPrefix(name, "--no-preserve-root", rm ? 3 : 4)) o.no_preserve_root = true;
      continue;
    }
    if (!end_of_options && w.size() > 1 && w[0] == '-') {
      const bool letters = std::all_of(w.begin() + 1, w.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      });
      // chmod's modes may start with '-' ("-w"); only a cluster of option letters counts.
      if (letters && (w.find('R') != std::string_view::npos ||
                      (rm && w.find('r') != std::string_view::npos))) {
        o.recursive = true;
      }
      if (letters) continue;
    }
    o.paths.push_back(w);
  }
  return o;
}

// The directory a command line has changed into with cd or pushd, as far as it can be known:
// "/etc", "~", "~/src"; nothing when unknown.
using Cwd = std::optional<std::string>;

// `path` as seen from `cwd`: relative paths are joined to a known cwd.
std::string Resolve(const Cwd& cwd, std::string_view path) {
  if (!cwd || path.empty() || path[0] == '/' || path[0] == '~' || path[0] == '$') {
    return std::string(path);
  }
  std::string out = *cwd;
  out.push_back('/');
  out.append(path);
  return out;
}

// " (in /etc)" when `path` was resolved against a cwd, for messages.
std::string InCwd(const Cwd& cwd, std::string_view path) {
  if (Resolve(cwd, path) == path) return "";
  return fmt::format(" (in {})", *cwd);
}

// The cwd after `cd ARGS` (or pushd) run in `cwd`.
Cwd ChangeDirectory(const Cwd& cwd, const std::vector<std::string>& words, size_t p) {
  size_t i = p + 1;
  while (i < words.size() && words[i].size() > 1 && words[i][0] == '-') ++i;  // -L -P -e
  if (i < words.size() && words[i] == "--") ++i;
  if (i >= words.size()) return std::string("~");
  const std::string& target = words[i];
  if (target == "-") return std::nullopt;
  if (target == "~" || target == "$HOME" || target == "${HOME}") return std::string("~");
  if (target.starts_with('~') || target.starts_with('$')) return target;
  const std::string resolved = Resolve(cwd, target);
  if (resolved.starts_with('~')) return resolved;
  if (!resolved.starts_with('/')) return std::nullopt;  // relative to an unknown cwd
  Normalized n = NormalizeAbsolute(resolved);
  if (n.globbed) return std::nullopt;
  return n.dir;
}

class Checker {
 public:
  explicit Checker(std::vector<Finding>& out) : out_(out) {}

  void Words(const std::vector<std::string>& words, int depth, const Cwd& cwd);
  void Parse(const ShellParse& parse, int depth, Cwd cwd);

 private:
  void Add(std::string message, const std::vector<std::string>& words) {
    Finding f{std::move(message), JoinWords(words)};
    for (const Finding& g : out_) {
      if (g.message == f.message && g.command == f.command) return;
    }
    out_.push_back(std::move(f));
  }
  void Program(const std::vector<std::string>& words, size_t p, const Cwd& cwd);

  std::vector<Finding>& out_;
};

void Checker::Program(const std::vector<std::string>& words, size_t p, const Cwd& cwd) {
  const std::string_view name = Basename(words[p]);
  if (name == "rm") {
    Operands o = ParseRecursiveOperands(words, p, /*rm=*/true);
    if (o.no_preserve_root) {
      Add("rm --no-preserve-root exists only to delete /", words);
    }
    if (o.recursive) {
      for (std::string_view path : o.paths) {
        if (auto why = CriticalPath(Resolve(cwd, path))) {
          Add(fmt::format("rm -r on '{}'{} would delete {}", path, InCwd(cwd, path), *why), words);
        }
      }
    }
    return;
  }
  if (name == "chmod" || name == "chown" || name == "chgrp") {
    Operands o = ParseRecursiveOperands(words, p, /*rm=*/false);
    if (!o.recursive) return;
    for (std::string_view path : o.paths) {
      if (auto why = CriticalPath(Resolve(cwd, path))) {
        Add(fmt::format("{} -R on '{}'{} would change {}", name, path, InCwd(cwd, path), *why),
            words);
      }
    }
    return;
  }
  if (name.starts_with("mkfs") || name == "mke2fs" || name == "wipefs") {
    Add(fmt::format("{} erases a file system", name), words);
    return;
  }
  if (name == "shred" || name == "mkswap" || name == "blkdiscard") {
    for (size_t i = p + 1; i < words.size(); ++i) {
      if (IsHarmfulDevice(words[i])) {
        Add(fmt::format("{} on the device {} destroys its data", name, words[i]), words);
      }
    }
    return;
  }
  if (name == "cp" || name == "mv" || name == "install" || name == "tee") {
    // cp/mv/install write their last operand, tee every operand.
    std::vector<std::string_view> operands;
    for (size_t i = p + 1; i < words.size(); ++i) {
      if (!words[i].starts_with('-')) operands.push_back(words[i]);
    }
    if (name != "tee") {
      if (operands.size() < 2) return;
      operands.erase(operands.begin(), operands.end() - 1);
    }
    for (std::string_view target : operands) {
      if (IsHarmfulDevice(target)) {
        Add(fmt::format("{} writes to the device {}", name, target), words);
      }
    }
    return;
  }
  if (name == "dd") {
    for (size_t i = p + 1; i < words.size(); ++i) {
      std::string_view w = words[i];
      if (w.starts_with("of=") && IsHarmfulDevice(w.substr(3))) {
        Add(fmt::format("dd writes to the device {}", w.substr(3)), words);
      }
    }
    return;
  }
  if (name == "find") {
    size_t i = p + 1;
    while (i < words.size() && (words[i] == "-H" || words[i] == "-L" || words[i] == "-P" ||
                                words[i].starts_with("-O") || words[i] == "-D")) {
      i += words[i] == "-D" ? 2 : 1;
    }
    std::vector<std::string_view> starts;
    for (; i < words.size(); ++i) {
      std::string_view w = words[i];
      if (w.starts_with('-') || w == "(" || w == "!" || w == ",") break;
      starts.push_back(w);
    }
    bool deletes = false;
    for (size_t k = i; k < words.size(); ++k) {
      std::string_view w = words[k];
      if (w == "-delete") deletes = true;
      if ((w == "-exec" || w == "-execdir" || w == "-ok" || w == "-okdir") &&
          k + 1 < words.size()) {
        std::string_view prog = Basename(words[k + 1]);
        if (prog == "rm" || prog == "shred") deletes = true;
      }
    }
    if (!deletes) return;
    for (std::string_view s : starts) {
      if (auto why = CriticalPath(Resolve(cwd, s))) {
        Add(fmt::format("find on '{}'{} that deletes what it finds would delete {}", s,
                        InCwd(cwd, s), *why),
            words);
      }
    }
  }
}

void Checker::Words(const std::vector<std::string>& words, int depth, const Cwd& cwd) {
  if (words.empty()) return;
  ProgramView view = Look(words);
  if (view.shell_string) {
    const std::string_view carrier =
        view.program < words.size() ? Basename(words[view.program]) : std::string_view("env/flock");
    if (depth >= kMaxShellStringDepth) {
      Add(fmt::format("shell strings nested more than {} deep cannot be inspected",
                      kMaxShellStringDepth),
          words);
    } else if (auto parse = SplitShell(*view.shell_string); !parse.ok()) {
      Add(fmt::format("the command string given to {} cannot be inspected ({}); protections "
                      "refuse what they cannot read",
                      carrier, parse.error().message),
          words);
    } else {
      Parse(*parse, depth + 1, cwd);
    }
  }
  if (view.program < words.size()) Program(words, view.program, cwd);
}

void Checker::Parse(const ShellParse& parse, int depth, Cwd cwd) {
  const auto& cmds = parse.commands;
  std::vector<ProgramView> views;
  views.reserve(cmds.size());
  for (const ShellCommand& c : cmds) {
    Words(c.words, depth, cwd);
    views.push_back(Look(c.words));
    // Later commands run where cd left them: "cd / && rm -rf *" is rm -rf /*. Taken in text
    // order, which may see a cd in a subshell as lasting: stricter, never looser.
    if (const ProgramView& v = views.back(); v.program < c.words.size()) {
      const std::string_view prog = Basename(c.words[v.program]);
      if (prog == "cd" || prog == "pushd") cwd = ChangeDirectory(cwd, c.words, v.program);
    }
    for (const Redirection& r : c.redirections) {
      const bool writes = r.op.find('>') != std::string::npos;
      const bool fd_dup =
          (r.op.ends_with(">&") || r.op.ends_with("<&")) &&
          (r.target == "-" || std::all_of(r.target.begin(), r.target.end(),
                                          [](char ch) { return ch >= '0' && ch <= '9'; }));
      if (writes && !fd_dup && IsHarmfulDevice(r.target)) {
        Add(fmt::format("'{}' writes to the device {}", r.op, r.target), c.words);
      }
    }
  }

  for (const FunctionDefinition& f : parse.functions) {
    for (size_t k = f.first_command; k < f.end_command && k < cmds.size(); ++k) {
      const ProgramView& v = views[k];
      if (v.program < cmds[k].words.size() && cmds[k].words[v.program] == f.name) {
        Add(fmt::format("the function '{}' calls itself: a fork bomb", f.name), cmds[k].words);
        break;
      }
    }
  }

  // A download reaches an interpreter: piped into one that reads its program from stdin, or
  // substituted into one's arguments, or substituted into the program's place.
  std::vector<bool> carries(cmds.size(), false);
  std::vector<std::string_view> downloader(cmds.size());
  for (size_t i = 0; i < cmds.size(); ++i) {
    const ProgramView& v = views[i];
    if (v.program < cmds[i].words.size() && IsDownloader(Basename(cmds[i].words[v.program]))) {
      carries[i] = true;
      downloader[i] = Basename(cmds[i].words[v.program]);
    }
    if (carries[i] && cmds[i].parent >= 0) {
      carries[cmds[i].parent] = true;
      if (downloader[cmds[i].parent].empty()) downloader[cmds[i].parent] = downloader[i];
    }
  }
  for (size_t j = 0; j < cmds.size(); ++j) {
    const ProgramView& v = views[j];
    if (v.program >= cmds[j].words.size()) continue;
    const std::string_view prog = Basename(cmds[j].words[v.program]);
    for (size_t i = 0; i < j; ++i) {
      if (carries[i] && cmds[i].pipeline == cmds[j].pipeline &&
          ReadsProgramFromStdin(cmds[j].words, v.program)) {
        Add(fmt::format("pipes a download ({}) into {}, which runs it", downloader[i], prog),
            cmds[j].words);
      }
    }
    const bool interpreter = InterpreterOf(prog) != Interpreter::kNone || prog == "eval" ||
                             prog == "source" || prog == ".";
    const std::string& program_word = cmds[j].words[v.program];
    const bool substituted_program = program_word.find("$(") != std::string::npos ||
                                     program_word.find('`') != std::string::npos ||
                                     program_word.starts_with("<(");
    if (!interpreter && !substituted_program) continue;
    for (size_t i = 0; i < j; ++i) {
      if (carries[i] && cmds[i].parent == static_cast<int>(j)) {
        Add(fmt::format("hands a download ({}) to {} to run", downloader[i],
                        substituted_program ? std::string_view("the shell") : prog),
            cmds[j].words);
      }
    }
  }
}

}  // namespace

void CheckArgv(const std::vector<std::string>& words, std::vector<Finding>& out) {
  Checker(out).Words(words, 0, std::nullopt);
}

void CheckShell(const ShellParse& parse, std::vector<Finding>& out) {
  Checker(out).Parse(parse, 0, std::nullopt);
}

}  // namespace sbx::policy::internal
