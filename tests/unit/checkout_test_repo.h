// Repositories for the checkout tests, made with libgit2 (never the git binary): bare and
// non-bare origins, commits of nested files, and raw tree objects that libgit2's treebuilder
// would refuse (hostile names, duplicate entries).
#pragma once

#include <git2.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "supervisor/checkout/remove_tree.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace sbx::supervisor::checkout::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    const char* base = ::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sbx-checkout-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    path_ = tmpl;
  }
  ~TempDir() {
    Status s = RemoveTree(path_);
    if (!s.ok()) ADD_FAILURE() << "removing " << path_ << ": " << s.error().ToString();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const {
    std::string out = path_;
    out += '/';
    out += name;
    return out;
  }

 private:
  std::string path_;
};

// libgit2 1.5 leaks pcre2 match data whenever a config regex does not match an entry (fixed in
// 1.6, libgit2 PR #6382); git_remote_lookup and git_remote_push run such regexes. The library
// avoids them; a test that calls them itself holds one of these so that LeakSanitizer does not
// count libgit2's leak against the test.
class IgnoreLibgit2Leaks {
 public:
  IgnoreLibgit2Leaks() {
#if defined(__SANITIZE_ADDRESS__)
    __lsan_disable();
#endif
  }
  ~IgnoreLibgit2Leaks() {
#if defined(__SANITIZE_ADDRESS__)
    __lsan_enable();
#endif
  }
  IgnoreLibgit2Leaks(const IgnoreLibgit2Leaks&) = delete;
  IgnoreLibgit2Leaks& operator=(const IgnoreLibgit2Leaks&) = delete;
};

inline std::string Hex(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), &oid);
  return buf;
}

inline std::string GitMessage() {
  const git_error* e = git_error_last();
  return e != nullptr && e->message != nullptr ? e->message : "unknown";
}

// One file of a commit: mode 0100644, 0100755, 0120000 (content = target) or 0160000 (content
// = the submodule's commit id in hex).
struct FileSpec {
  std::string path;
  std::string content;
  uint32_t mode = 0100644;
};

// One entry of a raw tree object, written byte for byte.
struct RawEntry {
  std::string mode;  // octal as git writes it: "100644", "40000", "120000", "160000"
  std::string name;
  git_oid oid;
};

class Repo {
 public:
  // Makes a repository at `path` (bare or with a work tree).
  Repo(const std::string& path, bool bare) : path_(path) {
    git_libgit2_init();
    if (git_repository_init(&repo_, path.c_str(), bare ? 1 : 0) != 0) {
      ADD_FAILURE() << "git_repository_init " << path << ": " << GitMessage();
    }
  }
  // Opens the existing bare repository at `path`.
  struct OpenExisting {};
  Repo(const std::string& path, OpenExisting) : path_(path) {
    git_libgit2_init();
    if (git_repository_open_bare(&repo_, path.c_str()) != 0) {
      ADD_FAILURE() << "git_repository_open_bare " << path << ": " << GitMessage();
    }
  }
  ~Repo() {
    // No git_libgit2_shutdown: the library under test keeps libgit2 initialized for good.
    git_repository_free(repo_);
  }
  Repo(const Repo&) = delete;
  Repo& operator=(const Repo&) = delete;

  git_repository* get() const { return repo_; }
  const std::string& path() const { return path_; }

  git_oid Blob(const std::string& content) {
    git_oid oid{};
    if (git_blob_create_from_buffer(&oid, repo_, content.data(), content.size()) != 0) {
      ADD_FAILURE() << "blob: " << GitMessage();
    }
    return oid;
  }

  // A tree of `files`, nested directories made from their paths.
  git_oid Tree(const std::vector<FileSpec>& files) {
    std::map<std::string, std::vector<FileSpec>> subdirs;
    git_treebuilder* tb = nullptr;
    if (git_treebuilder_new(&tb, repo_, nullptr) != 0) ADD_FAILURE() << GitMessage();
    for (const FileSpec& f : files) {
      const size_t slash = f.path.find('/');
      if (slash != std::string::npos) {
        subdirs[f.path.substr(0, slash)].push_back(
            FileSpec{f.path.substr(slash + 1), f.content, f.mode});
        continue;
      }
      git_oid oid{};
      if (f.mode == 0160000) {
        git_oid_fromstr(&oid, f.content.c_str());
      } else {
        oid = Blob(f.content);
      }
      if (git_treebuilder_insert(nullptr, tb, f.path.c_str(), &oid,
                                 static_cast<git_filemode_t>(f.mode)) != 0) {
        ADD_FAILURE() << "insert " << f.path << ": " << GitMessage();
      }
    }
    for (const auto& [name, sub] : subdirs) {
      git_oid oid = Tree(sub);
      if (git_treebuilder_insert(nullptr, tb, name.c_str(), &oid, GIT_FILEMODE_TREE) != 0) {
        ADD_FAILURE() << "insert " << name << ": " << GitMessage();
      }
    }
    git_oid out{};
    if (git_treebuilder_write(&out, tb) != 0) ADD_FAILURE() << "tree: " << GitMessage();
    git_treebuilder_free(tb);
    return out;
  }

  // A tree object written byte for byte: no name checks, entries in the order given.
  git_oid RawTree(const std::vector<RawEntry>& entries) {
    std::string data;
    for (const RawEntry& e : entries) {
      data += e.mode;
      data += ' ';
      data += e.name;
      data += '\0';
      data.append(reinterpret_cast<const char*>(e.oid.id), GIT_OID_RAWSZ);
    }
    git_odb* odb = nullptr;
    git_oid out{};
    if (git_repository_odb(&odb, repo_) != 0 ||
        git_odb_write(&out, odb, data.data(), data.size(), GIT_OBJECT_TREE) != 0) {
      ADD_FAILURE() << "raw tree: " << GitMessage();
    }
    git_odb_free(odb);
    return out;
  }

  // A commit of `tree` whose parent is what `ref` names (when it exists), moving `ref` to it;
  // no ref moves when `ref` is empty. Returns its sha.
  std::string CommitTree(const git_oid& tree_oid, const std::string& message,
                         const std::string& ref = "HEAD") {
    git_signature* sig = nullptr;
    git_signature_new(&sig, "Test", "test@example.invalid", 1700000000 + serial_++, 0);
    git_tree* tree = nullptr;
    if (git_tree_lookup(&tree, repo_, &tree_oid) != 0) ADD_FAILURE() << GitMessage();
    git_commit* parent = nullptr;
    if (!ref.empty()) {
      git_object* obj = nullptr;
      if (git_revparse_single(&obj, repo_, ref.c_str()) == 0) {
        git_commit_lookup(&parent, repo_, git_object_id(obj));
        git_object_free(obj);
      }
    }
    const git_commit* parents[] = {parent};
    git_oid out{};
    if (git_commit_create(&out, repo_, ref.empty() ? nullptr : ref.c_str(), sig, sig, nullptr,
                          message.c_str(), tree, parent != nullptr ? 1 : 0, parents) != 0) {
      ADD_FAILURE() << "commit: " << GitMessage();
    }
    git_commit_free(parent);
    git_tree_free(tree);
    git_signature_free(sig);
    return Hex(out);
  }

  std::string Commit(const std::vector<FileSpec>& files, const std::string& message,
                     const std::string& ref = "HEAD") {
    return CommitTree(Tree(files), message, ref);
  }

  // A lightweight tag refs/tags/<name> on `sha`.
  void Tag(const std::string& name, const std::string& sha) {
    git_oid oid{};
    git_oid_fromstr(&oid, sha.c_str());
    git_reference* ref = nullptr;
    if (git_reference_create(&ref, repo_, ("refs/tags/" + name).c_str(), &oid, 0, nullptr) != 0) {
      ADD_FAILURE() << "tag: " << GitMessage();
    }
    git_reference_free(ref);
  }

 private:
  std::string path_;
  git_repository* repo_ = nullptr;
  int serial_ = 0;
};

}  // namespace sbx::supervisor::checkout::testing
