// Outbound runners, as the store keeps them (store.h, "Runners").
//
// A runner (`sandboxd runner`) is a node with no listener: it dials out to a serve node, which
// claims runs on its behalf and commits what the runner sends back. It authenticates with a
// token of its own, scoped to its name and revocable; the store keeps only the token's SHA-256.
// Each batch of writes the runner sends carries the number of its outbox entry; the store
// commits an entry once (RunnerAckWrite), however often a dropped link makes the runner send it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::store {

struct RunnerRecord {
  std::string name;          // also its node's name; CheckRunnerName()
  std::string token_sha256;  // 64 lowercase hex digits
  std::string created_by;    // the admin key that issued the current token
  int64_t created_at_ms = 0;  // when the current token was issued
  std::optional<int64_t> revoked_at_ms;
  std::string revoked_by;
  int64_t applied_seq = 0;  // the last outbox entry of the runner committed (0: none)
  bool operator==(const RunnerRecord&) const = default;
};

// A runner's name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit
// (it is a node name and a label value). kInvalidArgument saying so otherwise.
Status CheckRunnerName(std::string_view name);

}  // namespace sbx::store
