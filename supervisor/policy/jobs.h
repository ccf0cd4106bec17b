// Allowlisted jobs: <policy_dir>/jobs.yaml names commands a caller may start by name, with typed
// parameters filled into argv slots, and nothing else. A caller never adds to or changes a
// job's argv; what it gives is checked against each parameter's type (a string against its
// pattern, an integer against its range, an enum against its values) and lands inside the
// argument that names it, never as a new argument and never through a shell.
//
//   jobs:
//     unit-tests:
//       description: The unit tests of one package
//       argv: [make, "test-{package}", "JOBS={jobs}"]
//       params:
//         package: {type: string, pattern: "[a-z][a-z0-9-]{0,31}"}
//         jobs: {type: integer, min: 1, max: 8, default: 2}
//       timeout_s: 600
//       limits: {cpus: 2, memory: 1GiB, pids: 512}
//       workspace: {path: /srv/work/web, mode: ro}     # or project: web
//       keys: [ci-bot]                                 # who may start it; "*": every key
//       review: false                                  # started without a reviewer
//
// A slot is {name} inside an argument; {{ and }} are literal braces. Every slot names a declared
// parameter and every parameter is used. A string's pattern matches the whole value
// (ECMAScript), its value is at most max_length bytes (default 256) and may not start with '-'
// unless allow_leading_dash is true (an option injected where an operand was meant).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::policy {

struct JobParam {
  enum class Type { kString, kInteger, kEnum };
  std::string name;
  Type type = Type::kString;
  std::string description;
  // kString
  std::string pattern;
  std::shared_ptr<const std::regex> compiled;
  size_t max_length = 256;
  bool allow_leading_dash = false;
  // kInteger
  int64_t min = 0;
  int64_t max = INT64_MAX;
  // kEnum
  std::vector<std::string> values;
  std::optional<std::string> default_value;  // as it is filled in; none: required
};

struct Job {
  std::string name;
  std::string description;
  std::vector<std::string> argv;  // with {slots}
  std::vector<JobParam> params;   // in the file's order
  std::optional<int64_t> timeout_s;
  std::optional<double> cpus;
  std::optional<int64_t> memory_bytes;
  std::optional<int64_t> pids;
  std::optional<int64_t> output_bytes;
  std::string workspace_path;         // "" for none
  std::string workspace_mode = "ro";  // "ro" or "cow"
  std::string project;                // "" for none; a project's id or name
  std::vector<std::string> keys;      // API key names, or "*"
  bool review = true;                 // false: started without a reviewer
  int line = 0;                       // where the job starts in the file
};

class JobSet {
 public:
  // <dir>/jobs.yaml; kNotFound when there is none.
  static Result<std::shared_ptr<const JobSet>> LoadDir(const std::string& dir);
  // Errors: kInvalidArgument "source:line: what; what to do" for anything malformed, so a
  // broken file is refused whole.
  static Result<std::shared_ptr<const JobSet>> Parse(std::string_view text,
                                                     const std::string& source);
  static std::shared_ptr<const JobSet> Empty();

  const Job* Find(std::string_view name) const;
  const std::vector<Job>& jobs() const { return jobs_; }
  const std::string& source() const { return source_; }

 private:
  std::vector<Job> jobs_;  // in the file's order
  std::string source_;
};

// Whether `key_name` is one of the job's keys (or the job allows every key).
bool MayStart(const Job& job, std::string_view key_name);

// The job's argv with `params` (a JSON object of parameter values: strings, integers, enum
// names; defaults for those left out) filled into its slots. kInvalidArgument naming the
// parameter for an unknown one, a missing one, a wrong type, a value outside its pattern, range
// or values, a NUL byte.
Result<std::vector<std::string>> InstantiateJob(const Job& job, const nlohmann::json& params);

// The job as GET /v1/jobs shows it: name, description, argv (with its slots), the parameters'
// JSON schema, limits, workspace, project, review and keys.
nlohmann::json JobToJson(const Job& job, const std::string& source);

}  // namespace sbx::policy
