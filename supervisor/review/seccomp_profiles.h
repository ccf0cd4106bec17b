// The seccomp profiles the daemon offers to runs: the builtin "default" plus every NAME.json in
// seccomp_profiles_dir, each parsed, validated and compiled once. An immutable set: a reload
// builds a new one and swaps it in whole, so a run sees either the old profiles or the new ones.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "seccomp/seccomp.h"

namespace sbx::supervisor {

struct LoadedSeccompProfile {
  std::string name;    // file stem ("strict" for strict.json); "default" for the builtin
  std::string source;  // the file it came from; "builtin"
  std::string json;    // the text as loaded
  std::string sha256;  // of `json`, lowercase hex
  seccomp::Profile profile;
  // Compiled for the sandboxes: with notify_errors where the kernel supports it, so that every
  // denial is named in the run's result.
  seccomp::Program program;
  // The same without notifications: denials answered by the filter alone, for long-lived
  // sandboxes (whose processes run beside each other with no listener).
  seccomp::Program plain_program;
  size_t instructions = 0;  // the filter's length in BPF instructions
  bool permissive = false;  // its defaultAction lets unlisted syscalls run
};

class SeccompProfileSet {
 public:
  // Only the builtin profile.
  static std::shared_ptr<const SeccompProfileSet> Builtin();
  // The builtin profile plus every *.json in `dir` (a default.json replaces the builtin).
  // IMPORTANT: a profile whose defaultAction allows unlisted syscalls is refused unless its file
  // says it is meant, by its name: NAME.permissive.json (the profile is still called NAME).
  // Any file that does not parse, validate or compile fails the whole load with its path and
  // the JSON path of the error: nothing is half-loaded. kNotFound when `dir` does not exist.
  static Result<std::shared_ptr<const SeccompProfileSet>> LoadDir(const std::string& dir);

  // "" and "default" name the default profile; nullptr when there is no such profile.
  const LoadedSeccompProfile* Find(std::string_view name) const;
  // Sorted by name.
  const std::vector<LoadedSeccompProfile>& profiles() const { return profiles_; }
  // The directory, or "builtin".
  const std::string& source() const { return source_; }

 private:
  std::vector<LoadedSeccompProfile> profiles_;
  std::string source_;
};

}  // namespace sbx::supervisor
