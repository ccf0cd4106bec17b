// A run's artifacts: what it leaves for people and tools once it has ended.
//
//   <data_dir>/runs/<id>/artifacts/report.md     what ran, the policy decision, who approved,
//                                                 timings, resources, how it ended, log tails
//                                  audit.json     every event of the run (step.log events say
//                                                 where their bytes are in the logs) and every
//                                                 audit record that names it
//                                  diff.patch     the copy-on-write workspace's changes (empty
//                                                 otherwise)
//                                  files/…        what the program left in /artifacts
//   <data_dir>/runs/<id>/artifacts.json           the manifest: name, size and sha256 of each
//
// Names are relative paths of non-empty segments, never ".", "..", absolute, or holding NUL or
// control characters; OpenArtifact() refuses anything else and never follows a symlink.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

struct ArtifactInfo {
  std::string name;  // "report.md", "files/out/a.txt"
  uint64_t size = 0;
  std::string sha256;  // lowercase hex
};

// <data_dir>/runs/<id>/artifacts
std::string ArtifactDir(const std::string& data_dir, std::string_view run_id);

// kInvalidArgument with the reason when `name` is not a well-formed artifact name.
Status CheckArtifactName(std::string_view name);

// Size and sha256 of the regular file `name` under the artifact dir (no symlinks followed).
Result<ArtifactInfo> DescribeArtifact(const std::string& data_dir, std::string_view run_id,
                                      std::string_view name);

// Writes `content` as artifact `name` (replacing it) and describes it.
Result<ArtifactInfo> WriteArtifact(const std::string& data_dir, std::string_view run_id,
                                   std::string_view name, std::string_view content);

// An artifact written piece by piece: into "<name>.tmp", hashed and counted on the way, and
// renamed over `name` by Finish(). Dropped unfinished, it leaves the .tmp file and no artifact.
class ArtifactWriter {
 public:
  // A top-level artifact of the run (created, with the artifact dir, if missing).
  static Result<ArtifactWriter> Create(const std::string& data_dir, std::string_view run_id,
                                       std::string_view name);
  ArtifactWriter(ArtifactWriter&&) noexcept;
  ArtifactWriter& operator=(ArtifactWriter&&) noexcept;
  ~ArtifactWriter();

  Status Write(std::string_view data);
  Result<ArtifactInfo> Finish();

 private:
  struct State;
  explicit ArtifactWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The manifest: written once, when the run has ended; empty (not an error) before.
Status WriteManifest(const std::string& data_dir, std::string_view run_id,
                     const std::vector<ArtifactInfo>& artifacts);
// kNotFound only when the run directory itself is missing.
Result<std::vector<ArtifactInfo>> ReadManifest(const std::string& data_dir,
                                               std::string_view run_id);

// Opens artifact `name` for reading: kInvalidArgument for a malformed name, kNotFound when it
// is not a regular file reached without symlinks under the artifact dir.
Result<UniqueFd> OpenArtifact(const std::string& data_dir, std::string_view run_id,
                              std::string_view name);

// report.md for a run that has ended. `stdout_tail`/`stderr_tail` are the last lines of its logs.
std::string RenderReport(const store::RunRecord& run, std::string_view stdout_tail,
                         std::string_view stderr_tail);

// audit.json: {"audit": [...], "events": [...], "run_id"}, the text nlohmann's dump(2) gives
// for that document plus a newline, written piece by piece: `audit` and `events` hand over a
// page of records after the given position (an audit id, a seq) and an empty page at the end,
// so a run with a million events costs the memory of one page, not of a million.
using AuditPager = std::function<Result<std::vector<store::AuditRecord>>(int64_t after_id)>;
using EventPager = std::function<Result<std::vector<store::EventRecord>>(int64_t after_seq)>;
Status WriteAuditDocument(ArtifactWriter& out, std::string_view run_id, const AuditPager& audit,
                          const EventPager& events);
// One record of it, as an object.
nlohmann::json AuditEventJson(const store::EventRecord& event);
nlohmann::json AuditRecordJson(const store::AuditRecord& record);

// The last `max_lines` lines (at most `max_bytes` bytes) of a log file; "" when it is missing.
std::string LogTail(const std::string& path, size_t max_lines, size_t max_bytes);

}  // namespace sbx::supervisor
