// `sandboxctl sandbox exec` (a process, its output to ours, its exit status as ours) and
// `sandboxctl sandbox shell` (a process on a pty, our terminal joined to it over the pty
// WebSocket).
#include <unistd.h>

#include <mutex>
#include <optional>
#include <thread>

#include "api/sandboxctl/sandbox_args.h"
#include "api/sandboxctl/sandbox_commands.h"
#include "api/sandboxctl/terminal.h"

namespace sbx::ctl {
namespace {

// POST …/processes (with `query`): the process, or the error already reported (the exit status
// to return in *code).
std::optional<nlohmann::json> StartProcess(Context& ctx, const std::string& id,
                                           const nlohmann::json& body, const std::string& query,
                                           int* code) {
  auto reply = ctx.client->Call("POST", SandboxTarget(id) + "/processes" + query, &body);
  if (!reply.ok()) {
    ReportError(ctx, reply.error());
    *code = kExitRunFailed;
    return std::nullopt;
  }
  if (reply->status != 200 && reply->status != 201) {
    ReportError(ctx, ApiError(*reply));
    *code = kExitRunFailed;
    return std::nullopt;
  }
  auto process = nlohmann::json::parse(reply->body, nullptr, false);
  if (process.is_discarded() || ProcessId(process).empty()) {
    (void)WriteOut(2, "sandboxctl: the server's answer to POST …/processes is not a process\n");
    *code = kExitRunFailed;
    return std::nullopt;
  }
  return process;
}

// The process's exit status, its message on stderr.
int Conclude(const nlohmann::json& process) {
  std::string message;
  const int code = ProcessExitStatus(process, &message);
  if (!message.empty()) (void)WriteOut(2, "sandboxctl: " + message + "\n");
  return code;
}

// One captured stream of a ?wait=true answer, then what the cap left out from the stored log.
Status WriteCaptured(Context& ctx, const std::string& id, const std::string& pid,
                     const nlohmann::json& process, int stream, OutputCursor& cursor) {
  const std::string name = stream == 0 ? "stdout" : "stderr";
  const std::string bytes = process.contains(name + "_b64")
                                ? Base64Decode(Str(process, (name + "_b64").c_str()))
                                : Str(process, name.c_str());
  SBX_TRY(WriteOut(cursor.fds[static_cast<size_t>(stream)], bytes));
  cursor.written[static_cast<size_t>(stream)] = bytes.size();
  if (process.value(name + "_truncated", false)) {
    SBX_TRY(WriteStoredLog(*ctx.client, id, pid, stream, cursor));
  }
  return Ok();
}

// The process as it is now, once following it ended with `followed`. nullopt when either failed
// (reported; the command exits with kExitRunFailed).
std::optional<nlohmann::json> ProcessAfter(Context& ctx, const Status& followed,
                                           const std::string& id, const std::string& pid) {
  if (!followed.ok()) {
    ReportError(ctx, followed.error());
    return std::nullopt;
  }
  auto process = ctx.client->CallJson("GET", ProcessTarget(id, pid));
  if (!process.ok()) {
    ReportError(ctx, process.error());
    return std::nullopt;
  }
  return std::move(*process);
}

// Waits for a process that is waiting for review or running: its output to ours (not with
// --json), then its record. nullopt when following failed (reported; *code set).
std::optional<nlohmann::json> FollowToEnd(Context& ctx, const std::string& id,
                                          const std::string& pid, bool announced, bool quiet,
                                          int* code) {
  OutputCursor cursor;
  if (ctx.json) cursor.fds = {-1, -1};
  bool finished = false;
  Status st =
      FollowProcessOutput(*ctx.client, id, pid, cursor, &finished, [&](const nlohmann::json& ev) {
        if (announced && !quiet && Str(ev, "type") == "process.started") {
          (void)WriteOut(2, fmt::format("sandboxctl: process {} was "
                                        "approved\n",
                                        pid));
        }
      });
  auto process = ProcessAfter(ctx, st, id, pid);
  if (!process) *code = kExitRunFailed;
  return process;
}

}  // namespace

int CmdSandboxExec(Context& ctx, const ParsedArgs& args) {
  auto body = BuildExecBody(args, LookupEnv);
  if (!body.ok()) return ReportUsage(ctx, body.error().message);
  if (auto s = args.Last("stdin")) {
    auto data = ReadInput(*s, "--stdin");
    if (!data.ok()) {
      ReportError(ctx, data.error());
      return kExitRunFailed;
    }
    if (IsValidUtf8(*data)) {
      (*body)["stdin"] = std::move(*data);
    } else {
      (*body)["stdin_b64"] = Base64Encode(*data);
    }
  }
  const std::string& id = args.positional[0];
  const bool detach = args.Has("detach");
  const bool quiet = args.Has("quiet");
  int code = 0;
  auto process = StartProcess(ctx, id, *body, detach ? "" : "?wait=true", &code);
  if (!process) return code;
  const std::string pid = ProcessId(*process);
  const std::string state = Str(*process, "state");
  if (detach) {
    if (ctx.json) {
      PrintJson(*process);
    } else {
      (void)WriteOut(1, pid + "\n");
    }
    if (state == "AWAITING_REVIEW" && !quiet) NoticeProcessReview(id, pid, *process);
    return 0;
  }
  if (state != "FINISHED" && state != "REJECTED" && state != "CANCELLED") {
    // Waiting for a reviewer (wait=true does not wait through review), or still running.
    const bool review = state == "AWAITING_REVIEW";
    if (review && !quiet) NoticeProcessReview(id, pid, *process);
    process = FollowToEnd(ctx, id, pid, review, quiet, &code);
    if (!process) return code;
    if (ctx.json) PrintJson(*process);
    return Conclude(*process);
  }
  if (ctx.json) {
    PrintJson(*process);
    return Conclude(*process);
  }
  OutputCursor cursor;
  for (int s = 0; s < 2; ++s) {
    Status st = WriteCaptured(ctx, id, pid, *process, s, cursor);
    if (!st.ok()) {
      ReportError(ctx, st.error());
      return kExitRunFailed;
    }
  }
  return Conclude(*process);
}

int CmdSandboxShell(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() != 1) return ReportUsage(ctx, "needs exactly one sandbox ID");
  const std::string& id = args.positional[0];
  auto argv = SplitCommand(args.Last("cmd").value_or("/bin/sh"));
  if (!argv.ok()) return ReportUsage(ctx, "--cmd: " + argv.error().message);
  if (argv->empty()) return ReportUsage(ctx, "--cmd: the command is empty");
  const bool tty = ::isatty(0) == 1;
  auto size = TerminalSize(0);
  if (!size) size = TerminalSize(1);
  if (!size) size = std::pair<int, int>{80, 24};
  nlohmann::json body = {{"argv", *argv}, {"pty", {{"cols", size->first}, {"rows", size->second}}}};
  for (const auto& e : args.All("env")) {
    auto kv = ParseKeyValue(e, "--env");
    if (!kv.ok()) return ReportUsage(ctx, kv.error().message);
    body["env"][kv->first] = kv->second;
  }
  if (auto c = args.Last("cwd")) body["cwd"] = *c;
  const bool quiet = args.Has("quiet");

  int code = 0;
  auto process = StartProcess(ctx, id, body, "", &code);
  if (!process) return code;
  const std::string pid = ProcessId(*process);
  if (Str(*process, "state") == "AWAITING_REVIEW") {
    if (!quiet) NoticeProcessReview(id, pid, *process);
    // Until it starts (approved) or ends (rejected); nothing of its output is ours yet.
    Status st = ctx.client->FollowEvents(
        [&](int64_t after) { return ProcessEventsTarget(id, pid, after); }, 0,
        [](const nlohmann::json& ev) {
          const std::string type = Str(ev, "type");
          return type == "process.started" || type == "process.finished" ? EventAction::kStop
                                                                         : EventAction::kContinue;
        });
    auto now = ProcessAfter(ctx, st, id, pid);
    if (!now) return kExitRunFailed;
    if (Str(*now, "state") != "RUNNING") return Conclude(*now);
    if (!quiet) (void)WriteOut(2, fmt::format("sandboxctl: process {} was approved\n", pid));
  }

  // The channel, once open, for the signal thread's resize messages; shared with that thread,
  // which outlives this function.
  struct Shared {
    std::mutex mu;
    std::shared_ptr<DuplexChannel> channel;
  };
  auto shared = std::make_shared<Shared>();
  // Signals are blocked before any thread starts, so that every thread inherits the mask.
  StartTerminalSignalThread([shared] {
    auto now = TerminalSize(0);
    std::lock_guard lock(shared->mu);
    if (!now || !shared->channel) return;
    shared->channel->SendText(
        nlohmann::json{{"type", "resize"}, {"cols", now->first}, {"rows", now->second}}.dump());
  });
  std::optional<RawTerminal> raw;
  if (tty) {
    auto r = RawTerminal::Enter(0);
    if (!r.ok()) {
      ReportError(ctx, r.error());
      return kExitRunFailed;
    }
    raw.emplace(std::move(*r));
  }
  Status st = ctx.client->Duplex(
      ProcessTarget(id, pid) + "/pty",
      [&](std::shared_ptr<DuplexChannel> open) {
        {
          std::lock_guard lock(shared->mu);
          shared->channel = open;
        }
        // Our stdin to the terminal, byte for byte. The thread is left blocked in read(2) when
        // the session ends first; the process exits soon after.
        std::thread([open] {
          char buf[4096];
          for (;;) {
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            open->SendBinary(std::string(buf, static_cast<size_t>(n)));
          }
          // End of our input: without a terminal (a pipe, a file) the session ends with it,
          // and with a terminal that hung up too.
          open->Close();
        }).detach();
      },
      [&](std::string_view data, bool binary) -> Status {
        // Binary messages are the terminal's output; a text message is the server's own
        // notice, shown unless it is JSON for a client to act on.
        if (!binary && !data.empty() && data.front() == '{') return Ok();
        return WriteOut(1, data);
      });
  raw.reset();
  {
    std::lock_guard lock(shared->mu);
    shared->channel.reset();
  }
  auto now = ProcessAfter(ctx, st, id, pid);
  if (!now) return kExitRunFailed;
  if (Str(*now, "state") == "RUNNING") {
    if (!quiet) {
      (void)WriteOut(2, fmt::format("sandboxctl: our input ended; process {} goes on in "
                                    "sandbox {}\n",
                                    pid, id));
    }
    return 0;
  }
  return Conclude(*now);
}

}  // namespace sbx::ctl
