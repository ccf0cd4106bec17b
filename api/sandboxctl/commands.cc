// sandboxctl's commands other than `run`: thin wrappers over one or a few API calls each, with a
// text rendering and --json passing the API's JSON through.
#include "api/sandboxctl/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/unique_fd.h"

namespace sbx::ctl {
namespace {

std::string RunPath(const std::string& id) { return "/v1/runs/" + PercentEncode(id); }

// The one run id a command takes.
Result<std::string> OneId(const ParsedArgs& args, size_t skip = 0) {
  if (args.positional.size() != skip + 1) {
    return Error{ErrorCode::kInvalidArgument, 0, "needs exactly one run ID", {}};
  }
  return args.positional[skip];
}

std::string OptText(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "-";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

std::string MapText(const nlohmann::json& m) {
  if (!m.is_object() || m.empty()) return "-";
  std::string out;
  for (auto it = m.begin(); it != m.end(); ++it) {
    // No `(out.empty() ? "" : " ") + ShellQuote(…)`: a literal + a temporary draws a bogus
    // -Wrestrict from GCC 12 at -O3 (GCC PR 105329).
    if (!out.empty()) out += ' ';
    out += ShellQuote(it.key() + "=" +
                      (it.value().is_string() ? it.value().get<std::string>() : it.value().dump()));
  }
  return out;
}

std::string StepResultText(const nlohmann::json& r) {
  std::string out = Str(r, "reason", "-");
  if (r.contains("exit_code") && r["exit_code"].is_number()) {
    out += fmt::format(", exit code {}", r["exit_code"].get<int64_t>());
  }
  if (r.contains("signal") && r["signal"].is_string()) out += ", " + Str(r, "signal");
  out += fmt::format(", wall {} ms, cpu {} ms, memory peak {}", Int(r, "wall_ms"), Int(r, "cpu_ms"),
                     FormatBytes(Int(r, "memory_peak_bytes")));
  return out;
}

void PrintRun(const nlohmann::json& run) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"ID", Str(run, "id")},
      {"State", Str(run, "state")},
      {"Submitter", Str(run, "submitter")},
      {"Command", CommandSummary(run)},
      {"Limits", LimitsText(run.value("limits", nlohmann::json()), "memory")},
      {"Network", Str(run, "network", "-")},
      {"Seccomp", Str(run, "seccomp_profile", "-")},
      {"Env", MapText(run.value("env", nlohmann::json()))},
      {"Labels", MapText(run.value("labels", nlohmann::json()))},
      {"Stdin", Int(run, "stdin_bytes") > 0 ? FormatBytes(Int(run, "stdin_bytes")) : "-"},
      {"Idempotency key", OptText(run, "idempotency_key")}};
  const auto& policy = run.value("policy", nlohmann::json());
  if (policy.is_object()) {
    std::string p = Str(policy, "decision", "-");
    if (!Str(policy, "reason").empty()) p += " (" + Str(policy, "reason") + ")";
    rows.push_back({"Policy", p});
  }
  const auto& approval = run.value("approval", nlohmann::json());
  if (approval.is_object()) {
    rows.push_back({"Approved", fmt::format("by {} at {} ({})", Str(approval, "approved_by"),
                                            FormatTime(Int(approval, "approved_at_ms")),
                                            Str(approval, "rule"))});
  }
  rows.push_back({"Node", OptText(run, "node")});
  rows.push_back({"Created", FormatTime(Int(run, "created_at_ms"))});
  rows.push_back({"Queued", FormatTime(Int(run, "queued_at_ms"))});
  rows.push_back({"Started", FormatTime(Int(run, "started_at_ms"))});
  rows.push_back({"Finished", FormatTime(Int(run, "finished_at_ms"))});
  const auto& result = run.value("result", nlohmann::json());
  rows.push_back({"Result", result.is_object() ? StepResultText(result) : "-"});
  if (result.is_object() && result.contains("steps") && result["steps"].is_array()) {
    for (const auto& s : result["steps"]) {
      rows.push_back({"  step " + Str(s, "name"), StepResultText(s)});
    }
  }
  PrintFacts(rows);
}

// approve / reject / cancel: one POST per run id given.
int RunAction(Context& ctx, const ParsedArgs& args, const std::string& verb,
              const nlohmann::json* body, const char* done) {
  if (args.positional.empty()) return ReportUsage(ctx, "needs a run ID");
  int status = 0;
  for (const auto& id : args.positional) {
    auto run = ctx.client->CallJson("POST", RunPath(id) + ":" + verb, body);
    if (!run.ok()) {
      status = ReportError(ctx, run.error());
      continue;
    }
    if (ctx.json) {
      PrintJson(*run);
    } else {
      (void)WriteOut(1, fmt::format("{} run {} ({})\n", done, id, Str(*run, "state")));
    }
  }
  return status;
}

// Where `artifacts get` writes when no -o is given: the artifact's own relative path under the
// current directory, or its last segment when the name is absolute or has a ".." segment.
std::string LocalArtifactPath(const std::string& name, bool* renamed) {
  bool safe = !name.empty() && name[0] != '/';
  std::vector<std::string> segments;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    std::string seg = name.substr(start, slash - start);
    if (seg == "..") safe = false;
    if (!seg.empty() && seg != ".") segments.push_back(seg);
    start = slash + 1;
  }
  *renamed = !safe;
  if (segments.empty()) return "artifact";
  if (!safe) return segments.back() == ".." ? "artifact" : segments.back();
  std::string out;
  for (const auto& s : segments) out += (out.empty() ? "" : "/") + s;
  return out;
}

// Opens (creating its directories) `rel` below the current directory without following any
// symbolic link on the way, so that a name from the server cannot send the bytes elsewhere.
Result<UniqueFd> CreateBelowCwd(const std::string& rel, std::string* tmp_name, UniqueFd* dir_out) {
  UniqueFd dir(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoError("cannot open the current directory");
  size_t start = 0;
  for (;;) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) break;
    std::string seg = rel.substr(start, slash - start);
    if (::mkdirat(dir.get(), seg.c_str(), 0755) < 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory {}", rel.substr(0, slash));
    }
    UniqueFd next(
        ::openat(dir.get(), seg.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return ErrnoError("cannot open directory {}", rel.substr(0, slash));
    dir = std::move(next);
    start = slash + 1;
  }
  std::string base = rel.substr(start);
  *tmp_name = fmt::format(".{}.sandboxctl-{}", base, ::getpid());
  UniqueFd fd(::openat(dir.get(), tmp_name->c_str(),
                       O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return ErrnoError("cannot create {}", rel);
  *dir_out = std::move(dir);
  return fd;
}

int ArtifactsGet(Context& ctx, const std::string& id, const std::string& name,
                 std::optional<std::string> output) {
  const std::string target = RunPath(id) + "/artifacts/" + EncodePathSegments(name);
  UniqueFd owned, dir;
  int fd = 1;
  std::string local, tmp;
  if (output && *output != "-") {
    local = *output;
    owned.reset(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!owned) return ReportError(ctx, ErrnoError("cannot create {}", local));
    fd = owned.get();
  } else if (!output) {
    bool renamed = false;
    local = LocalArtifactPath(name, &renamed);
    if (renamed) {
      (void)WriteOut(2, fmt::format("sandboxctl: '{}' points outside the current directory; "
                                    "writing it to ./{}\n",
                                    name, local));
    }
    auto f = CreateBelowCwd(local, &tmp, &dir);
    if (!f.ok()) return ReportError(ctx, f.error());
    owned = std::move(*f);
    fd = owned.get();
  }
  uint64_t bytes = 0;
  auto st = ctx.client->Stream(target, [&](std::string_view piece) -> Status {
    bytes += piece.size();
    return WriteOut(fd, piece);
  });
  if (!tmp.empty()) {
    const std::string base =
        local.substr(local.rfind('/') == std::string::npos ? 0 : local.rfind('/') + 1);
    if (!st.ok() || ::renameat(dir.get(), tmp.c_str(), dir.get(), base.c_str()) < 0) {
      if (st.ok()) st = ErrnoError("cannot rename the download to {}", local);
      ::unlinkat(dir.get(), tmp.c_str(), 0);
    }
  }
  if (!st.ok()) return ReportError(ctx, st.error());
  if (fd != 1 && !ctx.json) {
    (void)WriteOut(
        1, fmt::format("{} ({}) -> {}\n", name, FormatBytes(static_cast<int64_t>(bytes)), local));
  }
  return 0;
}

}  // namespace

int CmdPs(Context& ctx, const ParsedArgs& args) {
  if (!args.positional.empty()) return ReportUsage(ctx, "takes no arguments");
  std::vector<std::string> states;
  for (const auto& s : args.All("state")) states.push_back(Upper(s));
  if (states.empty() && !args.Has("all")) {
    states = {"PENDING", "PLANNED", "AWAITING_REVIEW", "QUEUED", "RUNNING"};
  }
  int64_t limit = args.Has("all") ? INT64_MAX : 50;
  if (auto l = args.Last("limit")) {
    auto v = ParseInt(*l, "--limit", 1, INT32_MAX);
    if (!v.ok()) return ReportUsage(ctx, v.error().message);
    limit = *v;
  }
  std::string query;
  for (const auto& s : states) query += "&state=" + PercentEncode(s);
  for (const auto& l : args.All("label")) {
    auto kv = ParseKeyValue(l, "--label");
    if (!kv.ok()) return ReportUsage(ctx, kv.error().message);
    query += "&label=" + PercentEncode(l);
  }
  nlohmann::json runs = nlohmann::json::array();
  nlohmann::json cursor = nullptr;
  for (;;) {
    int64_t page = std::min<int64_t>(1000, limit - static_cast<int64_t>(runs.size()));
    std::string target = fmt::format("/v1/runs?limit={}{}", page, query);
    if (cursor.is_string()) target += "&cursor=" + PercentEncode(cursor.get<std::string>());
    auto reply = ctx.client->CallJson("GET", target);
    if (!reply.ok()) return ReportError(ctx, reply.error());
    for (const auto& r : reply->value("runs", nlohmann::json::array())) runs.push_back(r);
    cursor = reply->value("next_cursor", nlohmann::json());
    if (!cursor.is_string() || static_cast<int64_t>(runs.size()) >= limit) break;
  }
  if (ctx.json) {
    PrintJson({{"runs", runs}, {"next_cursor", cursor}});
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STATE", "SUBMITTER", "AGE", "COMMAND", "EXIT"}};
  for (const auto& r : runs) {
    rows.push_back({Str(r, "id"), Str(r, "state"), Str(r, "submitter"),
                    FormatAge(Int(r, "created_at_ms")), Truncate(CommandSummary(r), 48),
                    ExitSummary(r)});
  }
  PrintTable(rows);
  return 0;
}

int CmdInspect(Context& ctx, const ParsedArgs& args) {
  auto id = OneId(args);
  if (!id.ok()) return ReportUsage(ctx, id.error().message);
  auto run = ctx.client->CallJson("GET", RunPath(*id));
  if (!run.ok()) return ReportError(ctx, run.error());
  if (ctx.json) {
    PrintJson(*run);
  } else {
    PrintRun(*run);
  }
  return 0;
}

int CmdLogs(Context& ctx, const ParsedArgs& args) {
  auto id = OneId(args);
  if (!id.ok()) return ReportUsage(ctx, id.error().message);
  std::string query;
  std::string stream = args.Last("stream").value_or("all");
  if (stream != "stdout" && stream != "stderr" && stream != "all") {
    return ReportUsage(ctx, "--stream: stdout, stderr or all");
  }
  query += "?stream=" + stream;
  if (auto t = args.Last("tail")) {
    auto n = ParseInt(*t, "--tail", 0, INT64_MAX);
    if (!n.ok()) return ReportUsage(ctx, n.error().message);
    query += fmt::format("&tail={}", *n);
  }
  if (args.Has("follow")) query += "&follow=true";
  auto st = ctx.client->Stream(RunPath(*id) + "/logs" + query,
                               [](std::string_view piece) { return WriteOut(1, piece); });
  if (!st.ok()) return ReportError(ctx, st.error());
  return 0;
}

int CmdApprove(Context& ctx, const ParsedArgs& args) {
  return RunAction(ctx, args, "approve", nullptr, "approved");
}

int CmdReject(Context& ctx, const ParsedArgs& args) {
  nlohmann::json body = nlohmann::json::object();
  if (auto r = args.Last("reason")) body["reason"] = *r;
  return RunAction(ctx, args, "reject", &body, "rejected");
}

namespace {

// "write  0644  12 B  a/b.txt" lines for a change set's entries, then its refusals.
void PrintChanges(const nlohmann::json& c) {
  std::vector<std::vector<std::string>> rows = {{"OP", "MODE", "SIZE", "PATH", "ON THE HOST"}};
  for (const auto& e : c.value("entries", nlohmann::json::array())) {
    std::string host = Str(e, "host");
    if (e.value("changed_on_host_during_run", false)) host += ", changed while the run ran";
    rows.push_back({Str(e, "op"), Str(e, "mode"),
                    e.contains("size") ? FormatBytes(Int(e, "size")) : "", Str(e, "path"), host});
  }
  PrintTable(rows);
  for (const auto& r : c.value("refused", nlohmann::json::array())) {
    (void)WriteOut(1, fmt::format("refused: {}{}{}\n", Str(r, "path"),
                                  Str(r, "path").empty() ? "" : ": ", Str(r, "why")));
  }
  const auto& applied = c.value("applied", nlohmann::json());
  if (applied.is_object()) {
    (void)WriteOut(1, fmt::format("applied by {} {}\n", Str(applied, "by"),
                                  FormatAge(Int(applied, "at_ms"))));
  }
}

}  // namespace

int CmdChanges(Context& ctx, const ParsedArgs& args) {
  auto id = OneId(args);
  if (!id.ok()) return ReportUsage(ctx, id.error().message);
  auto c = ctx.client->CallJson("GET", RunPath(*id) + "/changes");
  if (!c.ok()) return ReportError(ctx, c.error());
  if (ctx.json) {
    PrintJson(*c);
  } else {
    PrintChanges(*c);
  }
  return 0;
}

int CmdApply(Context& ctx, const ParsedArgs& args) {
  auto id = OneId(args);
  if (!id.ok()) return ReportUsage(ctx, id.error().message);
  // The diff the caller reviewed: given, or the one the server shows now (the apply is then
  // bound to what this command printed).
  std::string diff_sha256 = args.Last("diff-sha256").value_or("");
  if (diff_sha256.empty()) {
    auto c = ctx.client->CallJson("GET", RunPath(*id) + "/changes");
    if (!c.ok()) return ReportError(ctx, c.error());
    if (!ctx.json && !args.Has("quiet")) PrintChanges(*c);
    diff_sha256 = Str(*c, "diff_sha256");
  }
  nlohmann::json body = {{"diff_sha256", diff_sha256}};
  auto reply = ctx.client->Call("POST", RunPath(*id) + ":apply", &body);
  if (!reply.ok()) return ReportError(ctx, reply.error());
  nlohmann::json j = nlohmann::json::parse(reply->body, nullptr, false);
  if (reply->status == 409 && j.is_object() && j.contains("conflicts")) {
    if (ctx.json) {
      PrintJson(j);
    } else {
      for (const auto& c : j["conflicts"]) {
        (void)WriteOut(2, fmt::format("conflict: {}: {}\n", Str(c, "path"), Str(c, "why")));
      }
    }
    return ReportError(ctx, ApiError(*reply));
  }
  if (reply->status < 200 || reply->status >= 300) return ReportError(ctx, ApiError(*reply));
  if (ctx.json) {
    PrintJson(j);
  } else {
    (void)WriteOut(1, fmt::format("applied run {}: {} file(s) written, {} deleted, {} "
                                  "director(ies) made, {} removed\n",
                                  *id, Int(j, "files_written"), Int(j, "files_deleted"),
                                  Int(j, "dirs_made"), Int(j, "dirs_removed")));
  }
  return 0;
}

int CmdCancel(Context& ctx, const ParsedArgs& args) {
  return RunAction(ctx, args, "cancel", nullptr, "cancel requested for");
}

int CmdArtifacts(Context& ctx, const ParsedArgs& args) {
  const auto& p = args.positional;
  if (p.empty()) return ReportUsage(ctx, "use 'artifacts ls ID' or 'artifacts get ID NAME'");
  if (p[0] == "ls" || p[0] == "list") {
    if (p.size() != 2) return ReportUsage(ctx, "artifacts ls needs exactly one run ID");
    auto list = ctx.client->CallJson("GET", RunPath(p[1]) + "/artifacts");
    if (!list.ok()) return ReportError(ctx, list.error());
    if (ctx.json) {
      PrintJson(*list);
      return 0;
    }
    std::vector<std::vector<std::string>> rows = {{"NAME", "SIZE", "SHA256"}};
    for (const auto& a : list->value("artifacts", nlohmann::json::array())) {
      rows.push_back({Str(a, "name"), FormatBytes(Int(a, "size")), Str(a, "sha256", "-")});
    }
    PrintTable(rows);
    return 0;
  }
  if (p[0] == "get") {
    if (p.size() != 3) return ReportUsage(ctx, "artifacts get needs a run ID and an artifact name");
    return ArtifactsGet(ctx, p[1], p[2], args.Last("output"));
  }
  return ReportUsage(ctx, fmt::format("unknown artifacts subcommand '{}' (ls, get)", p[0]));
}

int CmdAudit(Context& ctx, const ParsedArgs& args) {
  if (!args.positional.empty()) return ReportUsage(ctx, "takes no arguments (use --run ID)");
  std::string query;
  if (auto r = args.Last("run")) query = "&run_id=" + PercentEncode(*r);
  nlohmann::json records = nlohmann::json::array();
  int64_t after = 0;
  for (;;) {
    auto page = ctx.client->CallJson("GET", fmt::format("/v1/audit?after_id={}{}", after, query));
    if (!page.ok()) return ReportError(ctx, page.error());
    const auto& recs = page->value("records", nlohmann::json::array());
    if (recs.empty()) break;
    int64_t last = after;
    for (const auto& r : recs) {
      records.push_back(r);
      last = std::max(last, Int(r, "id"));
    }
    if (last == after) break;
    after = last;
  }
  if (ctx.json) {
    PrintJson({{"records", records}});
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TIME", "ACTOR", "ACTION", "RUN", "DETAILS"}};
  for (const auto& r : records) {
    const auto& d = r.value("details", nlohmann::json());
    rows.push_back(
        {std::to_string(Int(r, "id")), FormatTime(Int(r, "ts_ms")), Str(r, "actor"),
         Str(r, "action"), OptText(r, "run_id"),
         Truncate(
             d.is_null() ? "-" : d.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
             60)});
  }
  PrintTable(rows);
  return 0;
}

int CmdPolicy(Context& ctx, const ParsedArgs& args) {
  const auto& p = args.positional;
  if (p.empty() || p[0] != "test") {
    return ReportUsage(ctx, "use 'policy test \"COMMAND\"' or 'policy test -- ARGV…'");
  }
  nlohmann::json body;
  if (!args.rest.empty()) {
    if (p.size() != 1) return ReportUsage(ctx, "give the command either quoted or after --");
    body["argv"] = args.rest;
  } else if (p.size() == 2) {
    body["command"] = p[1];
  } else {
    return ReportUsage(ctx, "give one quoted command, or -- ARGV…");
  }
  auto d = ctx.client->CallJson("POST", "/v1/policy:evaluate", &body);
  if (!d.ok()) return ReportError(ctx, d.error());
  if (ctx.json) {
    PrintJson(*d);
    return 0;
  }
  std::string out =
      fmt::format("decision: {}\nrisk:     {}\n", Str(*d, "decision", "-"), Str(*d, "risk", "-"));
  const auto& rule = d->value("rule", nlohmann::json());
  if (rule.is_object()) {
    out += fmt::format("rule:     {}:{}  {}\n", Str(rule, "file", "?"), Int(rule, "line"),
                       Str(rule, "pattern"));
  } else {
    out += "rule:     - (no rule matched)\n";
  }
  const auto& reasons = d->value("reasons", nlohmann::json::array());
  if (reasons.is_array() && !reasons.empty()) {
    out += "reasons:\n";
    for (const auto& r : reasons)
      out += "  - " + (r.is_string() ? r.get<std::string>() : r.dump()) + "\n";
  }
  (void)WriteOut(1, out);
  return 0;
}

int CmdInfo(Context& ctx, const ParsedArgs& args) {
  if (!args.positional.empty()) return ReportUsage(ctx, "takes no arguments");
  auto info = ctx.client->CallJson("GET", "/v1/info");
  if (!info.ok()) return ReportError(ctx, info.error());
  if (ctx.json) {
    PrintJson(*info);
    return 0;
  }
  std::string out = fmt::format("Address:              {}\n", ctx.client->endpoint().ToString());
  out += fmt::format("Node:                 {}\n", Str(*info, "node", "-"));
  std::string backends;
  for (const auto& b : info->value("backends", nlohmann::json::array())) {
    std::string one = b.is_string() ? b.get<std::string>() : b.value("name", b.dump());
    if (b.is_object() && !b.value("available", false)) one += " (unavailable)";
    if (b.is_object() && b.value("default", false)) one += " (default)";
    backends += (backends.empty() ? "" : ", ") + one;
  }
  out += fmt::format("Backends:             {}\n", backends.empty() ? "-" : backends);
  out += fmt::format("Max concurrent runs:  {}\n", OptText(*info, "max_concurrent_runs"));
  out += fmt::format("Max queue:            {}\n", OptText(*info, "max_queue"));
  const auto& limits = info->value("limits", nlohmann::json());
  out += fmt::format(
      "Default limits:       {}\n",
      LimitsText(limits.is_object() ? limits.value("defaults", nlohmann::json()) : nlohmann::json(),
                 "memory"));
  out += fmt::format(
      "Maximum limits:       {}\n",
      LimitsText(limits.is_object() ? limits.value("maxima", nlohmann::json()) : nlohmann::json(),
                 "memory"));
  const auto& iso = info->value("isolation", nlohmann::json());
  if (iso.is_object()) {
    for (auto it = iso.begin(); it != iso.end(); ++it) {
      std::string v;
      if (it.value().is_array()) {
        for (const auto& x : it.value())
          v += (v.empty() ? "" : ", ") + (x.is_string() ? x.get<std::string>() : x.dump());
      } else if (it.value().is_string()) {
        v = it.value().get<std::string>();
      } else {
        v = it.value().dump();
      }
      std::string key = "Isolation " + it.key() + ":";
      out += key + std::string(key.size() < 22 ? 22 - key.size() : 1, ' ') + v + "\n";
    }
  }
  (void)WriteOut(1, out);
  return 0;
}

}  // namespace sbx::ctl
