// Splitting a path the caller names into its directory and last component. Internal to the
// checkout library.
#pragma once

#include <string>

namespace sbx::supervisor::checkout::internal {

struct ParentAndName {
  std::string parent;  // "." for a bare name, "/" for a name at the root
  std::string name;    // "", "." or ".." when the path names no entry of its own
};

// Trailing slashes are dropped first: "a/b/" is {"a", "b"}.
inline ParentAndName SplitParent(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace sbx::supervisor::checkout::internal
