// `sandboxctl sandbox create|ls|inspect|rm|pause|resume|approve|reject|logs|watch`
// (docs/sandboxes.md), and the helpers the sandbox commands share (sandbox_commands.h). exec and
// shell are in sandbox_exec.cc, cp in sandbox_cp.cc.
#include "api/sandboxctl/sandbox_commands.h"

#include <unistd.h>

#include <algorithm>

#include "api/sandboxctl/sandbox_args.h"

namespace sbx::ctl {
namespace {

std::string Labels(const nlohmann::json& labels) {
  if (!labels.is_object() || labels.empty()) return "-";
  std::string out;
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    if (!out.empty()) out += ',';
    out += it.key() + "=" +
           (it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
  }
  return out;
}

// "review: memory 2 GiB above allow_within.memory 512 MiB; …" from a policy decision.
std::string PolicyText(const nlohmann::json& policy) {
  if (!policy.is_object()) return "-";
  std::string out = Str(policy, "decision", "-");
  std::string reasons;
  for (const auto& r : policy.value("reasons", nlohmann::json::array())) {
    std::string m = r.is_string() ? r.get<std::string>() : Str(r, "message", r.dump());
    if (!reasons.empty()) reasons += "; ";
    reasons += m;
  }
  if (!reasons.empty()) out += ": " + reasons;
  const auto& rule = policy.value("rule", nlohmann::json());
  if (rule.is_object()) {
    out +=
        fmt::format(" ({}:{} {})", Str(rule, "file", "?"), Int(rule, "line"), Str(rule, "pattern"));
  }
  return out;
}

std::string Time(const nlohmann::json& j, const char* key) {
  return FormatTime(TimestampMs(j, key));
}

void PrintSandbox(const nlohmann::json& s) {
  std::string state = Str(s, "state");
  if (!Str(s, "reason").empty()) state += " (" + Str(s, "reason") + ")";
  std::string backend = Str(s, "backend", "-");
  if (!Str(s, "image").empty()) backend += ", image " + Str(s, "image");
  std::string workspace = "-";
  const auto& w = s.value("workspace", nlohmann::json());
  if (w.is_object()) workspace = Str(w, "path", "?") + " (" + Str(w, "mode", "ro") + ")";
  std::string env = "-";
  const auto& e = s.value("env", nlohmann::json());
  if (e.is_object() && !e.empty()) {
    env.clear();
    for (auto it = e.begin(); it != e.end(); ++it) env += (env.empty() ? "" : " ") + it.key();
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"ID", Str(s, "id")},
      {"State", state},
      {"Submitter", Str(s, "submitter", "-")},
      {"Backend", backend},
      {"Limits", LimitsText(s.value("limits", nlohmann::json()), "memory_bytes")},
      {"Idle timeout", s.contains("idle_timeout_s") && s["idle_timeout_s"].is_number()
                           ? fmt::format("{}s", Int(s, "idle_timeout_s"))
                           : "-"},
      {"Network", Str(s, "network", "-")},
      {"Seccomp", Str(s, "seccomp_profile", "-")},
      {"Workspace", workspace},
      {"Env", env},
      {"Labels", Labels(s.value("labels", nlohmann::json()))},
      {"Policy", PolicyText(s.value("policy", nlohmann::json()))}};
  const auto& approval = s.value("approval", nlohmann::json());
  if (approval.is_object()) {
    rows.push_back({"Approved", fmt::format("by {} at {}", Str(approval, "approved_by", "?"),
                                            Time(approval, "approved_at"))});
  }
  rows.push_back({"Node", Str(s, "node", "-")});
  rows.push_back({"Created", Time(s, "created_at")});
  rows.push_back({"Started", Time(s, "started_at")});
  rows.push_back({"Last activity", Time(s, "last_activity_at")});
  rows.push_back({"Expires", Time(s, "expires_at")});
  rows.push_back({"Ended", Time(s, "ended_at")});
  const auto& st = s.value("stats", nlohmann::json());
  if (st.is_object()) {
    rows.push_back(
        {"CPU time", fmt::format("{:.3f}s", static_cast<double>(Int(st, "cpu_usec")) / 1e6)});
    rows.push_back(
        {"Memory", fmt::format("{} (peak {})", FormatBytes(Int(st, "memory_current_bytes")),
                               FormatBytes(Int(st, "memory_peak_bytes")))});
    rows.push_back({"Pids", std::to_string(Int(st, "pids_current"))});
    rows.push_back({"Processes", std::to_string(Int(st, "processes"))});
    rows.push_back({"Paused", st.value("paused", false) ? "yes" : "no"});
    std::string unavailable;
    for (const auto& u : st.value("unavailable", nlohmann::json::array())) {
      if (!unavailable.empty()) unavailable += ", ";
      unavailable += u.is_string() ? u.get<std::string>() : u.dump();
    }
    if (!unavailable.empty()) rows.push_back({"Stats unavailable", unavailable});
  }
  PrintFacts(rows);
}

// rm / pause / resume / approve / reject: one call per sandbox id given (with `body`, when not
// null).
int SandboxAction(Context& ctx, const ParsedArgs& args, std::string_view method,
                  const std::string& suffix, const char* done,
                  const nlohmann::json* body = nullptr) {
  if (args.positional.empty()) return ReportUsage(ctx, "needs a sandbox ID");
  int status = 0;
  nlohmann::json all = nlohmann::json::array();
  for (const auto& id : args.positional) {
    auto s = ctx.client->CallJson(method, SandboxTarget(id) + suffix, body);
    if (!s.ok()) {
      status = ReportError(ctx, s.error());
      continue;
    }
    if (ctx.json) {
      all.push_back(*s);
    } else {
      (void)WriteOut(1, fmt::format("{} sandbox {} ({})\n", done, id, Str(*s, "state")));
    }
  }
  if (ctx.json && !all.empty()) PrintJson(args.positional.size() == 1 ? all[0] : all);
  return status;
}

// approve / reject (`verb`): the sandboxes given, or with --process PID that process of the one
// sandbox given. `body`: reject's {"reason"}, null for approve.
int SandboxReview(Context& ctx, const ParsedArgs& args, const std::string& verb, const char* done,
                  const nlohmann::json* body) {
  const auto pid = args.Last("process");
  if (!pid) return SandboxAction(ctx, args, "POST", ":" + verb, done, body);
  if (pid->empty()) return ReportUsage(ctx, "--process: give a process id or tag");
  if (args.positional.size() != 1) {
    return ReportUsage(ctx, "--process needs exactly one sandbox ID");
  }
  const std::string& id = args.positional[0];
  auto process = ctx.client->CallJson("POST", ProcessTarget(id, *pid) + ":" + verb, body);
  if (!process.ok()) return ReportError(ctx, process.error());
  if (ctx.json) {
    PrintJson(*process);
  } else {
    (void)WriteOut(1, fmt::format("{} process {} in sandbox {} ({})\n", done, *pid, id,
                                  Str(*process, "state")));
  }
  return 0;
}

// The text of a files:watch event: "created /workspace/a", "moved /a -> /b".
std::string WatchLine(const nlohmann::json& ev) {
  std::string line = Str(ev, "type", "?") + " " + Str(ev, "path");
  if (!Str(ev, "to").empty()) line += " -> " + Str(ev, "to");
  return line + "\n";
}

}  // namespace

std::string SandboxTarget(const std::string& id) { return "/v1/sandboxes/" + PercentEncode(id); }

std::string ProcessTarget(const std::string& id, const std::string& pid) {
  return SandboxTarget(id) + "/processes/" + PercentEncode(pid);
}

std::string ProcessEventsTarget(const std::string& id, const std::string& pid, int64_t after) {
  return ProcessTarget(id, pid) + "/events?after=" + std::to_string(after);
}

std::string ProcessId(const nlohmann::json& process) {
  if (!process.is_object() || !process.contains("id")) return "";
  const auto& id = process["id"];
  return id.is_string() ? id.get<std::string>() : id.is_number_integer() ? id.dump() : "";
}

Status WriteStoredLog(Client& client, const std::string& id, const std::string& pid, int stream,
                      OutputCursor& cursor) {
  const int fd = cursor.fds[static_cast<size_t>(stream)];
  if (fd < 0) return Ok();
  uint64_t& written = cursor.written[static_cast<size_t>(stream)];
  const std::string target = fmt::format("{}/logs?stream={}&offset={}", ProcessTarget(id, pid),
                                         stream == 0 ? "stdout" : "stderr", written);
  auto st = client.Stream(target, [&](std::string_view piece) -> Status {
    SBX_TRY(WriteOut(fd, piece));
    written += piece.size();
    return Ok();
  });
  if (!st.ok()) return std::move(st).error();
  return Ok();
}

Status FollowProcessOutput(Client& client, const std::string& id, const std::string& pid,
                           OutputCursor& cursor, bool* finished,
                           const std::function<void(const nlohmann::json&)>& on_event) {
  *finished = false;
  Status write_error = Ok();
  Status st = client.FollowEvents(
      [&](int64_t after) { return ProcessEventsTarget(id, pid, after); }, 0,
      [&](const nlohmann::json& ev) {
        const std::string type = Str(ev, "type");
        if (on_event) on_event(ev);
        if (type == "process.log") {
          const size_t stream = Str(ev, "stream") == "stderr" ? 1 : 0;
          const std::string data =
              ev.contains("data") ? Str(ev, "data") : Base64Decode(Str(ev, "data_b64"));
          const uint64_t offset = ev.contains("offset") && ev["offset"].is_number_integer() &&
                                          ev["offset"].get<int64_t>() >= 0
                                      ? ev["offset"].get<uint64_t>()
                                      : cursor.written[stream];
          uint64_t& written = cursor.written[stream];
          // Bytes before `written` went out already (from the stored log, or an event seen
          // before a reconnection).
          if (offset + data.size() > written) {
            const size_t skip = offset < written ? static_cast<size_t>(written - offset) : 0;
            if (cursor.fds[stream] >= 0) {
              write_error = WriteOut(cursor.fds[stream], std::string_view(data).substr(skip));
            }
            written = offset + data.size();
          }
          if (!write_error.ok()) return EventAction::kStop;
        }
        if (type == "process.finished") {
          *finished = true;
          return EventAction::kStop;
        }
        return EventAction::kContinue;
      });
  if (!write_error.ok()) return write_error;
  return st;
}

void NoticeProcessReview(const std::string& id, const std::string& pid,
                         const nlohmann::json& process) {
  (void)WriteOut(2, fmt::format("sandboxctl: process {} in sandbox {} is waiting for review ({}); "
                                "a reviewer approves it with:\n  sandboxctl sandbox approve {} "
                                "--process {}\n",
                                pid, id, PolicyText(process.value("policy", nlohmann::json())),
                                ShellQuote(id), ShellQuote(pid)));
}

void NoticeSandboxState(const nlohmann::json& sandbox) {
  const std::string id = Str(sandbox, "id");
  const std::string state = Str(sandbox, "state");
  if (state == "AWAITING_REVIEW") {
    (void)WriteOut(
        2, fmt::format("sandboxctl: sandbox {} is waiting for review ({}); a reviewer "
                       "approves it with:\n  sandboxctl sandbox approve {}\n",
                       id, PolicyText(sandbox.value("policy", nlohmann::json())), ShellQuote(id)));
  } else {
    std::string reason = Str(sandbox, "reason");
    (void)WriteOut(2, fmt::format("sandboxctl: sandbox {} is {}{}\n", id, state,
                                  reason.empty() ? "" : " (" + reason + ")"));
  }
}

int CmdSandboxCreate(Context& ctx, const ParsedArgs& args) {
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd) == nullptr) cwd[0] = '\0';
  auto body = BuildCreateBody(args, cwd, LookupEnv);
  if (!body.ok()) return ReportUsage(ctx, body.error().message);
  auto created = ctx.client->CallCreate("/v1/sandboxes", *body, "a sandbox");
  if (!created.ok()) return ReportError(ctx, created.error());
  const nlohmann::json& sandbox = created->resource;
  const std::string id = Str(sandbox, "id");
  const bool quiet = args.Has("quiet");
  if (!created->created && !quiet) {
    (void)WriteOut(2, fmt::format("sandboxctl: sandbox {} already exists for this idempotency "
                                  "key\n",
                                  id));
  }
  if (ctx.json) {
    PrintJson(sandbox);
    return 0;
  }
  (void)WriteOut(1, id + "\n");
  if (Str(sandbox, "state") != "RUNNING" && !quiet) NoticeSandboxState(sandbox);
  return 0;
}

int CmdSandboxLs(Context& ctx, const ParsedArgs& args) {
  if (!args.positional.empty()) return ReportUsage(ctx, "takes no arguments");
  std::string query;
  for (const auto& s : args.All("state")) query += "&state=" + PercentEncode(Upper(s));
  for (const auto& l : args.All("label")) {
    auto kv = ParseKeyValue(l, "--label");
    if (!kv.ok()) return ReportUsage(ctx, kv.error().message);
    query += "&label=" + PercentEncode(l);
  }
  int64_t limit = INT64_MAX;
  if (auto l = args.Last("limit")) {
    auto v = ParseInt(*l, "--limit", 1, INT32_MAX);
    if (!v.ok()) return ReportUsage(ctx, v.error().message);
    limit = *v;
  }
  nlohmann::json sandboxes = nlohmann::json::array();
  nlohmann::json cursor = nullptr;
  for (;;) {
    const int64_t page = std::min<int64_t>(1000, limit - static_cast<int64_t>(sandboxes.size()));
    std::string target = fmt::format("/v1/sandboxes?limit={}{}", page, query);
    if (cursor.is_string()) target += "&cursor=" + PercentEncode(cursor.get<std::string>());
    auto reply = ctx.client->CallJson("GET", target);
    if (!reply.ok()) return ReportError(ctx, reply.error());
    for (const auto& s : reply->value("sandboxes", nlohmann::json::array())) sandboxes.push_back(s);
    cursor = reply->value("next_cursor", nlohmann::json());
    if (!cursor.is_string() || cursor.get<std::string>().empty() ||
        static_cast<int64_t>(sandboxes.size()) >= limit) {
      break;
    }
  }
  if (ctx.json) {
    PrintJson({{"sandboxes", sandboxes}});
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "AGE", "LABELS"}};
  for (const auto& s : sandboxes) {
    rows.push_back({Str(s, "id"), Str(s, "state"), FormatAge(TimestampMs(s, "created_at")),
                    Truncate(Labels(s.value("labels", nlohmann::json())), 60)});
  }
  PrintTable(rows);
  return 0;
}

int CmdSandboxInspect(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() != 1) return ReportUsage(ctx, "needs exactly one sandbox ID");
  auto s = ctx.client->CallJson("GET", SandboxTarget(args.positional[0]));
  if (!s.ok()) return ReportError(ctx, s.error());
  if (ctx.json) {
    PrintJson(*s);
  } else {
    PrintSandbox(*s);
  }
  return 0;
}

int CmdSandboxRm(Context& ctx, const ParsedArgs& args) {
  return SandboxAction(ctx, args, "DELETE", "", "removed");
}

int CmdSandboxPause(Context& ctx, const ParsedArgs& args) {
  return SandboxAction(ctx, args, "POST", ":pause", "paused");
}

int CmdSandboxResume(Context& ctx, const ParsedArgs& args) {
  return SandboxAction(ctx, args, "POST", ":resume", "resumed");
}

int CmdSandboxSnapshot(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() != 2) return ReportUsage(ctx, "needs a sandbox ID and a NAME");
  const nlohmann::json body = {{"name", args.positional[1]}};
  auto s = ctx.client->CallJson("POST", SandboxTarget(args.positional[0]) + ":snapshot", &body);
  if (!s.ok()) return ReportError(ctx, s.error());
  if (ctx.json) {
    PrintJson(*s);
    return 0;
  }
  std::string dirs;
  for (const auto& d : s->value("dirs", nlohmann::json::array())) {
    dirs += (dirs.empty() ? "" : ", ") + (d.is_string() ? d.get<std::string>() : d.dump());
  }
  (void)WriteOut(1, fmt::format("snapshot {} ({}) of {}: {} bytes of {}\n", Str(*s, "name"),
                                Str(*s, "id"), args.positional[0],
                                s->value("bytes", int64_t{0}), dirs));
  return 0;
}

int CmdSandboxSnapshots(Context& ctx, const ParsedArgs& args) {
  if (!args.positional.empty()) return ReportUsage(ctx, "takes no arguments");
  auto reply = ctx.client->CallJson("GET", "/v1/snapshots");
  if (!reply.ok()) return ReportError(ctx, reply.error());
  if (ctx.json) {
    PrintJson(*reply);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "ID", "FROM", "AGE", "BYTES"}};
  for (const auto& s : reply->value("snapshots", nlohmann::json::array())) {
    rows.push_back({Str(s, "name"), Str(s, "id"), Str(s, "source_sandbox"),
                    FormatAge(TimestampMs(s, "created_at")),
                    std::to_string(s.value("bytes", int64_t{0}))});
  }
  PrintTable(rows);
  return 0;
}

int CmdSandboxSnapshotRm(Context& ctx, const ParsedArgs& args) {
  if (args.positional.empty()) return ReportUsage(ctx, "needs a snapshot NAME");
  int status = 0;
  for (const auto& name : args.positional) {
    auto r = ctx.client->CallJson("DELETE", "/v1/snapshots/" + PercentEncode(name));
    if (!r.ok()) {
      status = ReportError(ctx, r.error());
    } else if (!ctx.json) {
      (void)WriteOut(1, fmt::format("removed snapshot {}\n", name));
    }
  }
  return status;
}

int CmdSandboxApprove(Context& ctx, const ParsedArgs& args) {
  return SandboxReview(ctx, args, "approve", "approved", nullptr);
}

int CmdSandboxReject(Context& ctx, const ParsedArgs& args) {
  nlohmann::json body = nlohmann::json::object();
  if (auto r = args.Last("reason")) body["reason"] = *r;
  return SandboxReview(ctx, args, "reject", "rejected", &body);
}

int CmdSandboxLogs(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() != 2) {
    return ReportUsage(ctx, "needs a sandbox ID and a process id or tag");
  }
  const std::string& id = args.positional[0];
  const std::string& pid = args.positional[1];
  const std::string stream = args.Last("stream").value_or("");
  if (!stream.empty() && stream != "stdout" && stream != "stderr") {
    return ReportUsage(ctx, "--stream: stdout or stderr");
  }
  OutputCursor cursor;
  // One stream chosen: it goes to our stdout. Both: each to its own.
  if (stream == "stdout") cursor.fds = {1, -1};
  if (stream == "stderr") cursor.fds = {-1, 1};
  if (ctx.json && !args.Has("follow")) {
    // The stored bytes as one JSON object: text where they are UTF-8, else base64.
    nlohmann::json out = {{"sandbox_id", id}, {"process", pid}};
    for (int s = 0; s < 2; ++s) {
      if (cursor.fds[static_cast<size_t>(s)] < 0) continue;
      const char* name = s == 0 ? "stdout" : "stderr";
      std::string bytes;
      auto st = ctx.client->Stream(fmt::format("{}/logs?stream={}", ProcessTarget(id, pid), name),
                                   [&](std::string_view piece) -> Status {
                                     bytes.append(piece);
                                     return Ok();
                                   });
      if (!st.ok()) return ReportError(ctx, st.error());
      if (IsValidUtf8(bytes)) {
        out[name] = bytes;
      } else {
        out[std::string(name) + "_b64"] = Base64Encode(bytes);
      }
    }
    PrintJson(out);
    return 0;
  }
  if (ctx.json) {
    // --follow --json: the events, one JSON object a line.
    Status write_error = Ok();
    Status st = ctx.client->FollowEvents(
        [&](int64_t after) { return ProcessEventsTarget(id, pid, after); }, 0,
        [&](const nlohmann::json& ev) {
          if (ev.value("type", "") == "process.log" && !stream.empty() &&
              Str(ev, "stream") != stream) {
            return EventAction::kContinue;
          }
          write_error =
              WriteOut(1, ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
          if (!write_error.ok() || ev.value("type", "") == "process.finished") {
            return EventAction::kStop;
          }
          return EventAction::kContinue;
        });
    if (!write_error.ok()) return ReportError(ctx, write_error.error());
    if (!st.ok()) return ReportError(ctx, st.error());
    return 0;
  }
  for (int s = 0; s < 2; ++s) {
    Status st = WriteStoredLog(*ctx.client, id, pid, s, cursor);
    if (!st.ok()) return ReportError(ctx, st.error());
  }
  if (!args.Has("follow")) return 0;
  // What was stored is out; the events from the start carry the rest (the bytes before the
  // cursor are skipped), until the process ends.
  bool finished = false;
  Status st = FollowProcessOutput(*ctx.client, id, pid, cursor, &finished);
  if (!st.ok()) return ReportError(ctx, st.error());
  return 0;
}

int CmdSandboxWatch(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() != 2) return ReportUsage(ctx, "needs a sandbox ID and a path");
  const std::string target =
      SandboxTarget(args.positional[0]) + "/files:watch?path=" + PercentEncode(args.positional[1]);
  Status write_error = Ok();
  Status st = ctx.client->FollowEvents(
      [&](int64_t) { return target; }, 0,
      [&](const nlohmann::json& ev) {
        write_error = WriteOut(
            1, ctx.json ? ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"
                        : WatchLine(ev));
        return write_error.ok() ? EventAction::kContinue : EventAction::kStop;
      });
  if (!write_error.ok()) return ReportError(ctx, write_error.error());
  if (!st.ok()) return ReportError(ctx, st.error());
  return 0;
}

}  // namespace sbx::ctl
