// `sandboxd seccomp validate|explain|diff|learn`: seccomp profiles (Docker/OCI JSON) examined
// before they are trusted, and written from what a command actually does.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/fs.h"
#include "isolate/sandbox.h"
#include "seccomp/analyze.h"
#include "seccomp/internal.h"
#include "seccomp/simulate.h"
#include "supervisor/cli/commands.h"
#include "supervisor/cli/exec_options.h"

namespace sbx::supervisor {
namespace {

using nlohmann::json;

constexpr int kExitUsage = 2;

constexpr const char* kUsage = R"(Usage: sandboxd seccomp COMMAND …

Seccomp profiles in the Docker/OCI JSON format ("default" names the builtin profile).

  validate FILE [--allow-permissive] [--cap CAP]… [--kernel X.Y] [--json]
      every error with its JSON path, unknown syscall names, contradictory rules, dangerous
      syscalls left allowed, the compiled size. Exit 0 valid, 1 invalid, 2 usage.
  explain FILE --syscall NAME [--args A0,A1,…] [--bpf] [--cap CAP]… [--kernel X.Y] [--json]
      the action the compiled filter gives that call and the rule that decides it; --bpf
      prints the filter, one instruction per line.
  diff A B [--cap CAP]… [--kernel X.Y] [--json]
      the syscalls whose action differs (both filters evaluated per syscall), the default
      action and architectures. Exit 0 same, 1 different, 2 usage or a broken profile.
  learn [-o FILE] [--profile BASE] [EXEC OPTIONS] -- COMMAND [ARG…]
      runs COMMAND in a sandbox (as `sandboxd exec`, see its --help) under a filter that
      records every syscall BASE would refuse and lets it run, then writes the smallest
      allowlist that runs it: default SCMP_ACT_ERRNO (EPERM), one SCMP_ACT_ALLOW rule with
      the names sorted, the native architecture. With --profile, BASE plus that rule.
      IMPORTANT: the command runs with every syscall allowed; learn only with a command you
      would run unconfined. Exit: the command's status, 125 when the sandbox fails.
)";

struct Common {
  std::vector<std::string> files;
  seccomp::CompileOptions compile;
  bool json = false;
  bool allow_permissive = false;
  bool bpf = false;
  std::string syscall;
  std::vector<uint64_t> args;
  bool has_args = false;
};

int Usage(const std::string& msg) {
  std::fprintf(stderr, "sandboxd seccomp: %s\n(see sandboxd seccomp --help)\n", msg.c_str());
  return kExitUsage;
}

Result<std::vector<uint64_t>> ParseArgList(const std::string& s) {
  std::vector<uint64_t> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string_view part(s.data() + start, end - start);
    int base = 10;
    if (part.size() > 2 && (part.substr(0, 2) == "0x" || part.substr(0, 2) == "0X")) {
      part.remove_prefix(2);
      base = 16;
    }
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v, base);
    if (part.empty() || ec != std::errc() || p != part.data() + part.size()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--args: \"{}\" is not a number; write decimal or 0x… values separated by "
                       "commas",
                       std::string(s.data() + start, end - start));
    }
    out.push_back(v);
    start = end + 1;
  }
  if (out.size() > 6) {
    return MakeError(ErrorCode::kInvalidArgument, "--args: {} values; syscalls take at most 6",
                     out.size());
  }
  return out;
}

// Returns an exit code on a usage error.
std::optional<int> ParseCommon(const std::vector<std::string>& args, Common* c) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) -> bool {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--json") {
      c->json = true;
    } else if (a == "--allow-permissive") {
      c->allow_permissive = true;
    } else if (a == "--bpf") {
      c->bpf = true;
    } else if (a == "--cap") {
      if (!value(&v)) return Usage("--cap needs a capability name");
      c->compile.caps.push_back(v);
    } else if (a == "--kernel") {
      if (!value(&v)) return Usage("--kernel needs a version such as 6.1");
      c->compile.kernel_version = v;
    } else if (a == "--syscall") {
      if (!value(&c->syscall)) return Usage("--syscall needs a name");
    } else if (a == "--args") {
      if (!value(&v)) return Usage("--args needs values");
      auto parsed = ParseArgList(v);
      if (!parsed.ok()) return Usage(parsed.error().message);
      c->args = std::move(*parsed);
      c->has_args = true;
    } else if (a.size() > 1 && a[0] == '-') {
      return Usage(fmt::format("unknown option '{}'", a));
    } else {
      c->files.push_back(a);
    }
  }
  return std::nullopt;
}

struct Source {
  std::string text;
  std::string name;
};

Result<Source> ReadProfile(const std::string& file) {
  if (file == "default" && !std::filesystem::exists(file)) {
    return Source{std::string(seccomp::DefaultProfileJson()), "default"};
  }
  // One byte over the parser's limit, so that a huge file gets the parser's message.
  auto text = ReadFile(file, (4 << 20) + 1);
  if (!text.ok()) return WithContext(std::move(text).error(), "seccomp profile " + file);
  std::string name = std::filesystem::path(file).stem().string();
  return Source{std::move(*text), name.empty() ? file : name};
}

struct Loaded {
  seccomp::Profile profile;
  seccomp::Program program;
};

Result<Loaded> LoadAndCompile(const std::string& file, const seccomp::CompileOptions& options) {
  auto src = ReadProfile(file);
  if (!src.ok()) return std::move(src).error();
  auto profile = seccomp::ParseProfile(src->text, src->name);
  if (!profile.ok()) return std::move(profile).error();
  auto program = seccomp::Compile(*profile, options);
  if (!program.ok()) return std::move(program).error();
  return Loaded{std::move(*profile), std::move(*program)};
}

std::string NativeArchName() {
  const auto* a = seccomp::internal::FindArchByToken(seccomp::NativeAuditArch());
  return a != nullptr ? std::string(a->scmp_name) : "native";
}

json FindingJson(const seccomp::Finding& f) { return {{"path", f.path}, {"message", f.message}}; }

int Validate(const std::vector<std::string>& args) {
  Common c;
  if (auto rc = ParseCommon(args, &c)) return *rc;
  if (c.files.size() != 1) return Usage("validate takes one FILE");
  auto src = ReadProfile(c.files[0]);
  if (!src.ok()) {
    if (c.json) {
      json j = {{"file", c.files[0]},
                {"valid", false},
                {"instructions", 0},
                {"errors", json::array({{{"path", ""}, {"message", src.error().ToString()}}})},
                {"warnings", json::array()},
                {"dangerous_allowed", json::array()}};
      std::puts(j.dump(2).c_str());
    } else {
      std::fprintf(stderr, "%s: error: %s\n", c.files[0].c_str(), src.error().ToString().c_str());
    }
    return 1;
  }
  seccomp::ValidateOptions vo;
  vo.allow_permissive = c.allow_permissive;
  vo.compile = c.compile;
  seccomp::ValidateReport report = seccomp::ValidateProfile(src->text, src->name, vo);
  if (c.json) {
    json errors = json::array(), warnings = json::array();
    for (const auto& f : report.findings) {
      (f.severity == seccomp::Finding::Severity::kError ? errors : warnings)
          .push_back(FindingJson(f));
    }
    json j = {{"file", c.files[0]},
              {"name", report.name},
              {"valid", report.valid()},
              {"instructions", report.instructions},
              {"architecture", NativeArchName()},
              {"errors", errors},
              {"warnings", warnings},
              {"dangerous_allowed", report.dangerous_allowed}};
    if (report.profile) {
      j["default_action"] = report.profile->default_action;
      j["rules"] = report.profile->syscalls.size();
    }
    std::puts(j.dump(2).c_str());
    return report.valid() ? 0 : 1;
  }
  for (const auto& f : report.findings) {
    std::printf("%s: %s: %s%s%s\n", c.files[0].c_str(),
                f.severity == seccomp::Finding::Severity::kError ? "error" : "warning",
                f.path.c_str(), f.path.empty() ? "" : ": ", f.message.c_str());
  }
  if (report.valid()) {
    std::printf("%s: valid: %zu rules, %zu BPF instructions on %s (of %u the kernel accepts)\n",
                c.files[0].c_str(), report.profile ? report.profile->syscalls.size() : 0,
                report.instructions, NativeArchName().c_str(), BPF_MAXINSNS);
    return 0;
  }
  std::printf("%s: invalid: %zu error%s\n", c.files[0].c_str(), report.errors(),
              report.errors() == 1 ? "" : "s");
  return 1;
}

int Explain(const std::vector<std::string>& args) {
  Common c;
  if (auto rc = ParseCommon(args, &c)) return *rc;
  if (c.files.size() != 1) return Usage("explain takes one FILE");
  if (c.syscall.empty() && !c.bpf) return Usage("explain needs --syscall NAME (or --bpf)");
  auto loaded = LoadAndCompile(c.files[0], c.compile);
  if (!loaded.ok()) {
    std::fprintf(stderr, "sandboxd seccomp explain: %s\n", loaded.error().ToString().c_str());
    return 1;
  }
  json j = json::object();
  if (!c.syscall.empty()) {
    auto ex = seccomp::Explain(loaded->profile, loaded->program, c.syscall, c.args, c.compile);
    if (!ex.ok()) return Usage(ex.error().message);
    std::string args_text;
    for (size_t i = 0; i < ex->args.size(); ++i) {
      args_text += fmt::format("{}{:#x}", i ? ", " : "", ex->args[i]);
    }
    std::string conds = seccomp::FormatConditions(ex->conditions);
    if (c.json) {
      j["syscall"] = ex->syscall;
      j["nr"] = ex->nr;
      j["args"] = ex->args;
      j["action"] = seccomp::ActionName(ex->action);
      if (ex->rule_index) {
        json conditions = json::array();
        for (const auto& cmp : ex->conditions) conditions.push_back(seccomp::FormatCondition(cmp));
        j["rule"] = {{"index", *ex->rule_index},
                     {"path", ex->rule_path},
                     {"names", ex->rule_names},
                     {"conditions", conditions},
                     {"comment", ex->comment}};
      } else {
        j["rule"] = nullptr;
      }
      j["agrees"] = ex->agrees;
      if (!ex->note.empty()) j["note"] = ex->note;
      j["inapplicable_rules"] = ex->inapplicable_rules;
      j["unmatched_rules"] = ex->unmatched_rules;
    } else {
      std::printf("%s (nr %d on %s) with args %s: %s\n", ex->syscall.c_str(), ex->nr,
                  NativeArchName().c_str(), args_text.c_str(),
                  seccomp::ActionName(ex->action).c_str());
      if (ex->rule_index) {
        std::string names;
        for (size_t i = 0; i < ex->rule_names.size() && i < 8; ++i) {
          names += (i ? ", " : "") + ex->rule_names[i];
        }
        if (ex->rule_names.size() > 8) {
          names += fmt::format(", … ({} names)", ex->rule_names.size());
        }
        std::printf("  decided by %s (rule %zu): names [%s]; conditions: %s\n",
                    ex->rule_path.c_str(), *ex->rule_index, names.c_str(), conds.c_str());
        if (!ex->comment.empty()) std::printf("  comment: %s\n", ex->comment.c_str());
      } else if (ex->agrees) {
        std::printf("  decided by defaultAction: no applicable rule matches\n");
      }
      for (size_t i : ex->unmatched_rules) {
        std::printf("  syscalls[%zu] names it; its conditions do not hold for these args: %s\n", i,
                    seccomp::FormatConditions(loaded->profile.syscalls[i].args).c_str());
      }
      for (size_t i : ex->inapplicable_rules) {
        std::printf(
            "  syscalls[%zu] names it but does not apply here (includes/excludes; "
            "caps given: %zu)\n",
            i, c.compile.caps.size());
      }
      if (!ex->agrees) std::printf("  note: %s\n", ex->note.c_str());
    }
  }
  if (c.bpf) {
    if (c.json) {
      j["bpf"] = seccomp::Disassemble(loaded->program);
    } else {
      std::printf("%s", seccomp::Disassemble(loaded->program).c_str());
    }
  }
  if (c.json) std::puts(j.dump(2).c_str());
  return 0;
}

int Diff(const std::vector<std::string>& args) {
  Common c;
  if (auto rc = ParseCommon(args, &c)) return *rc;
  if (c.files.size() != 2) return Usage("diff takes two profiles: A B");
  auto a = LoadAndCompile(c.files[0], c.compile);
  if (!a.ok()) {
    std::fprintf(stderr, "sandboxd seccomp diff: %s\n", a.error().ToString().c_str());
    return kExitUsage;
  }
  auto b = LoadAndCompile(c.files[1], c.compile);
  if (!b.ok()) {
    std::fprintf(stderr, "sandboxd seccomp diff: %s\n", b.error().ToString().c_str());
    return kExitUsage;
  }
  auto entries = seccomp::DiffProfiles(a->profile, a->program, b->profile, b->program);
  if (c.json) {
    json arr = json::array();
    for (const auto& e : entries) {
      arr.push_back({{"what", e.what}, {"a", e.a}, {"b", e.b}, {"rules", e.rules}});
    }
    json j = {
        {"a", c.files[0]}, {"b", c.files[1]}, {"same", entries.empty()}, {"differences", arr}};
    std::puts(j.dump(2).c_str());
  } else {
    std::printf("--- %s\n+++ %s\n", c.files[0].c_str(), c.files[1].c_str());
    for (const auto& e : entries) {
      std::printf("%s: %s -> %s\n", e.what.c_str(), e.a.c_str(), e.b.c_str());
      for (const auto& r : e.rules) std::printf("    %s\n", r.c_str());
    }
    if (entries.empty()) std::printf("same: every syscall gets the same action\n");
  }
  return entries.empty() ? 0 : 1;
}

Status WriteOut(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return Ok();
  }
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return ErrnoError("open {}", tmp);
  SBX_TRY(WriteAll(fd.get(), text));
  if (::rename(tmp.c_str(), path.c_str()) < 0) return ErrnoError("rename {} to {}", tmp, path);
  return Ok();
}

int Learn(const std::vector<std::string>& args) {
  std::string out_file = "-", base_file;
  std::vector<std::string> exec_args;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "-o" || a == "--output") && i + 1 < args.size()) {
      out_file = args[++i];
    } else if (a == "--profile" && i + 1 < args.size()) {
      base_file = args[++i];
    } else if (a == "-o" || a == "--output" || a == "--profile") {
      return Usage(a + " needs a value");
    } else {
      break;
    }
  }
  exec_args.assign(args.begin() + static_cast<long>(i), args.end());
  auto parsed = ParseExecArgs(exec_args);
  if (!parsed.ok()) return Usage(parsed.error().ToString());
  ExecOptions& o = *parsed;
  if (o.process.argv.empty()) return Usage("learn needs a command after --");
  if (!o.seccomp.empty()) return Usage("learn sets the filter itself; use --profile BASE");
  if (!seccomp::NotifySupported()) {
    std::fprintf(stderr,
                 "sandboxd seccomp learn: this kernel lacks seccomp user notification "
                 "with continue (Linux 5.5)\n");
    return 125;
  }

  // The base: BASE, or an empty allowlist (every syscall refused, so every one is recorded).
  std::string base_text = R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1})";
  std::string base_name = "learn";
  if (!base_file.empty()) {
    auto src = ReadProfile(base_file);
    if (!src.ok()) return Usage(src.error().ToString());
    base_text = std::move(src->text);
    base_name = src->name;
  }
  auto base = seccomp::ParseProfile(base_text, base_name);
  if (!base.ok()) {
    std::fprintf(stderr, "sandboxd seccomp learn: %s\n", base.error().ToString().c_str());
    return 125;
  }
  seccomp::CompileOptions copts;
  copts.notify_errors = true;
  auto program = seccomp::Compile(*base, copts);
  if (!program.ok()) {
    std::fprintf(stderr, "sandboxd seccomp learn: %s\n", program.error().ToString().c_str());
    return 125;
  }
  program->notify = seccomp::NotifyMode::kLearn;
  program->profile_name = "learning:" + base_name;
  o.sandbox.seccomp = std::move(*program);
  o.sandbox.id = fmt::format("learn{}", ::getpid());
  if (o.interactive) o.process.stdin_fd = STDIN_FILENO;
  spdlog::warn("seccomp learn: the command runs with every syscall allowed");

  auto driver = cgroup::Driver::Open(cgroup::DriverOptions{o.cgroup_parent});
  if (!driver.ok()) {
    std::fprintf(stderr, "sandboxd seccomp learn: cgroup: %s\n", driver.error().ToString().c_str());
    return 125;
  }
  auto sb = isolate::Sandbox::Create(o.sandbox, **driver);
  if (!sb.ok()) {
    std::fprintf(stderr, "sandboxd seccomp learn: %s\n", sb.error().ToString().c_str());
    return 125;
  }
  auto sink = [&](int stream, std::string_view data) {
    // The profile may go to stdout: the command's output goes to stderr then.
    int fd = stream == 1 && out_file != "-" ? STDOUT_FILENO : STDERR_FILENO;
    (void)WriteAll(fd, data);
  };
  auto run = (*sb)->Run(o.process, sink);
  if (Status st = (*sb)->Destroy(); !st.ok()) {
    spdlog::warn("sandbox {}: cleanup: {}", o.sandbox.id, st.error().ToString());
  }
  if (!run.ok()) {
    std::fprintf(stderr, "sandboxd seccomp learn: %s\n", run.error().ToString().c_str());
    return 125;
  }
  if (run->reason == isolate::EndReason::kSetupFailed) {
    std::fprintf(stderr, "sandboxd seccomp learn: setup failed: %s\n",
                 run->error ? run->error->message.c_str() : "");
    return 125;
  }
  // Names of the native ABI only: a learned profile lists native names.
  std::set<std::string> names;
  for (const auto& s : run->seccomp_learned) {
    if (s.name.rfind("syscall_", 0) != 0) names.insert(s.name);
  }
  json doc;
  if (!base_file.empty()) {
    doc = json::parse(base_text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) doc = json::object();
    // What BASE refused with an error and the command needed is allowed now: take those names
    // out of BASE's error rules, or libseccomp would have to choose between the two rules.
    if (auto it = doc.find("syscalls"); it != doc.end() && it->is_array()) {
      json kept = json::array();
      for (json rule : *it) {
        if (rule.is_object() && rule.value("action", "") == "SCMP_ACT_ERRNO") {
          if (auto n = rule.find("names"); n != rule.end() && n->is_array()) {
            json left = json::array();
            for (const auto& name : *n) {
              if (!name.is_string() || !names.count(name.get<std::string>())) left.push_back(name);
            }
            *n = std::move(left);
            if (n->empty()) continue;
          }
          if (auto n = rule.find("name"); n != rule.end() && n->is_string() &&
                                          names.count(n->get<std::string>())) {
            continue;
          }
        }
        kept.push_back(std::move(rule));
      }
      *it = std::move(kept);
    }
    if (!names.empty()) {
      doc["syscalls"].push_back({{"names", names},
                                 {"action", "SCMP_ACT_ALLOW"},
                                 {"comment", "learned by sandboxd seccomp learn"}});
    }
  } else {
    doc = json::object();
    doc["defaultAction"] = "SCMP_ACT_ERRNO";
    doc["defaultErrnoRet"] = 1;
    doc["architectures"] = json::array({NativeArchName()});
    doc["syscalls"] = json::array();
    if (!names.empty()) {
      doc["syscalls"].push_back({{"names", names}, {"action", "SCMP_ACT_ALLOW"}});
    }
  }
  // With a BASE, an added name may clash with one of BASE's own rules: say so.
  std::string text = doc.dump(2) + "\n";
  seccomp::ValidateOptions vo;
  vo.allow_permissive = !base_file.empty();
  seccomp::ValidateReport check = seccomp::ValidateProfile(text, "learned", vo);
  for (const auto& f : check.findings) {
    if (f.severity != seccomp::Finding::Severity::kError) continue;
    std::fprintf(stderr, "sandboxd seccomp learn: the learned profile: %s%s%s\n", f.path.c_str(),
                 f.path.empty() ? "" : ": ", f.message.c_str());
  }
  if (Status st = WriteOut(out_file, text); !st.ok()) {
    std::fprintf(stderr, "sandboxd seccomp learn: %s\n", st.error().ToString().c_str());
    return 125;
  }
  std::fprintf(stderr, "sandboxd seccomp learn: %zu syscalls%s%s\n", names.size(),
               out_file == "-" ? "" : " written to ", out_file == "-" ? "" : out_file.c_str());
  return run->ShellExitCode();
}

}  // namespace

int SeccompCommand(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string& sub = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (sub == "-h" || sub == "--help" || sub == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (sub == "validate") return Validate(rest);
  if (sub == "explain") return Explain(rest);
  if (sub == "diff") return Diff(rest);
  if (sub == "learn") return Learn(rest);
  return Usage(fmt::format("unknown command '{}'", sub));
}

}  // namespace sbx::supervisor
