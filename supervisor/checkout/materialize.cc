#include "supervisor/checkout/materialize.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "base/fs.h"
#include "base/unique_fd.h"
#include "supervisor/checkout/libgit2_util.h"
#include "supervisor/checkout/path_util.h"
#include "supervisor/checkout/remove_tree.h"
#include "supervisor/checkout/repo_location.h"

namespace sbx::supervisor::checkout {
namespace {

using internal::GitError;
using internal::GitPtr;

constexpr size_t kMaxSymlinkTarget = 4095;  // PATH_MAX less its NUL

std::string OidHex(const git_oid* oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), oid);
  return buf;
}

Error Invalid(std::string message) {
  return Error{ErrorCode::kInvalidArgument, 0, std::move(message), {}};
}

std::string Where(const std::string& prefix) {
  return prefix.empty() ? "the top of the tree" : "'" + prefix + "'";
}

bool IsDotGit(std::string_view name) {
  if (name.size() != 4) return false;
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == ".git";
}

// A tree entry's name, from a repository: hostile input.
Status CheckName(std::string_view name, const std::string& prefix) {
  if (name.empty()) return Invalid(fmt::format("an entry in {} has an empty name", Where(prefix)));
  if (name == "." || name == "..") {
    return Invalid(fmt::format("the entry '{}' in {} would lead outside the tree; refused", name,
                               Where(prefix)));
  }
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Invalid(
        fmt::format("an entry in {} has '/' or NUL in its name; refused", Where(prefix)));
  }
  if (IsDotGit(name)) {
    return Invalid(fmt::format(
        "the entry '{}' in {} is a git directory; a checkout writes the tree only, so the commit "
        "cannot be checked out",
        name, Where(prefix)));
  }
  return Ok();
}

Error Twice(const std::string& path) {
  return Invalid(fmt::format(
      "'{}' appears twice in its tree (a path through an earlier entry, such as a symlink, is "
      "refused)",
      path));
}

class Writer {
 public:
  Writer(git_repository* repo, git_odb* odb, const MaterializeLimits& limits,
         std::optional<std::pair<uid_t, gid_t>> owner, TreeManifest* manifest)
      : repo_(repo), odb_(odb), limits_(limits), owner_(owner), manifest_(manifest) {}

  // Writes `tree`'s entries into dir_fd; returns how many it wrote there.
  Result<size_t> WriteTree(const git_tree* tree, int dir_fd, const std::string& prefix, int depth) {
    size_t written = 0;
    const size_t count = git_tree_entrycount(tree);
    for (size_t i = 0; i < count; ++i) {
      const git_tree_entry* e = git_tree_entry_byindex(tree, i);
      const std::string_view name = git_tree_entry_name(e);
      SBX_TRY(CheckName(name, prefix));
      std::string path = prefix.empty() ? std::string(name) : prefix + "/" + std::string(name);
      if (++entries_ > limits_.max_entries) {
        return MakeError(ErrorCode::kResourceExhausted,
                         "the tree has more than {} entries; not checked out", limits_.max_entries);
      }
      const std::string cname(name);
      switch (git_tree_entry_filemode(e)) {
        case GIT_FILEMODE_TREE: {
          auto n = WriteSubtree(e, dir_fd, cname, path, depth + 1);
          if (!n.ok()) return std::move(n).error();
          if (*n) ++written;
          break;
        }
        case GIT_FILEMODE_BLOB:
        case GIT_FILEMODE_BLOB_EXECUTABLE:
          SBX_TRY(WriteFile(e, dir_fd, cname, path));
          ++written;
          break;
        case GIT_FILEMODE_LINK:
          SBX_TRY(WriteSymlink(e, dir_fd, cname, path));
          ++written;
          break;
        case GIT_FILEMODE_COMMIT:
          SBX_TRY(WriteGitlink(dir_fd, cname, path));
          ++written;
          break;
        default:
          return Invalid(fmt::format("'{}' has mode {:o}, which git does not write; refused", path,
                                     static_cast<unsigned>(git_tree_entry_filemode_raw(e))));
      }
    }
    return written;
  }

  // Gives a finished file or directory its owner and final mode.
  Status Finish(int fd, mode_t mode, const std::string& path) {
    if (owner_ && ::fchown(fd, owner_->first, owner_->second) != 0) {
      return ErrnoError("chown {} to {}:{}", path, owner_->first, owner_->second);
    }
    if (::fchmod(fd, mode) != 0) return ErrnoError("chmod {}", path);
    return Ok();
  }

 private:
  Result<UniqueFd> MakeDir(int dir_fd, const std::string& name, const std::string& path) {
    if (::mkdirat(dir_fd, name.c_str(), 0700) != 0) {
      if (errno == EEXIST) return Twice(path);
      return ErrnoError("mkdir {}", path);
    }
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return ErrnoError("opening {}", path);
    return fd;
  }

  Result<bool> WriteSubtree(const git_tree_entry* e, int dir_fd, const std::string& name,
                            const std::string& path, int depth) {
    if (depth > limits_.max_depth) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "'{}' is more than {} directories deep; not checked out", path,
                       limits_.max_depth);
    }
    git_tree* raw = nullptr;
    if (git_tree_lookup(&raw, repo_, git_tree_entry_id(e)) != 0) {
      return GitError(ErrorCode::kInvalidArgument, "reading the tree '" + path + "'");
    }
    GitPtr<git_tree> sub(raw);
    auto fd = MakeDir(dir_fd, name, path);
    if (!fd.ok()) return std::move(fd).error();
    auto n = WriteTree(sub.get(), fd->get(), path, depth);
    if (!n.ok()) return std::move(n).error();
    if (*n == 0) {
      // Git cannot track an empty directory; a hostile tree can name one. Not made.
      fd->reset();
      if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) {
        return ErrnoError("removing the empty directory {}", path);
      }
      return false;
    }
    SBX_TRY(Finish(fd->get(), 0755, path));
    return true;
  }

  // The blob `e` names, within the byte budget.
  Result<GitPtr<git_blob>> ReadBlob(const git_tree_entry* e, const std::string& path) {
    size_t size = 0;
    git_object_t type = GIT_OBJECT_INVALID;
    if (git_odb_read_header(&size, &type, odb_, git_tree_entry_id(e)) != 0) {
      return GitError(ErrorCode::kNotFound, "reading the blob of '" + path + "'");
    }
    if (type != GIT_OBJECT_BLOB) {
      return Invalid(
          fmt::format("'{}' names a {}, not a blob; refused", path, git_object_type2string(type)));
    }
    if (size > limits_.max_bytes - bytes_) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "the tree's files hold more than {} bytes; not checked out",
                       limits_.max_bytes);
    }
    bytes_ += size;
    git_blob* raw = nullptr;
    if (git_blob_lookup(&raw, repo_, git_tree_entry_id(e)) != 0) {
      return GitError(ErrorCode::kNotFound, "reading the blob of '" + path + "'");
    }
    return GitPtr<git_blob>(raw);
  }

  Status WriteFile(const git_tree_entry* e, int dir_fd, const std::string& name,
                   const std::string& path) {
    auto blob = ReadBlob(e, path);
    if (!blob.ok()) return std::move(blob).error();
    const auto size = static_cast<size_t>(git_blob_rawsize(blob->get()));
    const std::string_view content(static_cast<const char*>(git_blob_rawcontent(blob->get())),
                                   size);
    UniqueFd fd(
        ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) {
      if (errno == EEXIST) return Twice(path);
      return ErrnoError("creating {}", path);
    }
    if (Status s = WriteAll(fd.get(), content); !s.ok()) {
      return WithContext(std::move(s).error(), path);
    }
    const bool exec = git_tree_entry_filemode(e) == GIT_FILEMODE_BLOB_EXECUTABLE;
    SBX_TRY(Finish(fd.get(), exec ? 0755 : 0644, path));
    manifest_->entries.push_back(
        TreeEntry{path, exec ? kModeExecutable : kModeFile, OidHex(git_tree_entry_id(e)), size});
    return Ok();
  }

  Status WriteSymlink(const git_tree_entry* e, int dir_fd, const std::string& name,
                      const std::string& path) {
    auto blob = ReadBlob(e, path);
    if (!blob.ok()) return std::move(blob).error();
    const auto size = static_cast<size_t>(git_blob_rawsize(blob->get()));
    const std::string target(static_cast<const char*>(git_blob_rawcontent(blob->get())), size);
    if (target.empty() || target.size() > kMaxSymlinkTarget ||
        target.find('\0') != std::string::npos) {
      return Invalid(fmt::format(
          "the symlink '{}' has an empty target, one longer than {} bytes or one with a NUL; "
          "refused",
          path, kMaxSymlinkTarget));
    }
    if (::symlinkat(target.c_str(), dir_fd, name.c_str()) != 0) {
      if (errno == EEXIST) return Twice(path);
      return ErrnoError("symlink {}", path);
    }
    if (owner_ &&
        ::fchownat(dir_fd, name.c_str(), owner_->first, owner_->second, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoError("chown {} to {}:{}", path, owner_->first, owner_->second);
    }
    manifest_->entries.push_back(TreeEntry{path, kModeSymlink, OidHex(git_tree_entry_id(e)), size});
    return Ok();
  }

  Status WriteGitlink(int dir_fd, const std::string& name, const std::string& path) {
    auto fd = MakeDir(dir_fd, name, path);
    if (!fd.ok()) return std::move(fd).error();
    SBX_TRY(Finish(fd->get(), 0755, path));
    manifest_->skipped.push_back(path);
    return Ok();
  }

  git_repository* repo_;
  git_odb* odb_;
  const MaterializeLimits& limits_;
  std::optional<std::pair<uid_t, gid_t>> owner_;
  TreeManifest* manifest_;
  size_t entries_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace

Result<TreeManifest> Materialize(const std::string& mirror, const std::string& sha,
                                 const std::string& dest,
                                 std::optional<std::pair<uid_t, gid_t>> owner,
                                 const MaterializeLimits& limits) {
  if (!IsCommitSha(sha)) {
    return Invalid("a checkout's sha must be a full commit id: 40 lowercase hex digits");
  }
  internal::EnsureLibgit2();
  auto repo = internal::OpenBare(mirror);
  if (!repo.ok()) return std::move(repo).error();
  git_oid oid;
  if (git_oid_fromstr(&oid, sha.c_str()) != 0) return GitError(ErrorCode::kInvalidArgument, sha);
  git_commit* raw_commit = nullptr;
  if (git_commit_lookup(&raw_commit, repo->get(), &oid) != 0) {
    return GitError(ErrorCode::kNotFound,
                    fmt::format("commit {} is not in the mirror {}", sha, mirror));
  }
  GitPtr<git_commit> commit(raw_commit);
  git_tree* raw_tree = nullptr;
  if (git_commit_tree(&raw_tree, commit.get()) != 0) {
    return GitError(ErrorCode::kNotFound, fmt::format("reading the tree of commit {}", sha));
  }
  GitPtr<git_tree> tree(raw_tree);
  git_odb* raw_odb = nullptr;
  if (git_repository_odb(&raw_odb, repo->get()) != 0) {
    return GitError(ErrorCode::kInternal, "opening the mirror's object database");
  }
  GitPtr<git_odb> odb(raw_odb);

  const auto [parent, name] = internal::SplitParent(dest);
  if (name.empty() || name == "." || name == "..") {
    return Invalid(fmt::format("'{}' does not name a directory to make", dest));
  }
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) return ErrnoError("opening {}, the parent of the checkout", parent);
  if (::mkdirat(parent_fd.get(), name.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "{} exists; a checkout is written to a new "
                       "directory",
                       dest);
    }
    return ErrnoError("mkdir {}", dest);
  }
  TreeManifest manifest;
  manifest.commit = sha;
  manifest.tree = OidHex(git_tree_id(tree.get()));
  Status status;
  {
    UniqueFd dest_fd(
        ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dest_fd) {
      status = ErrnoError("opening {}", dest);
    } else {
      Writer writer(repo->get(), odb.get(), limits, owner, &manifest);
      auto written = writer.WriteTree(tree.get(), dest_fd.get(), "", 0);
      status = written.ok() ? writer.Finish(dest_fd.get(), 0755, dest)
                            : Status(std::move(written).error());
    }
  }
  if (!status.ok()) {
    (void)RemoveTreeAt(parent_fd.get(), name);
    return WithContext(std::move(status).error(), fmt::format("checkout of {} into {}", sha, dest));
  }
  return manifest;
}

}  // namespace sbx::supervisor::checkout
