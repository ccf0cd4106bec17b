#include "supervisor/store/wire_json.h"

#include <string>

#include "base/base64.h"
#include "supervisor/store/record_codec.h"

namespace sbx::store {
namespace {

using nlohmann::json;

json TransitionJson(const TransitionWrite& t) {
  json from = json::array();
  for (RunState s : t.from) from.push_back(RunStateName(s));
  json update = json::object();
  const RunUpdate& u = t.update;
  if (u.policy) update["policy"] = *u.policy;
  if (u.approval) update["approval"] = internal::ApprovalJson(*u.approval);
  if (u.limits) update["limits"] = LimitsToJson(*u.limits);
  if (u.node) update["node"] = *u.node;
  if (u.result) update["result"] = internal::RunResultJson(*u.result);
  json j = {{"kind", "transition"},
            {"run_id", t.run_id},
            {"from", std::move(from)},
            {"to", RunStateName(t.to)},
            {"update", std::move(update)}};
  if (t.if_last_event_seq) j["if_last_event_seq"] = *t.if_last_event_seq;
  if (t.if_attempt) j["if_attempt"] = *t.if_attempt;
  return j;
}

template <typename T>
std::optional<T> Opt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}

RunState StateAt(const json& j) {
  auto state = ParseRunState(j.get<std::string>());
  if (!state.ok()) throw std::invalid_argument(state.error().message);
  return *state;
}

Write TransitionFromJson(const json& j) {
  TransitionWrite t;
  t.run_id = j.at("run_id").get<std::string>();
  for (const json& s : j.at("from")) t.from.push_back(StateAt(s));
  t.to = StateAt(j.at("to"));
  const json& u = j.at("update");
  if (auto it = u.find("policy"); it != u.end()) t.update.policy = *it;
  if (auto it = u.find("approval"); it != u.end()) {
    t.update.approval = internal::ApprovalFromJsonValue(*it);
  }
  if (auto it = u.find("limits"); it != u.end()) {
    t.update.limits = internal::LimitsFromJsonValue(*it);
  }
  t.update.node = Opt<std::string>(u, "node");
  if (auto it = u.find("result"); it != u.end()) {
    t.update.result = internal::RunResultFromJson(*it);
  }
  t.if_last_event_seq = Opt<int64_t>(j, "if_last_event_seq");
  t.if_attempt = Opt<int64_t>(j, "if_attempt");
  return t;
}

Write EventFromJson(const json& j) {
  auto type = ParseEventType(j.at("type").get<std::string>());
  if (!type.ok()) throw std::invalid_argument(type.error().message);
  return EventWrite{j.at("run_id").get<std::string>(), *type, j.at("data")};
}

Write AuditFromJson(const json& j) {
  return AuditWrite{j.at("actor").get<std::string>(), j.at("action").get<std::string>(),
                    Opt<std::string>(j, "run_id"), j.at("details")};
}

}  // namespace

json WritesToJson(std::span<const Write> writes) {
  json out = json::array();
  for (const Write& w : writes) {
    if (const auto* t = std::get_if<TransitionWrite>(&w)) {
      out.push_back(TransitionJson(*t));
    } else if (const auto* e = std::get_if<EventWrite>(&w)) {
      out.push_back({{"kind", "event"},
                     {"run_id", e->run_id},
                     {"type", EventTypeName(e->type)},
                     {"data", e->data}});
    } else if (const auto* a = std::get_if<AuditWrite>(&w)) {
      json j = {{"kind", "audit"},
                {"actor", a->actor},
                {"action", a->action},
                {"details", a->details}};
      if (a->run_id) j["run_id"] = *a->run_id;
      out.push_back(std::move(j));
    } else {
      const auto& r = std::get<RunnerAckWrite>(w);
      out.push_back({{"kind", "runner_ack"}, {"runner", r.runner}, {"seq", r.seq}});
    }
  }
  return out;
}

Result<std::vector<Write>> WritesFromJson(const json& writes) {
  if (!writes.is_array()) {
    return MakeError(ErrorCode::kInvalidArgument, "writes: expected an array");
  }
  std::vector<Write> out;
  for (size_t i = 0; i < writes.size(); ++i) {
    const json& j = writes[i];
    try {
      const std::string kind = j.at("kind").get<std::string>();
      if (kind == "transition") {
        out.push_back(TransitionFromJson(j));
      } else if (kind == "event") {
        out.push_back(EventFromJson(j));
      } else if (kind == "audit") {
        out.push_back(AuditFromJson(j));
      } else if (kind == "runner_ack") {
        out.push_back(RunnerAckWrite{j.at("runner").get<std::string>(), j.at("seq").get<int64_t>()});
      } else {
        return MakeError(ErrorCode::kInvalidArgument, "writes[{}]: unknown kind '{}'", i, kind);
      }
    } catch (const std::exception& e) {
      return MakeError(ErrorCode::kInvalidArgument, "writes[{}]: {}", i, e.what());
    }
  }
  return out;
}

Result<json> RunToWire(const RunRecord& run) {
  auto row = internal::EncodeRun(run);
  if (!row.ok()) return std::move(row).error();
  json out = json::array();
  for (const internal::SqlValue& v : *row) {
    if (const auto* i = std::get_if<int64_t>(&v)) {
      out.push_back(*i);
    } else if (const auto* t = std::get_if<std::string>(&v)) {
      out.push_back(*t);
    } else if (const auto* b = std::get_if<internal::Blob>(&v)) {
      out.push_back({{"b64", Base64Encode(b->bytes)}});
    } else {
      out.push_back(nullptr);
    }
  }
  return out;
}

Result<RunRecord> RunFromWire(const json& wire) {
  const auto kinds = internal::RunSelectKinds();
  if (!wire.is_array() || wire.size() + 1 != kinds.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "a run on the wire is an array of {} columns",
                     kinds.size() - 1);
  }
  internal::SqlRow row;
  for (size_t i = 0; i < wire.size(); ++i) {
    const json& v = wire[i];
    if (v.is_null()) {
      row.emplace_back(std::monostate{});
    } else if (kinds[i] == internal::ColumnKind::kInt && v.is_number_integer()) {
      row.emplace_back(v.get<int64_t>());
    } else if (kinds[i] == internal::ColumnKind::kText && v.is_string()) {
      row.emplace_back(v.get<std::string>());
    } else if (kinds[i] == internal::ColumnKind::kBlob && v.is_object() && v.contains("b64") &&
               v["b64"].is_string()) {
      row.emplace_back(internal::Blob{Base64Decode(v["b64"].get<std::string>())});
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "a run on the wire: column {} is malformed",
                       i);
    }
  }
  row.emplace_back(int64_t{0});  // row_no: the sender's, meaningless here
  auto decoded = internal::DecodeRun(row);
  if (!decoded.ok()) return std::move(decoded).error();
  return std::move(decoded->run);
}

}  // namespace sbx::store
