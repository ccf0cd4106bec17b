// The JSON form of the writes of one Commit(), and of a run record: how an outbound runner, which runs against a
// store of its own, sends what it committed to a serve node that commits it into the shared
// store (supervisor/runner/). Every field of each Write is kept, so WritesFromJson(WritesToJson(w))
// == w.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "base/result.h"
#include "supervisor/store/store.h"

namespace sbx::store {

// [{"kind":"transition"|"event"|"audit"|"runner_ack", …}, …].
nlohmann::json WritesToJson(std::span<const Write> writes);
// kInvalidArgument naming the index and the field of a malformed write.
Result<std::vector<Write>> WritesFromJson(const nlohmann::json& writes);

// A whole run record (its request with env and stdin, and what became of it) as JSON: how a
// coordinator hands a run it claimed to its runner. RunFromWire(*RunToWire(r)) == r.
Result<nlohmann::json> RunToWire(const RunRecord& run);
Result<RunRecord> RunFromWire(const nlohmann::json& wire);

}  // namespace sbx::store
