// A client's path to the files API (GET /v1/sandboxes/{id}/files?path=, files:stat, MCP
// file_read …) resolved in a sandbox's root: stat, read and list of whatever path the input is,
// in a small tree whose symlinks point out of it in every way (absolute, relative, through
// "..", a loop). The property: nothing outside the root is ever read or listed. A file beside
// the root holds a marker that must never come back, and the root's parent must never be
// listed.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "supervisor/files/files.h"

namespace {

constexpr std::string_view kMarker = "SECRET-OUTSIDE-THE-ROOT";

struct Tree {
  std::string dir;  // holds root/ and secret
  sbx::files::SandboxRoot root;
};

Tree* MakeTree() {
  char templ[] = "/tmp/sbx-fuzz-files-XXXXXX";
  if (::mkdtemp(templ) == nullptr) std::abort();
  std::string dir = templ;
  std::string r = dir + "/root";
  ::mkdir(r.c_str(), 0755);
  ::mkdir((r + "/dir").c_str(), 0755);
  ::mkdir((r + "/dir/deeper").c_str(), 0755);
  std::ofstream(dir + "/secret") << kMarker;
  std::ofstream(r + "/a.txt") << "inside";
  std::ofstream(r + "/dir/b.txt") << "inside too";
  if (::symlink((dir + "/secret").c_str(), (r + "/abs_out").c_str()) != 0) std::abort();
  if (::symlink("../secret", (r + "/rel_out").c_str()) != 0) std::abort();
  if (::symlink("../../secret", (r + "/dir/rel_out2").c_str()) != 0) std::abort();
  if (::symlink("/", (r + "/to_root").c_str()) != 0) std::abort();
  if (::symlink("..", (r + "/dir/deeper/up").c_str()) != 0) std::abort();
  if (::symlink(dir.c_str(), (r + "/to_parent").c_str()) != 0) std::abort();
  if (::symlink("loop", (r + "/loop").c_str()) != 0) std::abort();
  if (::symlink("/proc/self/root", (r + "/magic").c_str()) != 0) std::abort();
  auto root = sbx::files::SandboxRoot::OpenDirectory(r, {::getuid(), ::getgid()});
  if (!root.ok()) std::abort();
  static std::string to_remove = dir;
  std::atexit([] { std::filesystem::remove_all(to_remove); });
  return new Tree{dir, std::move(*root)};
}

void Check(bool ok, const char* what, std::string_view path) {
  if (ok) return;
  std::fprintf(stderr, "file_path: %s for path '%.*s'\n", what, static_cast<int>(path.size()),
               path.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Tree* tree = MakeTree();
  const std::string_view path(reinterpret_cast<const char*>(data), size);
  (void)tree->root.Stat(path);
  if (auto r = tree->root.Read(path); r.ok()) {
    if (r->file) {
      char buf[128];
      ssize_t n = ::pread(r->file.get(), buf, sizeof buf, 0);
      Check(n < 0 || std::string_view(buf, static_cast<size_t>(n)).find(kMarker) ==
                         std::string_view::npos,
            "read a file outside the root", path);
    }
    if (r->listing) {
      for (const auto& e : r->listing->entries) {
        Check(e.name != "secret" && e.name != "root", "listed the root's parent", path);
      }
    }
  }
  if (auto l = tree->root.List(path); l.ok()) {
    for (const auto& e : l->entries) {
      Check(e.name != "secret" && e.name != "root", "listed the root's parent", path);
    }
  }
  return 0;
}
