// Where a run's output lives: <data_dir>/runs/<id>/stdout and stderr, appended as it arrives.
// Each chunk's step.log event records its stream, offset and length (and, through the event's
// ts, when it arrived); the store keeps no copy of the bytes.
#pragma once

#include <string>
#include <string_view>

#include "supervisor/store/store.h"

namespace sbx::supervisor {

// <data_dir>/runs/<run_id>
std::string RunDir(const std::string& data_dir, std::string_view run_id);

// The bytes of a step.log event: read back from the run's log file, or taken from the event's
// data / data_b64 when it carries them (a chunk the log file could not take). "" when the file
// is gone.
std::string LogEventBytes(const store::EventRecord& event, const std::string& data_dir);
// The same bytes appended to *out, read from the log file straight into it.
void AppendLogEventBytes(const store::EventRecord& event, const std::string& data_dir,
                         std::string* out);

}  // namespace sbx::supervisor
