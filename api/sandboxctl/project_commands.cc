// `sandboxctl project …`, `plan PROJECT INTENT…` and `job ls`: projects, plans from intent and
// the allowlisted jobs. Running a plan or a job is `run --plan ID` / `run --job NAME`
// (run_command.cc).
#include <fmt/format.h>

#include "api/sandboxctl/commands.h"
#include "api/sandboxctl/sandbox_args.h"

namespace sbx::ctl {
namespace {

std::string Joined(const nlohmann::json& list, const char* sep = ",") {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& v : list) {
    if (!out.empty()) out += sep;
    out += v.is_string() ? v.get<std::string>() : v.dump();
  }
  return out;
}

// An argv as a shell would read it back: words with spaces or quotes quoted.
std::string CommandLine(const nlohmann::json& argv) {
  std::string out;
  if (!argv.is_array()) return out;
  for (const auto& a : argv) {
    std::string w = a.is_string() ? a.get<std::string>() : a.dump();
    if (!out.empty()) out += ' ';
    if (w.empty() || w.find_first_of(" \t\n'\"\\$`*?[]{}();&|<>") != std::string::npos) {
      std::string q = "'";
      for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      w = q + "'";
    }
    out += w;
  }
  return out;
}

int One(Context& ctx, const ParsedArgs& args, const char* what, std::string* out) {
  if (args.positional.size() != 1) {
    return ReportUsage(ctx, fmt::format("needs exactly one {}", what));
  }
  *out = args.positional[0];
  return 0;
}

void PrintProject(const nlohmann::json& p) {
  std::vector<std::vector<std::string>> rows = {
      {"id", Str(p, "id")},
      {"name", Str(p, "name")},
      {"version", std::to_string(Int(p, "version"))},
      {"root_path", Str(p, "root_path", "-")},
      {"repo", Str(p, "repo", "-")},
      {"workspace mode", Str(p, "default_workspace_mode")},
      {"default limits", p.value("default_limits", nlohmann::json::object()).dump()},
      {"labels", p.value("labels", nlohmann::json::object()).dump()},
      {"members", Joined(p.value("members", nlohmann::json::array()), ", ")},
      {"created",
       fmt::format("{} by {}", FormatAge(Int(p, "created_at_ms")), Str(p, "created_by"))}};
  PrintTable(rows);
}

}  // namespace

int CmdProjectLs(Context& ctx, const ParsedArgs&) {
  auto page = ctx.client->CallJson("GET", "/v1/projects?limit=1000");
  if (!page.ok()) return ReportError(ctx, page.error());
  if (ctx.json) {
    PrintJson(*page);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "ROOT", "MODE", "MEMBERS", "ID"}};
  for (const auto& p : page->value("projects", nlohmann::json::array())) {
    rows.push_back({Str(p, "name"), Str(p, "root_path", Str(p, "repo")),
                    Str(p, "default_workspace_mode"), Joined(p["members"]), Str(p, "id")});
  }
  PrintTable(rows);
  return 0;
}

int CmdProjectShow(Context& ctx, const ParsedArgs& args) {
  std::string name;
  if (int rc = One(ctx, args, "project", &name); rc != 0) return rc;
  auto p = ctx.client->CallJson("GET", "/v1/projects/" + PercentEncode(name));
  if (!p.ok()) return ReportError(ctx, p.error());
  if (ctx.json) {
    PrintJson(*p);
  } else {
    PrintProject(*p);
  }
  return 0;
}

int CmdProjectCreate(Context& ctx, const ParsedArgs& args) {
  std::string name;
  if (int rc = One(ctx, args, "project name", &name); rc != 0) return rc;
  nlohmann::json body = {{"name", name}};
  if (auto r = args.Last("root")) {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr) cwd[0] = '\0';
    body["root_path"] = (*r)[0] == '/' ? *r : JoinPath(cwd, *r);
  }
  if (auto r = args.Last("repo")) body["repo"] = *r;
  if (auto m = args.Last("mode")) body["default_workspace_mode"] = *m;
  if (args.Has("member")) body["members"] = args.All("member");
  nlohmann::json limits = nlohmann::json::object();
  if (auto v = args.Last("memory")) limits["memory"] = *v;
  if (auto v = args.Last("timeout")) {
    auto s = ParseSeconds(*v, "--timeout");
    if (!s.ok()) return ReportUsage(ctx, s.error().message);
    limits["timeout_s"] = *s;
  }
  if (!limits.empty()) body["default_limits"] = limits;
  if (Status st = AddLabels(args, body); !st.ok()) return ReportUsage(ctx, st.error().message);
  auto p = ctx.client->CallJson("POST", "/v1/projects", &body);
  if (!p.ok()) return ReportError(ctx, p.error());
  if (ctx.json) {
    PrintJson(*p);
  } else {
    (void)WriteOut(1, fmt::format("project {} ({})\n", Str(*p, "name"), Str(*p, "id")));
  }
  return 0;
}

int CmdProjectRm(Context& ctx, const ParsedArgs& args) {
  std::string name;
  if (int rc = One(ctx, args, "project", &name); rc != 0) return rc;
  auto r = ctx.client->CallJson("DELETE", "/v1/projects/" + PercentEncode(name));
  if (!r.ok()) return ReportError(ctx, r.error());
  if (!ctx.json) (void)WriteOut(1, fmt::format("deleted project {}\n", name));
  return 0;
}

int CmdPlan(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() < 2) {
    return ReportUsage(ctx, "needs a project and an intent: plan PROJECT \"run the tests\"");
  }
  std::string intent;
  for (size_t i = 1; i < args.positional.size(); ++i) {
    if (!intent.empty()) intent += ' ';
    intent += args.positional[i];
  }
  nlohmann::json body = {{"intent_text", intent}};
  auto plan = ctx.client->CallJson(
      "POST", "/v1/projects/" + PercentEncode(args.positional[0]) + "/plans", &body);
  if (!plan.ok()) return ReportError(ctx, plan.error());
  if (ctx.json) {
    PrintJson(*plan);
    return 0;
  }
  const nlohmann::json& p = *plan;
  std::vector<std::vector<std::string>> rows = {{"STEP", "COMMAND", "DECISION", "RISK", "WHY"}};
  for (const auto& s : p.value("steps", nlohmann::json::array())) {
    const nlohmann::json d = s.value("decision", nlohmann::json::object());
    rows.push_back({Str(s, "name"), CommandLine(s["argv"]), Str(d, "decision"), Str(d, "risk", "-"),
                    Str(s, "why")});
  }
  PrintTable(rows);
  (void)WriteOut(1, fmt::format("{}\nplan {} (sha256 {})\nrun it with: sandboxctl run --plan {}\n",
                                Str(p, "summary"), Str(p, "id"), Str(p, "sha256"), Str(p, "id")));
  return 0;
}

int CmdJobLs(Context& ctx, const ParsedArgs&) {
  auto jobs = ctx.client->CallJson("GET", "/v1/jobs");
  if (!jobs.ok()) return ReportError(ctx, jobs.error());
  if (ctx.json) {
    PrintJson(*jobs);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "REVIEW", "PARAMS", "COMMAND"}};
  for (const auto& j : jobs->value("jobs", nlohmann::json::array())) {
    std::string params;
    const nlohmann::json props = j["params"].value("properties", nlohmann::json::object());
    for (auto it = props.begin(); it != props.end(); ++it) {
      if (!params.empty()) params += ' ';
      const nlohmann::json& s = it.value();
      std::string type = Str(s, "type");
      if (s.contains("enum")) type = Joined(s["enum"], "|");
      params += fmt::format("{}={}{}", it.key(), type,
                            s.contains("default")
                                ? "(=" +
                                      (s["default"].is_string() ? s["default"].get<std::string>()
                                                                : s["default"].dump()) +
                                      ")"
                                : "");
    }
    rows.push_back(
        {Str(j, "name"), j.value("review", true) ? "yes" : "no", params, CommandLine(j["argv"])});
  }
  PrintTable(rows);
  return 0;
}

}  // namespace sbx::ctl
