#include "seccomp/internal.h"
#include "seccomp/seccomp.h"

namespace sbx::seccomp {

std::string_view DefaultProfileJson() {
  return std::string_view(internal::kDefaultProfileJson, internal::kDefaultProfileJsonSize);
}

const Profile& DefaultProfile() {
  // Parsed once; the unit tests check that the embedded text parses and compiles. Should it ever
  // fail to parse, the result fails closed: a profile that kills on every syscall, so a broken
  // build cannot run sandboxes without a filter.
  static const Profile* const profile = [] {
    auto parsed = ParseProfile(DefaultProfileJson(), "default");
    if (parsed.ok()) return new Profile(std::move(parsed).value());
    auto* fallback = new Profile;
    fallback->name = "default";
    fallback->default_action = "SCMP_ACT_KILL_PROCESS";
    return fallback;
  }();
  return *profile;
}

}  // namespace sbx::seccomp
