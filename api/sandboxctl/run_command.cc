// `sandboxctl run`: submit a run, wait through review, stream its output byte for byte, and exit
// with its status.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "api/sandboxctl/commands.h"
#include "api/sandboxctl/sandbox_args.h"
#include "base/fs.h"

namespace sbx::ctl {
namespace {

Result<nlohmann::json> BuildRequest(const ParsedArgs& a) {
  auto usage = [](std::string m) {
    return Error{ErrorCode::kInvalidArgument, 0, std::move(m), {}};
  };
  nlohmann::json body = nlohmann::json::object();
  std::vector<std::string> steps = a.All("step");
  if (!steps.empty() && !a.rest.empty()) {
    return usage("give either --step NAME=CMD (repeatable) or -- ARGV…, not both");
  }
  if (steps.empty() && a.rest.empty()) {
    return usage("nothing to run: give -- ARGV… or --step NAME=CMD");
  }
  if (!a.rest.empty()) body["argv"] = a.rest;
  for (const auto& s : steps) {
    auto kv = ParseKeyValue(s, "--step");
    if (!kv.ok()) return std::move(kv).error();
    auto argv = SplitCommand(kv->second);
    if (!argv.ok()) return usage("--step " + kv->first + ": " + argv.error().message);
    if (argv->empty()) return usage("--step " + kv->first + ": the command is empty");
    body["steps"].push_back({{"name", kv->first}, {"argv", *argv}});
  }
  nlohmann::json limits = nlohmann::json::object();
  if (auto v = a.Last("cpus")) {
    auto c = ParsePositiveNumber(*v, "--cpus");
    if (!c.ok()) return std::move(c).error();
    limits["cpus"] = *c;
  }
  if (auto v = a.Last("memory")) {
    auto m = ParseByteSize(*v);
    if (!m.ok() || *m == 0) return usage("--memory '" + *v + "': a size such as 256m or 2g");
    limits["memory"] = *v;
  }
  if (auto v = a.Last("pids")) {
    auto p = ParseInt(*v, "--pids", 1, 1 << 22);
    if (!p.ok()) return std::move(p).error();
    limits["pids"] = *p;
  }
  if (auto v = a.Last("timeout")) {
    auto ms = ParseDurationMs(*v);
    if (!ms.ok() || *ms == 0) return usage("--timeout '" + *v + "': seconds, or 30s, 5m, 1h");
    limits["timeout_s"] = static_cast<int64_t>((*ms + 999) / 1000);
  }
  if (!limits.empty()) body["limits"] = limits;
  SBX_TRY(AddEnv(a, body, LookupEnv));
  SBX_TRY(AddLabels(a, body));
  if (auto w = a.Last("workspace")) {
    // PATH[:ro|:cow], a relative PATH against this shell's directory (the daemon has its own).
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr) cwd[0] = '\0';
    auto ws = ParseWorkspace(*w, cwd);
    if (!ws.ok()) return std::move(ws).error();
    body["workspace"] = {{"path", ws->path}, {"mode", ws->mode.empty() ? "ro" : ws->mode}};
  }
  if (auto k = a.Last("idempotency-key")) body["idempotency_key"] = *k;
  for (const auto& s : a.All("node-selector")) {
    auto kv = ParseKeyValue(s, "--node-selector");
    if (!kv.ok()) return std::move(kv).error();
    body["node_selector"][kv->first] = kv->second;
  }
  if (a.Has("retry-on-node-loss")) body["retry_on_node_loss"] = true;
  if (auto p = a.Last("project")) body["project"] = *p;
  if (auto s = a.Last("stdin")) {
    auto data = ReadInput(*s, "--stdin");
    if (!data.ok()) return std::move(data).error();
    if (!IsValidUtf8(*data)) {
      return usage("--stdin " + *s + ": the API takes stdin as text, and this is not UTF-8");
    }
    body["stdin"] = std::move(*data);
  }
  return body;
}

// Ctrl-C while following: detach (the run goes on) and say how to follow again; with
// --cancel-on-interrupt the first Ctrl-C asks the daemon to cancel the run and the output is
// followed to its end, a second one detaches. SIGINT is blocked in the calling thread (before
// the watcher thread exists, so that every thread inherits the mask) and taken by sigwait in
// the watcher, which may do ordinary work (a cancel request) instead of what a handler may do.
void StartInterruptWatcher(Client client, std::string run_id, bool cancel_on_interrupt) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([client = std::move(client), run_id = std::move(run_id), cancel_on_interrupt,
               set]() mutable {
    bool cancelled = false;
    for (;;) {
      int sig = 0;
      if (::sigwait(&set, &sig) != 0) continue;
      if (cancel_on_interrupt && !cancelled) {
        cancelled = true;
        (void)WriteOut(2, fmt::format("\nsandboxctl: cancelling run {} (interrupt again to "
                                      "detach)\n",
                                      run_id));
        auto r = client.CallJson("POST", "/v1/runs/" + PercentEncode(run_id) + ":cancel");
        if (!r.ok()) {
          (void)WriteOut(2, fmt::format("sandboxctl: cancel failed: {}\n", r.error().message));
        }
        continue;
      }
      (void)WriteOut(2, fmt::format("\nsandboxctl: detached; run {} goes on. Follow it again "
                                    "with: sandboxctl logs -f {}\n",
                                    run_id, run_id));
      std::_Exit(128 + SIGINT);
    }
  }).detach();
}

// The exit status `run` reports for a finished run, and what to say about it ("" for nothing).
int RunExitStatus(const nlohmann::json& run, std::string* message) {
  const std::string id = Str(run, "id");
  const std::string state = Str(run, "state");
  const nlohmann::json result = run.value("result", nlohmann::json());
  const std::string reason = Str(result, "reason");
  std::optional<int> exit_code;
  if (result.is_object() && result.contains("exit_code") &&
      result["exit_code"].is_number_integer()) {
    exit_code = result["exit_code"].get<int>();
  }
  const std::string signal = Str(result, "signal");
  if (state == "SUCCEEDED") return 0;
  if (state == "CANCELLED") {
    if (reason.rfind("rejected", 0) == 0) {
      *message =
          fmt::format("run {} was rejected{}", id, reason.size() > 8 ? reason.substr(8) : "");
    } else if (reason.empty() || reason == "cancelled") {
      *message = fmt::format("run {} was cancelled", id);
    } else {
      *message = fmt::format("run {} was cancelled: {}", id, reason);  // e.g. policy_denied
    }
    return kExitRunFailed;
  }
  if (state != "FAILED") {
    *message = fmt::format("run {} ended in state {}", id, state);
    return kExitRunFailed;
  }
  if (reason == "exited" && exit_code) return *exit_code;
  if (int sig = SignalNumber(signal); sig > 0) {
    *message = reason == "signaled" ? fmt::format("run {} was killed by {}", id, signal)
                                    : fmt::format("run {}: {} ({})", id, reason, signal);
    return 128 + sig;
  }
  *message = fmt::format("run {} failed: {}", id, reason.empty() ? "no reason given" : reason);
  return kExitRunFailed;
}

int Follow(Context& ctx, const std::string& id, bool quiet, bool cancel_on_interrupt) {
  StartInterruptWatcher(*ctx.client, id, cancel_on_interrupt);
  bool announced = false;
  std::string decision;
  std::optional<nlohmann::json> completed;
  Status write_error = Ok();
  auto on_event = [&](const nlohmann::json& ev) {
    const std::string type = Str(ev, "type");
    if (ctx.json) {
      write_error =
          WriteOut(1, ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    } else if (type == "step.log") {
      int fd = Str(ev, "stream") == "stderr" ? 2 : 1;
      write_error =
          WriteOut(fd, ev.contains("data") ? Str(ev, "data") : Base64Decode(Str(ev, "data_b64")));
    }
    if (type == "run.status" && !quiet) {
      const std::string state = Str(ev, "state");
      // PLANNED carries the policy's decision; AWAITING_REVIEW after an "allow" is only a step
      // on the way to the policy's own approval, nothing to wait for.
      if (state == "PLANNED" && ev.contains("policy")) {
        decision = Str(ev["policy"], "decision");
      }
      if (state == "AWAITING_REVIEW" && !announced && decision != "allow") {
        announced = true;
        (void)WriteOut(2, fmt::format("sandboxctl: run {} is waiting for review; a reviewer "
                                      "approves it with:\n  sandboxctl approve {}\n",
                                      id, id));
      } else if (state == "QUEUED" && announced) {
        (void)WriteOut(2, fmt::format("sandboxctl: run {} was approved\n", id));
      }
    }
    if (!write_error.ok()) return EventAction::kStop;
    if (type == "run.completed") {
      completed = ev;
      return EventAction::kStop;
    }
    return EventAction::kContinue;
  };
  const std::string base = "/v1/runs/" + PercentEncode(id) + "/events?after=";
  Status st = ctx.client->FollowEvents([&](int64_t after) { return base + std::to_string(after); },
                                       0, on_event);
  const std::string again = fmt::format("follow it again with: sandboxctl logs -f {}", id);
  if (!write_error.ok()) {
    (void)WriteOut(2, fmt::format("sandboxctl: writing the output of run {}: {}; {}\n", id,
                                  write_error.error().ToString(), again));
    return kExitRunFailed;
  }
  if (!st.ok()) {
    ReportError(ctx, st.error());
    (void)WriteOut(2, fmt::format("sandboxctl: {}\n", again));
    return kExitRunFailed;
  }
  auto run = ctx.client->CallJson("GET", "/v1/runs/" + PercentEncode(id));
  if (!run.ok()) {
    ReportError(ctx, run.error());
    return kExitRunFailed;
  }
  if (!completed) {
    (void)WriteOut(2, fmt::format("sandboxctl: the event stream ended while run {} is {}; {}\n", id,
                                  Str(*run, "state"), again));
    return kExitRunFailed;
  }
  std::string message;
  int code = RunExitStatus(*run, &message);
  if (!message.empty()) (void)WriteOut(2, "sandboxctl: " + message + "\n");
  return code;
}

// --plan ID or --job NAME [--param K=V]…: where to POST and what. Neither takes a command or the
// options that shape one: a plan is run as it is, a job's argv is its own.
Result<std::pair<std::string, nlohmann::json>> PlanOrJobRequest(Context& ctx, const ParsedArgs& a) {
  auto usage = [](std::string m) {
    return Error{ErrorCode::kInvalidArgument, 0, std::move(m), {}};
  };
  const bool plan = a.Has("plan");
  if (plan && a.Has("job")) return usage("give --plan or --job, not both");
  if (!a.rest.empty() || a.Has("step")) {
    return usage(plan ? "a plan runs as it is: no -- ARGV or --step with --plan"
                      : "a job's argv is its own: no -- ARGV or --step with --job");
  }
  for (const char* o : {"cpus", "memory", "pids", "timeout", "env", "label", "workspace",
                        "stdin", "project"}) {
    if (a.Has(o)) {
      return usage(fmt::format("--{} does not go with --{}: the {} decides it", o,
                               plan ? "plan" : "job", plan ? "plan" : "job"));
    }
  }
  nlohmann::json body = nlohmann::json::object();
  if (auto k = a.Last("idempotency-key")) body["idempotency_key"] = *k;
  if (plan) {
    if (a.Has("param")) return usage("--param goes with --job");
    const std::string id = *a.Last("plan");
    // The plan knows its project.
    auto p = ctx.client->CallJson("GET", "/v1/plans/" + PercentEncode(id));
    if (!p.ok()) return std::move(p).error();
    body["plan_id"] = id;
    return std::make_pair("/v1/projects/" + PercentEncode(Str(*p, "project_id")) + "/runs", body);
  }
  nlohmann::json params = nlohmann::json::object();
  for (const auto& kv : a.All("param")) {
    auto parsed = ParseKeyValue(kv, "--param");
    if (!parsed.ok()) return std::move(parsed).error();
    params[parsed->first] = parsed->second;  // integers go as their text; the daemon types them
  }
  body["params"] = std::move(params);
  return std::make_pair("/v1/jobs/" + PercentEncode(*a.Last("job")) + "/runs", body);
}

}  // namespace

int CmdRun(Context& ctx, const ParsedArgs& args) {
  std::string target = "/v1/runs";
  Result<nlohmann::json> body = nlohmann::json::object();
  if (args.Has("plan") || args.Has("job")) {
    auto r = PlanOrJobRequest(ctx, args);
    if (r.ok()) {
      target = r->first;
      body = std::move(r->second);
    } else {
      body = std::move(r).error();
    }
  } else if (args.Has("param")) {
    body = Error{ErrorCode::kInvalidArgument, 0, "--param goes with --job", {}};
  } else {
    body = BuildRequest(args);
  }
  if (!body.ok()) {
    if (body.error().code == ErrorCode::kInvalidArgument && body.error().sys_errno == 0 &&
        body.error().context.empty()) {
      return ReportUsage(ctx, body.error().message);
    }
    ReportError(ctx, body.error());
    return kExitRunFailed;
  }
  auto created = ctx.client->CallCreate(target, *body, "a run");
  if (!created.ok()) {
    ReportError(ctx, created.error());
    return kExitRunFailed;
  }
  const nlohmann::json& run = created->resource;
  const std::string id = Str(run, "id");
  const bool quiet = args.Has("quiet");
  if (!created->created && !quiet) {
    (void)WriteOut(2, fmt::format("sandboxctl: run {} already exists for this idempotency key "
                                  "({})\n",
                                  id, Str(run, "state")));
  }
  if (args.Has("no-follow")) {
    if (ctx.json) {
      PrintJson(run);
    } else {
      (void)WriteOut(1, id + "\n");
      if (Str(run, "state") == "AWAITING_REVIEW" && !quiet) {
        (void)WriteOut(2, fmt::format("sandboxctl: run {} is waiting for review; a reviewer "
                                      "approves it with:\n  sandboxctl approve {}\n",
                                      id, id));
      }
    }
    return 0;
  }
  return Follow(ctx, id, quiet, args.Has("cancel-on-interrupt"));
}

}  // namespace sbx::ctl
