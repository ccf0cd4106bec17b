#include "supervisor/review/seccomp_profiles.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "base/fs.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "seccomp/analyze.h"

namespace sbx::supervisor {
namespace {

constexpr size_t kMaxProfiles = 256;
constexpr size_t kMaxProfileBytes = 4 << 20;
constexpr std::string_view kPermissiveSuffix = ".permissive.json";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

Result<LoadedSeccompProfile> Load(std::string text, std::string name, std::string source,
                                  bool accept_permissive) {
  seccomp::ValidateOptions vo;
  vo.allow_permissive = accept_permissive;
  seccomp::ValidateReport report = seccomp::ValidateProfile(text, name, vo);
  for (const auto& f : report.findings) {
    if (f.severity != seccomp::Finding::Severity::kError) continue;
    std::string hint =
        f.path == "defaultAction" && !accept_permissive
            ? fmt::format("; to accept it, name the file {}{}", name, kPermissiveSuffix)
            : "";
    return MakeError(ErrorCode::kInvalidArgument, "{}: {}{}{}{}", source, f.path,
                     f.path.empty() ? "" : ": ", f.message, hint);
  }
  LoadedSeccompProfile p;
  p.name = std::move(name);
  p.source = std::move(source);
  p.sha256 = Sha256Hex(text);
  p.json = std::move(text);
  p.profile = std::move(*report.profile);
  p.instructions = report.instructions;
  p.permissive = seccomp::IsPermissive(p.profile);
  seccomp::CompileOptions o;
  o.notify_errors = seccomp::NotifySupported();
  auto program = seccomp::Compile(p.profile, o);
  if (!program.ok()) return WithContext(std::move(program).error(), p.source);
  p.program = std::move(*program);
  if (o.notify_errors) {
    auto plain = seccomp::Compile(p.profile);
    if (!plain.ok()) return WithContext(std::move(plain).error(), p.source);
    p.plain_program = std::move(*plain);
  } else {
    p.plain_program = p.program;
  }
  return p;
}

}  // namespace

std::shared_ptr<const SeccompProfileSet> SeccompProfileSet::Builtin() {
  auto set = std::make_shared<SeccompProfileSet>();
  set->source_ = "builtin";
  auto p = Load(std::string(seccomp::DefaultProfileJson()), "default", "builtin", false);
  if (p.ok()) set->profiles_.push_back(std::move(*p));
  return set;
}

Result<std::shared_ptr<const SeccompProfileSet>> SeccompProfileSet::LoadDir(
    const std::string& dir) {
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) {
    Error e = ErrnoError("seccomp_profiles_dir {}", dir);
    if (errno == ENOENT) e.code = ErrorCode::kNotFound;
    return e;
  }
  std::vector<std::string> files;
  {
    int fd = ::dup(dfd.get());
    if (fd < 0) return ErrnoError("dup");
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      return ErrnoError("opendir {}", dir);
    }
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.empty() || n[0] == '.' || !EndsWith(n, ".json")) continue;
      files.push_back(std::move(n));
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  if (files.size() > kMaxProfiles) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "{}: {} profiles; at most {} are loaded, remove some", dir, files.size(),
                     kMaxProfiles);
  }
  auto set = std::make_shared<SeccompProfileSet>();
  set->source_ = dir;
  for (const std::string& file : files) {
    bool permissive = EndsWith(file, kPermissiveSuffix);
    std::string name = file.substr(0, file.size() - (permissive ? kPermissiveSuffix.size() : 5));
    std::string path = dir + "/" + file;
    if (!ValidName(name)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{}: \"{}\" is not a profile name; use letters, digits, '-', '_' and '.'",
                       path, name);
    }
    if (set->Find(name) != nullptr) {
      return MakeError(ErrorCode::kInvalidArgument, "{}: a profile named {} is already loaded",
                       path, name);
    }
    struct stat st {};
    // Regular files only: a symlink or a device is not read.
    int fd = ::openat(dfd.get(), file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return ErrnoError("open {}", path);
    UniqueFd owned(fd);
    if (::fstat(fd, &st) < 0) return ErrnoError("stat {}", path);
    if (!S_ISREG(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument, "{}: not a regular file", path);
    }
    if (static_cast<size_t>(st.st_size) > kMaxProfileBytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{}: {} bytes; a profile may have at most 4 MiB, remove rules", path,
                       st.st_size);
    }
    auto text = ReadFileAt(dfd.get(), file, kMaxProfileBytes + 1);
    if (!text.ok()) return WithContext(std::move(text).error(), path);
    auto loaded = Load(std::move(*text), name, path, permissive);
    if (!loaded.ok()) return std::move(loaded).error();
    set->profiles_.push_back(std::move(*loaded));
  }
  if (set->Find("default") == nullptr) {
    auto builtin = Builtin();
    set->profiles_.push_back(builtin->profiles_.front());
  }
  std::sort(set->profiles_.begin(), set->profiles_.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return std::shared_ptr<const SeccompProfileSet>(std::move(set));
}

const LoadedSeccompProfile* SeccompProfileSet::Find(std::string_view name) const {
  if (name.empty()) name = "default";
  for (const auto& p : profiles_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace sbx::supervisor
