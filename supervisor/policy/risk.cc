#include "supervisor/policy/risk.h"

#include <algorithm>
#include <string_view>

#include "supervisor/policy/program.h"

namespace sbx::policy::internal {
namespace {

constexpr int kMaxDepth = 4;

enum class Kind {
  kReadOnly,  // looks, prints, computes
  kWrites,    // changes files in the workspace
  kDeletes,   // deletes or overwrites data
  kNetwork,   // talks to other machines
  kRunsCode,  // runs programs or scripts it is given
  kSpecial,   // depends on the arguments; see Classify()
};

struct Known {
  std::string_view name;
  Kind kind;
};

// Programs an agent's runs commonly use. Anything else is an unknown program (medium risk).
// clang-format off
constexpr Known kKnown[] = {
    // Read-only.
    {"ls", Kind::kReadOnly}, {"pwd", Kind::kReadOnly}, {"echo", Kind::kReadOnly},
    {"printf", Kind::kReadOnly}, {"cat", Kind::kReadOnly}, {"head", Kind::kReadOnly},
    {"tail", Kind::kReadOnly}, {"less", Kind::kReadOnly}, {"more", Kind::kReadOnly},
    {"wc", Kind::kReadOnly}, {"rg", Kind::kReadOnly}, {"grep", Kind::kReadOnly},
    {"egrep", Kind::kReadOnly}, {"fgrep", Kind::kReadOnly}, {"ag", Kind::kReadOnly},
    {"which", Kind::kReadOnly}, {"whereis", Kind::kReadOnly}, {"type", Kind::kReadOnly},
    {"date", Kind::kReadOnly}, {"whoami", Kind::kReadOnly}, {"id", Kind::kReadOnly},
    {"uname", Kind::kReadOnly}, {"hostname", Kind::kReadOnly}, {"printenv", Kind::kReadOnly},
    {"env", Kind::kReadOnly}, {"stat", Kind::kReadOnly}, {"file", Kind::kReadOnly},
    {"du", Kind::kReadOnly}, {"df", Kind::kReadOnly}, {"tree", Kind::kReadOnly},
    {"diff", Kind::kReadOnly}, {"cmp", Kind::kReadOnly}, {"sort", Kind::kReadOnly},
    {"uniq", Kind::kReadOnly}, {"cut", Kind::kReadOnly}, {"tr", Kind::kReadOnly},
    {"jq", Kind::kReadOnly}, {"yq", Kind::kReadOnly}, {"basename", Kind::kReadOnly},
    {"dirname", Kind::kReadOnly}, {"realpath", Kind::kReadOnly}, {"readlink", Kind::kReadOnly},
    {"true", Kind::kReadOnly}, {"false", Kind::kReadOnly}, {"test", Kind::kReadOnly},
    {"[", Kind::kReadOnly}, {"sleep", Kind::kReadOnly}, {"seq", Kind::kReadOnly},
    {"xxd", Kind::kReadOnly}, {"od", Kind::kReadOnly}, {"hexdump", Kind::kReadOnly},
    {"md5sum", Kind::kReadOnly}, {"sha1sum", Kind::kReadOnly}, {"sha256sum", Kind::kReadOnly},
    {"sha512sum", Kind::kReadOnly}, {"ps", Kind::kReadOnly}, {"free", Kind::kReadOnly},
    {"uptime", Kind::kReadOnly}, {"nproc", Kind::kReadOnly}, {"column", Kind::kReadOnly},
    {"comm", Kind::kReadOnly}, {"nl", Kind::kReadOnly}, {"paste", Kind::kReadOnly},
    {"tac", Kind::kReadOnly}, {"rev", Kind::kReadOnly}, {"strings", Kind::kReadOnly},
    {"fold", Kind::kReadOnly}, {"expand", Kind::kReadOnly}, {"join", Kind::kReadOnly},
    {":", Kind::kReadOnly},
    // Write to the workspace.
    {"cp", Kind::kWrites}, {"mv", Kind::kWrites}, {"mkdir", Kind::kWrites},
    {"rmdir", Kind::kWrites}, {"touch", Kind::kWrites}, {"ln", Kind::kWrites},
    {"chmod", Kind::kWrites}, {"chown", Kind::kWrites}, {"chgrp", Kind::kWrites},
    {"tee", Kind::kWrites}, {"patch", Kind::kWrites}, {"install", Kind::kWrites},
    {"tar", Kind::kWrites}, {"unzip", Kind::kWrites}, {"zip", Kind::kWrites},
    {"gzip", Kind::kWrites}, {"gunzip", Kind::kWrites}, {"bzip2", Kind::kWrites},
    {"xz", Kind::kWrites}, {"split", Kind::kWrites},
    // Delete or overwrite.
    {"rm", Kind::kDeletes}, {"shred", Kind::kDeletes}, {"truncate", Kind::kDeletes},
    {"dd", Kind::kDeletes}, {"unlink", Kind::kDeletes}, {"wipefs", Kind::kDeletes},
    {"mke2fs", Kind::kDeletes},
    // Network.
    {"curl", Kind::kNetwork}, {"wget", Kind::kNetwork}, {"ssh", Kind::kNetwork},
    {"scp", Kind::kNetwork}, {"sftp", Kind::kNetwork}, {"nc", Kind::kNetwork},
    {"ncat", Kind::kNetwork}, {"netcat", Kind::kNetwork}, {"socat", Kind::kNetwork},
    {"telnet", Kind::kNetwork}, {"ftp", Kind::kNetwork}, {"ping", Kind::kNetwork},
    {"dig", Kind::kNetwork}, {"nslookup", Kind::kNetwork}, {"host", Kind::kNetwork},
    {"aria2c", Kind::kNetwork}, {"fetch", Kind::kNetwork}, {"http", Kind::kNetwork},
    {"https", Kind::kNetwork}, {"xh", Kind::kNetwork},
    {"npx", Kind::kNetwork}, {"pnpx", Kind::kNetwork}, {"bunx", Kind::kNetwork},
    // Run code they are given.
    {"make", Kind::kRunsCode}, {"cmake", Kind::kRunsCode}, {"ninja", Kind::kRunsCode},
    {"meson", Kind::kRunsCode}, {"pytest", Kind::kRunsCode}, {"tox", Kind::kRunsCode},
    {"nox", Kind::kRunsCode}, {"jest", Kind::kRunsCode}, {"vitest", Kind::kRunsCode},
    {"java", Kind::kRunsCode}, {"php", Kind::kRunsCode}, {"gcc", Kind::kRunsCode},
    {"g++", Kind::kRunsCode}, {"cc", Kind::kRunsCode}, {"c++", Kind::kRunsCode},
    {"clang", Kind::kRunsCode}, {"clang++", Kind::kRunsCode}, {"source", Kind::kRunsCode},
    {".", Kind::kRunsCode}, {"eval", Kind::kRunsCode}, {"xargs", Kind::kRunsCode},
    // Depend on their arguments.
    {"git", Kind::kSpecial}, {"sed", Kind::kSpecial}, {"awk", Kind::kSpecial},
    {"gawk", Kind::kSpecial}, {"mawk", Kind::kSpecial}, {"find", Kind::kSpecial},
    {"rsync", Kind::kSpecial}, {"npm", Kind::kSpecial}, {"pnpm", Kind::kSpecial},
    {"yarn", Kind::kSpecial}, {"bun", Kind::kSpecial}, {"pip", Kind::kSpecial},
    {"pip3", Kind::kSpecial}, {"uv", Kind::kSpecial}, {"pipx", Kind::kSpecial},
    {"cargo", Kind::kSpecial}, {"go", Kind::kSpecial}, {"apt", Kind::kSpecial},
    {"apt-get", Kind::kSpecial}, {"dnf", Kind::kSpecial}, {"yum", Kind::kSpecial},
    {"apk", Kind::kSpecial}, {"brew", Kind::kSpecial}, {"docker", Kind::kSpecial},
    {"podman", Kind::kSpecial},
};
// clang-format on

const Known* FindKnown(std::string_view name) {
  for (const Known& k : kKnown) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

bool In(std::string_view w, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), w) != set.end();
}

bool AnyArg(const std::vector<std::string>& words, size_t from,
            std::initializer_list<std::string_view> set) {
  for (size_t i = from; i < words.size(); ++i) {
    if (In(words[i], set)) return true;
  }
  return false;
}

// The first word at or after `from` that is not an option; words.size() when none.
size_t FirstOperand(const std::vector<std::string>& words, size_t from) {
  while (from < words.size() && words[from].starts_with('-')) ++from;
  return from;
}

class Classifier {
 public:
  explicit Classifier(std::vector<Reason>& out) : out_(out) {}

  void Words(const std::vector<std::string>& words, int depth);

 private:
  void Add(ReasonCode code, std::string message) { AddReason(out_, code, std::move(message)); }
  void Program(const std::vector<std::string>& words, size_t p);
  void Git(const std::vector<std::string>& words, size_t p);
  void PackageManager(std::string_view name, const std::vector<std::string>& words, size_t p);

  std::vector<Reason>& out_;
};

void Classifier::Git(const std::vector<std::string>& words, size_t p) {
  // Global options before the subcommand (git(1)): -C, -c, --git-dir, --work-tree, --namespace
  // take a value.
  size_t i = p + 1;
  while (i < words.size() && words[i].starts_with('-')) {
    const std::string& w = words[i];
    i += (w == "-C" || w == "-c" || w == "--git-dir" || w == "--work-tree" || w == "--namespace" ||
          w == "--exec-path" || w == "--config-env")
             ? 2
             : 1;
  }
  if (i >= words.size()) return;
  const std::string_view sub = words[i];
  const std::string what = fmt::format("git {}", sub);
  if (In(sub,
         {"status",   "log",         "diff",          "show",       "rev-parse", "ls-files",
          "ls-tree",  "blame",       "grep",          "describe",   "shortlog",  "reflog",
          "cat-file", "show-ref",    "for-each-ref",  "merge-base", "name-rev",  "version",
          "help",     "whatchanged", "count-objects", "rev-list",   "var",       "check-ignore"})) {
    return;
  }
  if (In(sub, {"clone", "fetch", "pull", "push", "ls-remote", "submodule", "archive"})) {
    Add(ReasonCode::kNetwork, what + " uses the network");
    if (sub == "push" &&
        AnyArg(words, i + 1,
               {"-f", "--force", "--force-with-lease", "--mirror", "--delete", "-d"})) {
      Add(ReasonCode::kDestructiveVerb, what + " --force can overwrite history on the remote");
    }
    if (sub != "push" && sub != "ls-remote")
      Add(ReasonCode::kWritesWorkspace, what + " writes files");
    return;
  }
  if (sub == "remote") {
    if (AnyArg(words, i + 1, {"update", "prune", "show"})) {
      Add(ReasonCode::kNetwork, what + " uses the network");
    } else if (AnyArg(words, i + 1, {"add", "remove", "rm", "rename", "set-url", "set-head"})) {
      Add(ReasonCode::kWritesWorkspace, what + " changes the repository's configuration");
    }
    return;
  }
  if (sub == "branch" || sub == "tag" || sub == "stash" || sub == "config") {
    const bool lists =
        i + 1 >= words.size() ||
        AnyArg(words, i + 1,
               {"-l", "--list", "-a", "--all", "-r", "--remotes", "-v", "-vv", "--get", "--get-all",
                "--get-regexp", "--show-current", "list", "show", "--contains", "--merged"});
    if (!lists) Add(ReasonCode::kWritesWorkspace, what + " changes the repository");
    return;
  }
  if (sub == "clean" &&
      AnyArg(words, i + 1,
             {"-f", "--force", "-fd", "-df", "-fdx", "-xdf", "-dfx", "-fx", "-xf", "-ffdx"})) {
    Add(ReasonCode::kDestructiveVerb, "git clean -f deletes untracked files");
    return;
  }
  if (sub == "reset" && AnyArg(words, i + 1, {"--hard", "--merge", "--keep"})) {
    Add(ReasonCode::kDestructiveVerb, "git reset --hard discards uncommitted changes");
    return;
  }
  if (sub == "checkout" && AnyArg(words, i + 1, {"-f", "--force", "--", "."})) {
    Add(ReasonCode::kDestructiveVerb, "git checkout -f/-- discards uncommitted changes");
    return;
  }
  Add(ReasonCode::kWritesWorkspace, what + " changes the repository");
}

void Classifier::PackageManager(std::string_view name, const std::vector<std::string>& words,
                                size_t p) {
  size_t s = FirstOperand(words, p + 1);
  if (s >= words.size()) return;  // npm --version
  std::string_view sub = words[s];
  // uv pip install, python -m pip install: the subcommand is one word further.
  if ((name == "uv" || name == "pipx") && sub == "pip") {
    s = FirstOperand(words, s + 1);
    if (s >= words.size()) return;
    sub = words[s];
  }
  const std::string what = fmt::format("{} {}", name, sub);
  const bool python = name == "pip" || name == "pip3" || name == "uv" || name == "pipx";
  const bool system = name == "apt" || name == "apt-get" || name == "dnf" || name == "yum" ||
                      name == "apk" || name == "brew";
  if (In(sub, {"install", "i",        "ci",       "add",          "update",       "up",
               "upgrade", "dlx",      "download", "wheel",        "publish",      "login",
               "audit",   "outdated", "view",     "info",         "create",       "sync",
               "lock",    "fetch",    "get",      "dist-upgrade", "full-upgrade", "search",
               "tidy",    "pull",     "push"})) {
    Add(ReasonCode::kNetwork, what + " uses the network");
    if (!In(sub, {"view", "info", "audit", "outdated", "search", "login"})) {
      Add(ReasonCode::kWritesWorkspace, what + " writes files");
    }
    if (system) Add(ReasonCode::kPrivilege, what + " changes the system's packages");
    return;
  }
  if (In(sub, {"run", "run-script", "test", "t", "start", "exec", "x", "build", "bench", "check",
               "vet", "generate", "compose"})) {
    Add(ReasonCode::kRunsCode, what + " runs the project's code");
    return;
  }
  if (In(sub,
         {"remove", "rm", "uninstall", "un", "purge", "autoremove", "prune", "rmi", "clean"})) {
    Add(system || name == "docker" || name == "podman" ? ReasonCode::kDestructiveVerb
                                                       : ReasonCode::kWritesWorkspace,
        what + " removes packages or files");
    return;
  }
  if (In(sub, {"list", "ls", "show", "freeze", "version", "help", "why", "env", "ps", "images",
               "inspect", "logs", "config", "root", "prefix", "bin", "which"})) {
    return;
  }
  if (python || system) return;
  Add(ReasonCode::kWritesWorkspace, what + " may change the project");
}

void Classifier::Program(const std::vector<std::string>& words, size_t p) {
  const std::string& program = words[p];
  const std::string_view name = Basename(program);
  if (program.starts_with('$') || program.find("$(") != std::string::npos ||
      program.find('`') != std::string::npos) {
    Add(ReasonCode::kUnknownProgram,
        fmt::format("the program '{}' is only known once the shell expands it", program));
    return;
  }
  // Version and help requests of anything run nothing.
  if (words.size() == p + 2 && In(words[p + 1], {"--version", "-V", "--help", "-h", "version"})) {
    return;
  }
  const Interpreter interp = InterpreterOf(name);
  if (interp != Interpreter::kNone) {
    if (interp == Interpreter::kPython) {
      for (size_t i = p + 1; i + 1 < words.size(); ++i) {
        if (words[i] == "-m") {
          if (words[i + 1] == "pip" || words[i + 1] == "uv") {
            PackageManager(words[i + 1], words, i + 1);
            return;
          }
          break;
        }
      }
    }
    Add(ReasonCode::kRunsCode, fmt::format("{} runs code", name));
    return;
  }
  const Known* known = FindKnown(name);
  if (known == nullptr && (name.starts_with("mkfs"))) {
    Add(ReasonCode::kDestructiveVerb, fmt::format("{} erases a file system", name));
    return;
  }
  if (known == nullptr) {
    Add(ReasonCode::kUnknownProgram, fmt::format("'{}' is not a program the policy knows", name));
    return;
  }
  switch (known->kind) {
    case Kind::kReadOnly:
      return;
    case Kind::kWrites:
      Add(ReasonCode::kWritesWorkspace, fmt::format("{} writes files", name));
      return;
    case Kind::kDeletes:
      Add(ReasonCode::kDestructiveVerb, fmt::format("{} deletes or overwrites data", name));
      return;
    case Kind::kNetwork:
      Add(ReasonCode::kNetwork, fmt::format("{} uses the network", name));
      if (name == "npx" || name == "pnpx" || name == "bunx") {
        Add(ReasonCode::kRunsCode, fmt::format("{} runs a downloaded package", name));
      }
      return;
    case Kind::kRunsCode:
      Add(ReasonCode::kRunsCode, fmt::format("{} runs code", name));
      return;
    case Kind::kSpecial:
      break;
  }
  if (name == "git") return Git(words, p);
  if (name == "sed") {
    for (size_t i = p + 1; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w == "--") break;
      if (w.starts_with("--in-place") ||
          (w.size() > 1 && w[0] == '-' && w[1] != '-' && w.find('i') != std::string::npos &&
           w.find_first_of("ef") == std::string::npos)) {
        Add(ReasonCode::kWritesWorkspace, "sed -i writes files");
        break;
      }
    }
    return;
  }
  if (name == "awk" || name == "gawk" || name == "mawk") {
    for (size_t i = p + 1; i < words.size(); ++i) {
      if (words[i].find("system(") != std::string::npos ||
          words[i].find("| getline") != std::string::npos ||
          words[i].find("|getline") != std::string::npos) {
        Add(ReasonCode::kRunsCode, fmt::format("the {} program runs commands", name));
      }
      if (words[i] == "inplace")
        Add(ReasonCode::kWritesWorkspace, fmt::format("{} -i inplace writes files", name));
    }
    return;
  }
  if (name == "find") {
    for (size_t i = p + 1; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w == "-delete") Add(ReasonCode::kDestructiveVerb, "find -delete deletes files");
      if (In(w, {"-exec", "-execdir", "-ok", "-okdir"}) && i + 1 < words.size()) {
        std::vector<std::string> inner(words.begin() + i + 1, words.end());
        auto end = std::find(inner.begin(), inner.end(), ";");
        auto plus = std::find(inner.begin(), inner.end(), "+");
        inner.erase(std::min(end, plus), inner.end());
        Add(ReasonCode::kRunsCode, fmt::format("find {} runs a command", w));
        if (!inner.empty()) Program(inner, 0);
      }
      if (In(w, {"-fprint", "-fprint0", "-fprintf", "-fls"})) {
        Add(ReasonCode::kWritesWorkspace, fmt::format("find {} writes a file", w));
      }
    }
    return;
  }
  if (name == "rsync") {
    Add(ReasonCode::kWritesWorkspace, "rsync writes files");
    for (size_t i = p + 1; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (!w.starts_with('-') && (w.find(':') != std::string::npos)) {
        Add(ReasonCode::kNetwork, "rsync to or from another host uses the network");
        break;
      }
      if (w == "--delete" || w.starts_with("--delete-")) {
        Add(ReasonCode::kDestructiveVerb, "rsync --delete deletes files");
      }
    }
    return;
  }
  PackageManager(name, words, p);
}

void Classifier::Words(const std::vector<std::string>& words, int depth) {
  if (words.empty()) return;
  for (const std::string& w : words) {
    if (w.find('=') == std::string::npos) break;
    if (w.starts_with("LD_PRELOAD=") || w.starts_with("LD_AUDIT=") ||
        w.starts_with("LD_LIBRARY_PATH=")) {
      Add(ReasonCode::kRunsCode,
          fmt::format("{} loads other code into the program", w.substr(0, w.find('='))));
    }
  }
  const ProgramView view = Look(words);
  if (view.privileged) {
    std::string_view who = view.wrappers.empty() ? std::string_view("su") : view.wrappers.front();
    for (std::string_view w : view.wrappers) {
      if (In(w, {"sudo", "doas", "pkexec", "run0"})) who = w;
    }
    Add(ReasonCode::kPrivilege, fmt::format("{} raises privileges", who));
  }
  if (view.shell_string) {
    const std::string_view carrier =
        view.program < words.size() ? Basename(words[view.program]) : std::string_view("the shell");
    Add(ReasonCode::kRunsCode, fmt::format("{} runs a shell command string", carrier));
    if (depth < kMaxDepth) {
      if (auto parse = SplitShell(*view.shell_string); parse.ok()) {
        for (const ShellCommand& c : parse->commands) {
          Words(c.words, depth + 1);
        }
      }
    }
    return;
  }
  if (view.program >= words.size()) return;
  Program(words, view.program);
}

}  // namespace

void AddReason(std::vector<Reason>& out, ReasonCode code, std::string message) {
  Reason r{code, std::move(message)};
  if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(std::move(r));
}

void ClassifyWords(const std::vector<std::string>& words, std::vector<Reason>& out) {
  Classifier(out).Words(words, 0);
}

void ClassifyShellCommand(const ShellCommand& command, std::vector<Reason>& out) {
  Classifier(out).Words(command.words, 0);
  for (const Redirection& r : command.redirections) {
    if (r.op.find('>') == std::string::npos) continue;
    if ((r.op.ends_with(">&") || r.op.ends_with("<&")) &&
        (r.target == "-" || std::all_of(r.target.begin(), r.target.end(),
                                        [](char c) { return c >= '0' && c <= '9'; }))) {
      continue;  // 2>&1: a descriptor copy, no file
    }
    if (r.target == "/dev/null" || r.target == "/dev/stdout" || r.target == "/dev/stderr") {
      continue;
    }
    AddReason(out, ReasonCode::kWritesWorkspace,
              fmt::format("'{}' writes {}", r.op, QuoteWord(r.target)));
  }
}

}  // namespace sbx::policy::internal
