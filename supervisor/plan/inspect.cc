// InspectProject: the only part of the planner that touches the file system. Every path is
// opened with openat2(2) from the project's directory fd, RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: a symlink in any component fails with ELOOP
// (a symlinked final component too, through O_NOFOLLOW), ".." or an absolute path with EXDEV.
// O_NONBLOCK keeps a FIFO planted in the tree from blocking the open; fstat then refuses
// anything but a regular file before a byte is read.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include "base/syscalls.h"
#include "base/unique_fd.h"
#include "supervisor/plan/project_files.h"
#include "supervisor/plan/project_summary.h"
#include "supervisor/plan/text.h"

namespace sbx::supervisor::plan {
namespace {

constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

// kSkipped: there, but not read (too big, not a regular file, unreadable; noted). kSymlink: a
// symlink, which is not the project's own file (noted).
enum class Found { kAbsent, kPresent, kSkipped, kSymlink };

// Whether a file says something about the project's kind: present, or there but unreadable.
bool Counts(Found f) { return f == Found::kPresent || f == Found::kSkipped; }

struct FileRead {
  Found found = Found::kAbsent;
  std::string text;
};

class Inspector {
 public:
  explicit Inspector(int dir_fd) : dir_fd_(dir_fd) {}

  // Reads `path` when it is a regular file of at most kMaxProjectFileBytes. Absent: nothing
  // said. Anything else that keeps it from being read is a note and kSkipped. An error only
  // when openat2 itself is unavailable.
  Result<FileRead> Read(std::string_view path) {
    FileRead out;
    auto fd = Open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (!fd.ok()) return std::move(fd).error();
    if (!fd->valid()) {
      out.found = last_;
      return out;
    }
    struct stat st;
    if (::fstat(fd->get(), &st) < 0) return ErrnoError("fstat {}", path);
    if (!S_ISREG(st.st_mode)) {
      Note("{}: not a regular file; ignored", path);
      out.found = Found::kSkipped;
      return out;
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxProjectFileBytes) {
      Note("{}: {} bytes, over the {}-byte limit; ignored", path, st.st_size, kMaxProjectFileBytes);
      out.found = Found::kSkipped;
      return out;
    }
    // Read one byte past the limit: a file that grew since fstat is caught too.
    std::string text(static_cast<size_t>(st.st_size) + 1, '\0');
    size_t got = 0;
    while (got < kMaxProjectFileBytes + 1) {
      if (got == text.size()) text.resize(std::min(text.size() * 2, kMaxProjectFileBytes + 1));
      ssize_t n = ::read(fd->get(), text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Note("{}: read failed ({}); ignored", path, std::strerror(errno));
        out.found = Found::kSkipped;
        return out;
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got > kMaxProjectFileBytes) {
      Note("{}: over the {}-byte limit; ignored", path, kMaxProjectFileBytes);
      out.found = Found::kSkipped;
      return out;
    }
    text.resize(got);
    // Every format read here is text; what is not UTF-8 is not read (and so every string the
    // summary records is valid UTF-8, as JSON needs).
    if (!internal::IsValidUtf8(text)) {
      Note("{}: not valid UTF-8; ignored", path);
      out.found = Found::kSkipped;
      return out;
    }
    out.found = Found::kPresent;
    out.text = std::move(text);
    summary_.files_seen.emplace_back(path);
    return out;
  }

  // Whether `path` exists as a regular file (`directory`: as a directory), without reading it.
  Result<bool> Exists(std::string_view path, bool directory = false) {
    auto fd = Open(path, O_PATH | O_NOFOLLOW);
    if (!fd.ok()) return std::move(fd).error();
    if (!fd->valid()) return false;
    struct stat st;
    if (::fstat(fd->get(), &st) < 0) return ErrnoError("fstat {}", path);
    bool ok = directory ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
    if (!ok) {
      if (S_ISLNK(st.st_mode)) {
        Note("{} is a symbolic link; not followed", path);
      } else {
        Note("{}: not a {}; ignored", path, directory ? "directory" : "regular file");
      }
      return false;
    }
    summary_.files_seen.emplace_back(directory ? fmt::format("{}/", path) : std::string(path));
    return true;
  }

  ProjectSummary& summary() { return summary_; }

 private:
  // The fd, or an invalid one when the path is absent or cannot be opened (noted); last_ says
  // which.
  Result<UniqueFd> Open(std::string_view path, int flags) {
    last_ = Found::kAbsent;
    std::string p(path);
    UniqueFd fd(
        sys::Openat2(dir_fd_, p.c_str(), static_cast<uint64_t>(flags) | O_CLOEXEC, 0, kResolve));
    if (fd) return fd;
    int e = errno;
    switch (e) {
      case ENOENT:
      case ENOTDIR:  // a component is a file: "tests/conftest.py" where tests is not a directory
        return UniqueFd();
      case ENOSYS:
      case E2BIG:
        return Error{ErrorCode::kUnavailable, e,
                     "openat2(2) is not available (Linux 5.6 or later is needed, and a seccomp "
                     "filter must allow it); the project cannot be inspected safely without it",
                     p};
      case ELOOP:
        Note("{} is a symbolic link or is reached through one; not followed", path);
        last_ = Found::kSymlink;
        return UniqueFd();
      case EXDEV:
        Note("{}: reached across a mount or outside the directory; not read", path);
        break;
      default:
        Note("{}: cannot be opened ({}); ignored", path, std::strerror(e));
        break;
    }
    last_ = Found::kSkipped;
    return UniqueFd();
  }

  template <typename... Args>
  void Note(fmt::format_string<Args...> f, Args&&... args) {
    summary_.notes.push_back(fmt::format(f, std::forward<Args>(args)...));
  }

  int dir_fd_;
  Found last_ = Found::kAbsent;
  ProjectSummary summary_;
};

constexpr std::array<std::string_view, 9> kRequirementFiles = {
    "requirements.txt",      "requirements-dev.txt",  "requirements-test.txt",
    "requirements_dev.txt",  "requirements_test.txt", "dev-requirements.txt",
    "test-requirements.txt", "requirements/dev.txt",  "requirements/test.txt"};

Status InspectPython(Inspector& in) {
  PythonProject py;
  bool present = false;
  auto read = in.Read("pyproject.toml");
  if (!read.ok()) return std::move(read).error();
  if (Counts(read->found)) present = true;
  if (read->found == Found::kPresent) {
    py.files.push_back("pyproject.toml");
    internal::ReadPyproject(read->text, &py, &in.summary().notes);
  }
  auto setup_py = in.Exists("setup.py");
  if (!setup_py.ok()) return std::move(setup_py).error();
  if (*setup_py) {
    present = true;
    py.files.push_back("setup.py");
  }
  for (std::string_view ini : {"setup.cfg", "tox.ini", "pytest.ini"}) {
    auto r = in.Read(ini);
    if (!r.ok()) return std::move(r).error();
    if (Counts(r->found)) present = true;
    if (r->found != Found::kPresent) continue;
    py.files.emplace_back(ini);
    internal::ReadIniFile(ini, r->text, &py);
  }
  for (std::string_view req : kRequirementFiles) {
    auto r = in.Read(req);
    if (!r.ok()) return std::move(r).error();
    if (Counts(r->found)) present = true;
    if (r->found != Found::kPresent) continue;
    py.files.emplace_back(req);
    internal::ReadRequirements(req, r->text, &py);
  }
  if (!present) return Ok();
  // Markers of tool configuration, checked only for existence.
  struct Marker {
    std::string_view path;
    std::string_view tool;
  };
  for (Marker m :
       {Marker{"conftest.py", "pytest"}, Marker{"tests/conftest.py", "pytest"},
        Marker{"mypy.ini", "mypy"}, Marker{".mypy.ini", "mypy"}, Marker{".flake8", "flake8"},
        Marker{"ruff.toml", "ruff"}, Marker{".ruff.toml", "ruff"}}) {
    auto e = in.Exists(m.path);
    if (!e.ok()) return std::move(e).error();
    if (*e) py.tools.emplace(std::string(m.tool), std::string(m.path));
  }
  for (std::string_view dir : {"tests", "test"}) {
    auto e = in.Exists(dir, /*directory=*/true);
    if (!e.ok()) return std::move(e).error();
    if (*e && !py.tests_dir) {
      py.tests_dir = true;
      py.tools.emplace("pytest", fmt::format("{}/ directory", dir));
    }
  }
  in.summary().python = std::move(py);
  in.summary().kinds.push_back("python");
  return Ok();
}

Status InspectNode(Inspector& in) {
  auto read = in.Read("package.json");
  if (!read.ok()) return std::move(read).error();
  // An oversized or unreadable package.json still says the project is a Node project; a
  // symlinked one is not this project's file.
  if (!Counts(read->found)) return Ok();
  NodeProject node;
  std::string from_field;
  if (read->found == Found::kPresent) {
    internal::ReadPackageJson(read->text, &node, &from_field, &in.summary().notes);
  } else {
    in.summary().notes.push_back(
        "package.json: not read; its scripts and dependencies are unknown");
  }
  struct Lock {
    std::string_view file;
    std::string_view manager;
  };
  std::vector<std::string_view> locks;
  for (Lock l : {Lock{"package-lock.json", "npm"}, Lock{"pnpm-lock.yaml", "pnpm"},
                 Lock{"yarn.lock", "yarn"}}) {
    auto e = in.Exists(l.file);
    if (!e.ok()) return std::move(e).error();
    if (!*e) continue;
    locks.push_back(l.file);
    if (locks.size() == 1) {
      node.package_manager = std::string(l.manager);
      node.package_manager_source = std::string(l.file);
    }
  }
  if (locks.size() > 1) {
    in.summary().notes.push_back(fmt::format("several lockfiles ({}); {} is used, from {}",
                                             fmt::join(locks, ", "), node.package_manager,
                                             node.package_manager_source));
  }
  if (locks.empty() && !from_field.empty()) {
    node.package_manager = from_field;
    node.package_manager_source = "package.json packageManager";
  }
  auto tsconfig = in.Exists("tsconfig.json");
  if (!tsconfig.ok()) return std::move(tsconfig).error();
  node.tsconfig = *tsconfig;
  in.summary().node = std::move(node);
  in.summary().kinds.push_back("node");
  return Ok();
}

}  // namespace

Result<ProjectSummary> InspectProject(int dir_fd) {
  struct stat st;
  if (::fstat(dir_fd, &st) < 0) {
    Error e = ErrnoError("fstat of the project directory fd {}", dir_fd);
    if (errno == EBADF) e.code = ErrorCode::kInvalidArgument;
    return e;
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the project fd {} is not a directory; pass an O_PATH or O_RDONLY fd of the "
                     "project's top directory",
                     dir_fd);
  }
  Inspector in(dir_fd);
  SBX_TRY(InspectPython(in));
  SBX_TRY(InspectNode(in));

  auto cmake = in.Read("CMakeLists.txt");
  if (!cmake.ok()) return std::move(cmake).error();
  if (cmake->found == Found::kPresent) {
    CMakeProject c;
    internal::ReadCMakeLists(cmake->text, &c);
    if (c.add_test_seen && !c.testing_enabled) {
      in.summary().notes.push_back(
          "CMakeLists.txt: add_test() without enable_testing() or include(CTest) at the top; "
          "ctest would find no tests");
    }
    in.summary().cmake = c;
    in.summary().kinds.push_back("cmake");
  }

  for (std::string_view name : {"GNUmakefile", "makefile", "Makefile"}) {
    auto r = in.Read(name);
    if (!r.ok()) return std::move(r).error();
    if (r->found != Found::kPresent) continue;
    MakeProject m;
    m.makefile = std::string(name);
    internal::ReadMakefile(r->text, &m);
    in.summary().make = std::move(m);
    in.summary().kinds.push_back("make");
    break;
  }

  auto cargo = in.Read("Cargo.toml");
  if (!cargo.ok()) return std::move(cargo).error();
  if (cargo->found == Found::kPresent) {
    CargoProject c;
    internal::ReadCargoToml(cargo->text, &c);
    in.summary().cargo = c;
    in.summary().kinds.push_back("cargo");
  }

  auto gomod = in.Read("go.mod");
  if (!gomod.ok()) return std::move(gomod).error();
  if (gomod->found == Found::kPresent) {
    GoProject g;
    internal::ReadGoMod(gomod->text, &g);
    in.summary().go = std::move(g);
    in.summary().kinds.push_back("go");
  }
  return std::move(in.summary());
}

}  // namespace sbx::supervisor::plan
