// `sandboxctl node ls|drain|resume`: the daemons sharing the database (GET /v1/nodes); and
// `sandboxctl runner add|show|revoke`: outbound runners' tokens (/v1/runners).
#include <fmt/format.h>

#include "api/sandboxctl/commands.h"

namespace sbx::ctl {
namespace {

int SetState(Context& ctx, const ParsedArgs& args, const char* verb) {
  if (args.positional.size() != 1) return ReportUsage(ctx, "needs exactly one node name");
  const std::string& name = args.positional[0];
  auto n = ctx.client->CallJson("POST", "/v1/nodes/" + PercentEncode(name) + ":" + verb);
  if (!n.ok()) return ReportError(ctx, n.error());
  if (ctx.json) {
    PrintJson(*n);
  } else {
    (void)WriteOut(1, fmt::format("node {}: {}\n", Str(*n, "name"), Str(*n, "state")));
  }
  return 0;
}

}  // namespace

int CmdNodeLs(Context& ctx, const ParsedArgs&) {
  auto nodes = ctx.client->CallJson("GET", "/v1/nodes");
  if (!nodes.ok()) return ReportError(ctx, nodes.error());
  if (ctx.json) {
    PrintJson(*nodes);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "RUNNING", "BEAT", "VERSION", "ADDRESS", "LABELS"}};
  for (const auto& n : nodes->value("nodes", nlohmann::json::array())) {
    std::string labels;
    const nlohmann::json given = n.value("labels", nlohmann::json::object());
    for (const auto& [k, v] : given.items()) {
      if (!labels.empty()) labels += ',';
      labels += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    }
    rows.push_back({Str(n, "name") + (n.value("self", false) ? " *" : ""), Str(n, "state"),
                    fmt::format("{}/{}", Int(n, "running"), Int(n, "capacity")),
                    FormatAge(Int(n, "last_heartbeat_ms")), Str(n, "version", "-"),
                    Str(n, "address", "-"), labels});
  }
  PrintTable(rows);
  return 0;
}

int CmdNodeDrain(Context& ctx, const ParsedArgs& args) { return SetState(ctx, args, "drain"); }
int CmdNodeResume(Context& ctx, const ParsedArgs& args) { return SetState(ctx, args, "resume"); }

namespace {

void PrintRunner(Context& ctx, const nlohmann::json& r) {
  if (ctx.json) {
    PrintJson(r);
    return;
  }
  std::string out = fmt::format("runner {}: {}, token issued by {}", Str(r, "name"),
                                r.value("revoked", false) ? "revoked" : "active",
                                Str(r, "created_by"));
  out += fmt::format(", {} outbox entries committed\n", Int(r, "applied_seq"));
  if (r.contains("token")) {
    out += fmt::format(
        "token (shown once; give it to the runner, e.g. in the file its --token-file names):\n"
        "{}\n",
        Str(r, "token"));
  }
  (void)WriteOut(1, out);
}


// One runner call: `method` on /v1/runners (POST, with the name in the body) or on
// /v1/runners/NAME, the answer printed.
int RunnerCall(Context& ctx, const ParsedArgs& args, std::string_view method) {
  if (args.positional.size() != 1) return ReportUsage(ctx, "needs exactly one runner name");
  const std::string& name = args.positional[0];
  const nlohmann::json body = {{"name", name}};
  auto r = method == "POST"
               ? ctx.client->CallJson(method, "/v1/runners", &body)
               : ctx.client->CallJson(method, "/v1/runners/" + PercentEncode(name));
  if (!r.ok()) return ReportError(ctx, r.error());
  PrintRunner(ctx, *r);
  return 0;
}

}  // namespace

int CmdRunnerAdd(Context& ctx, const ParsedArgs& args) { return RunnerCall(ctx, args, "POST"); }
int CmdRunnerShow(Context& ctx, const ParsedArgs& args) { return RunnerCall(ctx, args, "GET"); }
int CmdRunnerRevoke(Context& ctx, const ParsedArgs& args) {
  return RunnerCall(ctx, args, "DELETE");
}

}  // namespace sbx::ctl
