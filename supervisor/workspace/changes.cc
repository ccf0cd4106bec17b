// Change sets: the manifest's JSON, and writing a set into the host directory. Every host path
// is reached from the workspace's fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_XDEV) (workspace_fs.h), so a symbolic link or a mount point planted anywhere on the
// way fails the lookup instead of being followed.
#include "supervisor/workspace/changes.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "base/fs.h"
#include "base/sha256.h"
#include "supervisor/workspace/workspace_fs.h"

namespace sbx::supervisor {

using internal::EscapeName;
using internal::HashFd;
using internal::IsCleanName;
using internal::ListDir;
using internal::OpenBeneath;
using nlohmann::json;

namespace {

constexpr char kManifest[] = "changes.json";
constexpr size_t kMaxManifestBytes = 256u << 20;


Result<ChangeBase::Kind> ParseBaseKind(const std::string& s) {
  for (auto k : {ChangeBase::Kind::kAbsent, ChangeBase::Kind::kFile, ChangeBase::Kind::kSymlink,
                 ChangeBase::Kind::kDir}) {
    if (s == ChangeBaseKindName(k)) return k;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "base kind '{}' is not one of absent, file, "
                   "symlink, dir",
                   s);
}

Result<ChangeEntry::Op> ParseOp(const std::string& s) {
  for (auto op : {ChangeEntry::Op::kMakeDir, ChangeEntry::Op::kWrite, ChangeEntry::Op::kDelete,
                  ChangeEntry::Op::kRemoveDir}) {
    if (s == ChangeOpName(op)) return op;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "op '{}' is not one of make_dir, write, delete, "
                   "remove_dir",
                   s);
}

// A relative path of clean, non-empty components other than "." and "..".
bool WellFormedPath(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.back() == '/' || !IsCleanName(p)) return false;
  size_t start = 0;
  for (;;) {
    size_t slash = p.find('/', start);
    std::string_view part(p.data() + start,
                          (slash == std::string::npos ? p.size() : slash) - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

std::string Parent(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? std::string() : p.substr(0, slash);
}
std::string Leaf(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// The directory `rel` ("" is the workspace itself) beneath the workspace, or -1 and errno.
int OpenDir(int ws, const std::string& rel) {
  return OpenBeneath(ws, rel.empty() ? "." : rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                     /*same_mount=*/true);
}

std::string WhyUnreachable(int err) {
  switch (err) {
    case ELOOP:
      return "a symbolic link on the host is in the way";
    case EXDEV:
      return "a mount point on the host is in the way";
    case ENOTDIR:
      return "a part of the path on the host is not a directory";
    case ENOENT:
      return "gone from the host";
    default:
      return fmt::format("cannot be looked up on the host: {}", std::strerror(err));
  }
}

// Why the directory `rel` beneath the workspace cannot be opened (errno `err`): O_NOFOLLOW with
// O_DIRECTORY answers ENOTDIR for a symbolic link, which is worth saying as such.
std::string WhyNotADirectory(int ws, const std::string& rel, int err) {
  if (err == ENOTDIR) {
    UniqueFd path(OpenBeneath(ws, rel, O_PATH | O_NOFOLLOW, /*same_mount=*/true));
    struct stat st;
    if (path && ::fstat(path.get(), &st) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
  }
  return WhyUnreachable(err);
}

// Checks a set against the host and writes it. One instance per ApplyChangeSet call.
class Applier {
 public:
  Applier(int ws, const std::string& changes_dir, const ChangeSet& set, uid_t uid, gid_t gid)
      : ws_(ws), changes_dir_(changes_dir), set_(set), owner_uid_(uid), owner_gid_(gid) {
    for (const ChangeEntry& e : set.entries) {
      if (e.op == ChangeEntry::Op::kDelete || e.op == ChangeEntry::Op::kRemoveDir) {
        removed_.insert(e.path);
      }
      if (e.op == ChangeEntry::Op::kMakeDir) made_.insert(e.path);
    }
  }

  Status CheckBlobs() {
    for (const ChangeEntry& e : set_.entries) {
      if (e.op != ChangeEntry::Op::kWrite) continue;
      auto fd = OpenBlob(e);
      if (!fd.ok()) return std::move(fd).error();
      uint64_t size = 0;
      auto digest = HashFd(fd->get(), -1, &size);
      if (!digest.ok()) return WithContext(std::move(digest).error(), e.blob);
      if (*digest != e.sha256 || size != e.size) {
        return MakeError(ErrorCode::kInternal,
                         "the kept content of {} ({}) is not what the run wrote: the change set "
                         "was damaged; it cannot be applied",
                         e.path, e.blob);
      }
    }
    return Ok();
  }

  std::vector<ApplyConflict> Check() {
    std::vector<ApplyConflict> out;
    for (const ChangeEntry& e : set_.entries) {
      std::string why = CheckOne(e);
      if (!why.empty()) out.push_back({e.path, std::move(why)});
    }
    return out;
  }

  Result<ApplyReport> Write() {
    ApplyReport r;
    std::vector<const ChangeEntry*> deletes, rmdirs, mkdirs, writes;
    for (const ChangeEntry& e : set_.entries) {
      switch (e.op) {
        case ChangeEntry::Op::kDelete:
          deletes.push_back(&e);
          break;
        case ChangeEntry::Op::kRemoveDir:
          rmdirs.push_back(&e);
          break;
        case ChangeEntry::Op::kMakeDir:
          mkdirs.push_back(&e);
          break;
        case ChangeEntry::Op::kWrite:
          writes.push_back(&e);
          break;
      }
    }
    // Deepest first: a directory is empty by the time it is removed.
    std::sort(rmdirs.begin(), rmdirs.end(), [](const ChangeEntry* a, const ChangeEntry* b) {
      return std::count(a->path.begin(), a->path.end(), '/') >
             std::count(b->path.begin(), b->path.end(), '/');
    });
    auto failed = [&](const ChangeEntry& e, const char* what) {
      return MakeError(ErrorCode::kInternal,
                       "{} {}: {}; {} change(s) of {} were written before it (the host directory "
                       "is part-way applied; the audit trail lists the set)",
                       what, e.path, std::strerror(errno),
                       r.files_deleted + r.dirs_removed + r.dirs_made + r.files_written,
                       set_.entries.size());
    };
    for (const ChangeEntry* e : deletes) {
      UniqueFd parent(OpenDir(ws_, Parent(e->path)));
      if (!parent || ::unlinkat(parent.get(), Leaf(e->path).c_str(), 0) < 0) {
        if (errno != ENOENT) return failed(*e, "removing");
      }
      ++r.files_deleted;
    }
    for (const ChangeEntry* e : rmdirs) {
      UniqueFd parent(OpenDir(ws_, Parent(e->path)));
      if (!parent || ::unlinkat(parent.get(), Leaf(e->path).c_str(), AT_REMOVEDIR) < 0) {
        if (errno != ENOENT) return failed(*e, "removing the directory");
      }
      ++r.dirs_removed;
    }
    for (const ChangeEntry* e : mkdirs) {
      UniqueFd parent(OpenDir(ws_, Parent(e->path)));
      if (!parent) return failed(*e, "opening the directory of");
      if (::mkdirat(parent.get(), Leaf(e->path).c_str(), 0700) < 0) {
        return failed(*e, "making the directory");
      }
      UniqueFd dir(OpenDir(ws_, e->path));
      // The mode after the owner: fchown clears no bits of a directory, but the order is the
      // safe one for files and kept here alike.
      if (!dir || ::fchown(dir.get(), owner_uid_, owner_gid_) < 0 ||
          ::fchmod(dir.get(), e->mode & 0777) < 0) {
        return failed(*e, "setting the owner and mode of");
      }
      ++r.dirs_made;
    }
    for (const ChangeEntry* e : writes) {
      SBX_TRY(WriteFile(*e, r));
      ++r.files_written;
    }
    return r;
  }

 private:
  Result<UniqueFd> OpenBlob(const ChangeEntry& e) const {
    if (e.blob.rfind("blobs/", 0) != 0 || e.blob.find('/', 6) != std::string::npos ||
        e.blob.size() == 6) {
      return MakeError(ErrorCode::kInternal, "{}: blob name '{}' is not blobs/<n>", e.path, e.blob);
    }
    UniqueFd dir(::open(changes_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return ErrnoError("open {}", changes_dir_);
    UniqueFd fd(OpenBeneath(dir.get(), e.blob, O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) {
      return ErrnoError("open {}/{}", changes_dir_, e.blob);
    }
    return fd;
  }

  // "" when the host is as the set needs it for this entry; else why not.
  std::string CheckOne(const ChangeEntry& e) {
    if (e.base.changed_during_run) return "changed on the host while the run ran";
    const bool creates =
        e.op == ChangeEntry::Op::kMakeDir ||
        (e.op == ChangeEntry::Op::kWrite && e.base.kind == ChangeBase::Kind::kAbsent);
    // The directories on the way: each a directory on the host now, unless the set makes it
    // (then everything below it is new too).
    std::string parent = Parent(e.path);
    std::vector<std::string> ancestors;
    for (std::string p = parent; !p.empty(); p = Parent(p)) ancestors.push_back(p);
    std::reverse(ancestors.begin(), ancestors.end());
    bool new_below = false;
    for (const std::string& a : ancestors) {
      if (made_.count(a) != 0) {
        new_below = true;
        break;
      }
      UniqueFd d(OpenDir(ws_, a));
      if (!d) return WhyNotADirectory(ws_, a, errno) + " (" + a + ")";
    }
    if (new_below) return creates ? std::string() : "its directory is made by the run";
    UniqueFd dir(OpenDir(ws_, parent));
    if (!dir) return WhyUnreachable(errno);
    struct stat st;
    const bool exists = ::fstatat(dir.get(), Leaf(e.path).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) return WhyUnreachable(errno);
    if (creates) {
      if (!exists || removed_.count(e.path) != 0) return {};
      return "made on the host since the run started";
    }
    if (!exists) return "gone from the host";
    switch (e.base.kind) {
      case ChangeBase::Kind::kAbsent:
        return "the run found nothing here";
      case ChangeBase::Kind::kDir: {
        if (!S_ISDIR(st.st_mode)) return "no longer a directory on the host";
        if (e.op != ChangeEntry::Op::kRemoveDir) return {};
        UniqueFd sub(OpenDir(ws_, e.path));
        if (!sub) return WhyUnreachable(errno);
        auto names = ListDir(sub.get());
        if (!names.ok()) return names.error().message;
        for (const std::string& n : *names) {
          if (removed_.count(e.path + "/" + n) == 0) {
            return fmt::format("holds {} on the host, which the run did not remove", EscapeName(n));
          }
        }
        return {};
      }
      case ChangeBase::Kind::kSymlink: {
        if (!S_ISLNK(st.st_mode)) return "no longer the symbolic link the run found";
        char buf[4096];
        ssize_t n = ::readlinkat(dir.get(), Leaf(e.path).c_str(), buf, sizeof buf);
        if (n < 0 || std::string_view(buf, static_cast<size_t>(n)) != e.base.target) {
          return "the symbolic link points elsewhere now";
        }
        return {};
      }
      case ChangeBase::Kind::kFile: {
        if (S_ISLNK(st.st_mode)) return "a symbolic link on the host now";
        if (!S_ISREG(st.st_mode)) return "no longer a regular file on the host";
        if ((st.st_mode & 07777) != e.base.mode) {
          return fmt::format("its mode on the host is {:o} now, not {:o}", st.st_mode & 07777,
                             e.base.mode);
        }
        UniqueFd fd(OpenBeneath(dir.get(), Leaf(e.path),
                                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, true));
        if (!fd) return WhyUnreachable(errno);
        uint64_t size = 0;
        auto digest = HashFd(fd.get(), -1, &size);
        if (!digest.ok()) return digest.error().message;
        if (*digest != e.base.sha256) return "changed on the host since the run started";
        return {};
      }
    }
    return {};
  }

  Status WriteFile(const ChangeEntry& e, const ApplyReport& r) {
    auto fail = [&](const char* what) {
      return MakeError(ErrorCode::kInternal,
                       "{} {}: {}; {} change(s) of {} were written before it (the host directory "
                       "is part-way applied; the audit trail lists the set)",
                       what, e.path, std::strerror(errno),
                       r.files_deleted + r.dirs_removed + r.dirs_made + r.files_written,
                       set_.entries.size());
    };
    UniqueFd parent(OpenDir(ws_, Parent(e.path)));
    if (!parent) return fail("opening the directory of");
    const std::string leaf = Leaf(e.path);
    uid_t uid = owner_uid_;
    gid_t gid = owner_gid_;
    struct stat st;
    if (::fstatat(parent.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISREG(st.st_mode)) {
        errno = EEXIST;
        return fail("replacing (no longer a regular file)");
      }
      uid = st.st_uid;  // a replaced file keeps its owner
      gid = st.st_gid;
    }
    uint64_t rnd = 0;
    if (::getrandom(&rnd, sizeof rnd, 0) != sizeof rnd) return fail("naming a file beside");
    std::string tmp = fmt::format(".{}.sbx-apply-{:016x}", leaf, rnd);
    if (tmp.size() > 255) tmp = fmt::format(".sbx-apply-{:016x}", rnd);
    UniqueFd out(::openat(parent.get(), tmp.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return fail("writing beside");
    auto drop = [&] { ::unlinkat(parent.get(), tmp.c_str(), 0); };
    auto blob = OpenBlob(e);
    if (!blob.ok()) {
      drop();
      return std::move(blob).error();
    }
    uint64_t size = 0;
    auto digest = HashFd(blob->get(), out.get(), &size);
    if (!digest.ok() || *digest != e.sha256) {
      drop();
      return digest.ok() ? MakeError(ErrorCode::kInternal,
                                     "the kept content of {} changed while "
                                     "it was applied",
                                     e.path)
                         : std::move(digest).error();
    }
    if (::fchown(out.get(), uid, gid) < 0 || ::fchmod(out.get(), e.mode & 0777) < 0 ||
        ::fsync(out.get()) < 0) {
      int err = errno;
      drop();
      errno = err;
      return fail("setting the owner and mode of");
    }
    out.reset();
    if (::renameat(parent.get(), tmp.c_str(), parent.get(), leaf.c_str()) < 0) {
      int err = errno;
      drop();
      errno = err;
      return fail("renaming into place");
    }
    ::fsync(parent.get());
    return Ok();
  }

  int ws_;
  const std::string& changes_dir_;
  const ChangeSet& set_;
  uid_t owner_uid_;
  gid_t owner_gid_;
  std::set<std::string> removed_;  // paths the set deletes or removes
  std::set<std::string> made_;     // directories the set makes
};

}  // namespace

const char* ChangeBaseKindName(ChangeBase::Kind k) {
  switch (k) {
    case ChangeBase::Kind::kAbsent:
      return "absent";
    case ChangeBase::Kind::kFile:
      return "file";
    case ChangeBase::Kind::kSymlink:
      return "symlink";
    case ChangeBase::Kind::kDir:
      return "dir";
  }
  return "absent";
}

const char* ChangeOpName(ChangeEntry::Op op) {
  switch (op) {
    case ChangeEntry::Op::kMakeDir:
      return "make_dir";
    case ChangeEntry::Op::kWrite:
      return "write";
    case ChangeEntry::Op::kDelete:
      return "delete";
    case ChangeEntry::Op::kRemoveDir:
      return "remove_dir";
  }
  return "write";
}

std::string ChangesDir(const std::string& data_dir, std::string_view run_id) {
  return fmt::format("{}/runs/{}/changes", data_dir, run_id);
}

json ChangeSetToJson(const ChangeSet& set) {
  json entries = json::array();
  for (const ChangeEntry& e : set.entries) {
    json base = {{"kind", ChangeBaseKindName(e.base.kind)}};
    if (e.base.kind == ChangeBase::Kind::kFile) {
      base["mode"] = e.base.mode;
      base["sha256"] = e.base.sha256;
    }
    if (e.base.kind == ChangeBase::Kind::kSymlink) base["target"] = e.base.target;
    if (e.base.changed_during_run) base["changed_during_run"] = true;
    json j = {{"path", e.path}, {"op", ChangeOpName(e.op)}, {"base", base}};
    if (e.op == ChangeEntry::Op::kMakeDir || e.op == ChangeEntry::Op::kWrite) j["mode"] = e.mode;
    if (e.op == ChangeEntry::Op::kWrite) {
      j["size"] = e.size;
      j["sha256"] = e.sha256;
      j["blob"] = e.blob;
    }
    entries.push_back(std::move(j));
  }
  json refused = json::array();
  for (const ChangeRefusal& r : set.refused) refused.push_back({{"path", r.path}, {"why", r.why}});
  return {{"version", 1},
          {"entries", std::move(entries)},
          {"refused", std::move(refused)},
          {"total_bytes", set.total_bytes}};
}

Result<ChangeSet> ChangeSetFromJson(const json& j) {
  try {
    if (j.at("version").get<int>() != 1) {
      return MakeError(ErrorCode::kInvalidArgument, "change set version {} is not 1",
                       j.at("version").dump());
    }
    ChangeSet set;
    set.total_bytes = j.at("total_bytes").get<uint64_t>();
    for (const json& r : j.at("refused")) {
      set.refused.push_back({r.at("path").get<std::string>(), r.at("why").get<std::string>()});
    }
    for (const json& x : j.at("entries")) {
      ChangeEntry e;
      e.path = x.at("path").get<std::string>();
      if (!WellFormedPath(e.path)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "change set path '{}' is not a clean "
                         "relative path",
                         EscapeName(e.path));
      }
      auto op = ParseOp(x.at("op").get<std::string>());
      if (!op.ok()) return std::move(op).error();
      e.op = *op;
      const json& b = x.at("base");
      auto kind = ParseBaseKind(b.at("kind").get<std::string>());
      if (!kind.ok()) return std::move(kind).error();
      e.base.kind = *kind;
      e.base.mode = b.value("mode", 0u);
      e.base.sha256 = b.value("sha256", "");
      e.base.target = b.value("target", "");
      e.base.changed_during_run = b.value("changed_during_run", false);
      if (e.op == ChangeEntry::Op::kMakeDir || e.op == ChangeEntry::Op::kWrite) {
        e.mode = x.at("mode").get<uint32_t>() & 0777;
      }
      if (e.op == ChangeEntry::Op::kWrite) {
        e.size = x.at("size").get<uint64_t>();
        e.sha256 = x.at("sha256").get<std::string>();
        e.blob = x.at("blob").get<std::string>();
      }
      set.entries.push_back(std::move(e));
    }
    return set;
  } catch (const json::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, "not a change set: {}", e.what());
  }
}

Result<ChangeSet> LoadChangeSet(const std::string& dir) {
  const std::string path = dir + "/" + kManifest;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "no change set in {}", dir);
    return ErrnoError("open {}", path);
  }
  bool truncated = false;
  auto text = internal::ReadUpTo(fd.get(), kMaxManifestBytes, &truncated);
  if (!text.ok()) return std::move(text).error();
  if (truncated) return MakeError(ErrorCode::kInternal, "{} is larger than any change set", path);
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return MakeError(ErrorCode::kInternal, "{} is not JSON", path);
  auto set = ChangeSetFromJson(j);
  if (!set.ok()) return WithContext(std::move(set).error(), path);
  return set;
}

Status StoreChangeSet(const std::string& dir, const ChangeSet& set) {
  const std::string text = ChangeSetToJson(set).dump(1);
  const std::string path = dir + "/" + kManifest;
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return ErrnoError("create {}", tmp);
  SBX_TRY(WriteAll(fd.get(), text));
  if (::fsync(fd.get()) < 0) return ErrnoError("fsync {}", tmp);
  if (::rename(tmp.c_str(), path.c_str()) < 0) return ErrnoError("rename {}", tmp);
  return Ok();
}

Result<ApplyReport> ApplyChangeSet(int workspace_fd, const std::string& changes_dir,
                                   const ChangeSet& set, uid_t owner_uid, gid_t owner_gid) {
  if (!set.refused.empty()) {
    const ChangeRefusal& r = set.refused.front();
    return MakeError(ErrorCode::kFailedPrecondition, "the run's changes cannot be applied: {}{}{}",
                     r.path, r.path.empty() ? "" : ": ", r.why);
  }
  Applier applier(workspace_fd, changes_dir, set, owner_uid, owner_gid);
  SBX_TRY(applier.CheckBlobs());
  ApplyReport report;
  report.conflicts = applier.Check();
  if (!report.conflicts.empty()) return report;
  return applier.Write();
}

}  // namespace sbx::supervisor
