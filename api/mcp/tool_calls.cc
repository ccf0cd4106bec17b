// The MCP tools' work: each decodes its arguments, calls the SandboxService (which applies the
// command policy, the review gate and tenancy) and encodes what came of it.
#include <fmt/format.h>

#include <chrono>

#include "api/http/http.h"
#include "api/mcp/mcp_server.h"
#include "api/mcp/tool_args.h"
#include "api/v1/route_util.h"
#include "api/v1/sandbox_json.h"
#include "base/base64.h"
#include "supervisor/workspace/text.h"

namespace sbx::api::mcp {

using nlohmann::json;
using namespace internal;
using Clock = std::chrono::steady_clock;
using ToolResult = McpServer::ToolResult;

namespace {

ToolResult Failed(const Error& e) { return {ErrorJson(e), true, Explain(e)}; }
ToolResult Ok(json structured) { return {std::move(structured), false, {}}; }

// The label that marks a key's own MCP sandbox.
constexpr char kDefaultLabel[] = "mcp";
constexpr char kDefaultValue[] = "default";

// How often a waiting tool call tells the client it is still waiting, and looks at whether it
// was cancelled.
constexpr std::chrono::seconds kProgressEvery{2};

size_t MaxOutput(const supervisor::ServiceConfig* config, const std::optional<int64_t>& asked) {
  const int64_t cap = config ? config->mcp.max_output_bytes : (256 << 10);
  return static_cast<size_t>(asked ? std::min(*asked, cap) : cap);
}

}  // namespace

Result<std::string> McpServer::SandboxFor(const json& args, const CallContext& context) {
  auto id = StringArg(args, "sandbox_id", false);
  if (!id.ok()) return id.error();
  if (!id->empty()) return *id;
  auto* service = options_.sandboxes;
  // One lookup-or-create at a time, so that two first calls of one key make one sandbox.
  std::lock_guard lock(default_mu_);
  store::SandboxFilter f;
  f.states = store::NonTerminalSandboxStates();
  f.labels = {{kDefaultLabel, kDefaultValue}};
  f.submitter = context.who.name;
  f.limit = 1;
  auto page = service->List(f, context.who);
  if (!page.ok()) return page.error();
  const store::SandboxRecord* found = page->sandboxes.empty() ? nullptr : &page->sandboxes[0];
  store::SandboxRecord created;
  if (found == nullptr) {
    store::SandboxRequest r;
    r.labels = {{kDefaultLabel, kDefaultValue}};
    auto c = service->Create(std::move(r), context.who);
    if (!c.ok()) {
      return MakeError(c.error().code, "this key's MCP sandbox could not be created: {}",
                       c.error().message);
    }
    created = std::move(c->sandbox);
    found = &created;
  }
  if (found->state == store::SandboxState::kAwaitingReview ||
      found->state == store::SandboxState::kPending) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this key's MCP sandbox {} waits for a reviewer's approval (sandboxctl "
                     "sandbox approve {}, or POST /v1/sandboxes/{}:approve); call again once "
                     "it is approved",
                     found->id, found->id, found->id);
  }
  return found->id;
}

ToolResult McpServer::ProcessRun(const json& args, const CallContext& context, bool background,
                                 std::string* sandbox_out) {
  auto argv = CommandArg(args);
  if (!argv.ok()) return Failed(argv.error());
  json body = {{"argv", *argv}};
  for (const char* f : {"env", "cwd", "stdin", "timeout_s", "tag"}) {
    if (args.contains(f) && !args[f].is_null()) body[f] = args[f];
  }
  auto request = ProcessRequestFromJson(body);
  if (!request.ok()) return Failed(request.error());
  auto max_out = IntArg(args, "max_output_bytes", 1, 4 << 20);
  if (!max_out.ok()) return Failed(max_out.error());
  auto sandbox = SandboxFor(args, context);
  if (!sandbox.ok()) return Failed(sandbox.error());
  *sandbox_out = *sandbox;
  auto started = options_.sandboxes->StartProcess(*sandbox, std::move(*request), context.who);
  if (!started.ok()) return Failed(started.error());
  if (background) return Ok(ProcessToJson(*started));
  // As long as the process may run (its timeout and a margin to record its end), else 10 min.
  std::chrono::milliseconds limit = std::chrono::minutes(10);
  if (started->timeout_s) limit = std::chrono::seconds(*started->timeout_s + 5);
  const bool reviewing = started->state == store::ProcessState::kAwaitingReview;
  const int64_t review_wait_s = options_.config ? options_.config->mcp.review_wait_s : 120;
  return AwaitOutcome(*started, reviewing ? limit + std::chrono::seconds(review_wait_s) : limit,
                      MaxOutput(options_.config, *max_out), context);
}

ToolResult McpServer::AwaitOutcome(const store::ProcessRecord& process,
                                   std::chrono::milliseconds limit, size_t max_bytes,
                                   const CallContext& context) {
  auto* service = options_.sandboxes;
  const auto start = Clock::now();
  const int64_t review_wait_s = options_.config ? options_.config->mcp.review_wait_s : 120;
  const auto review_deadline = start + std::chrono::seconds(review_wait_s);
  double progress = 0;
  for (;;) {
    const auto now = Clock::now();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(start + limit - now);
    // Without progress to send or a cancel to notice, one wait covers the review window or
    // the whole run.
    std::chrono::milliseconds slice = left;
    if (context.notify || context.cancelled) slice = std::min<std::chrono::milliseconds>(left, kProgressEvery);
    auto current = service->GetProcess(process.sandbox_id, std::to_string(process.id), context.who);
    if (!current.ok()) return Failed(current.error());
    const bool reviewing = current->state == store::ProcessState::kAwaitingReview;
    if (reviewing) {
      auto to_deadline =
          std::chrono::duration_cast<std::chrono::milliseconds>(review_deadline - now);
      if (to_deadline.count() <= 0) {
        std::string msg = fmt::format(
            "process {} in sandbox {} waits for a reviewer: the command policy sends `{}` to "
            "review. A reviewer approves it with `sandboxctl sandbox approve {} {}` (or POST "
            "/v1/sandboxes/{}/processes/{}:approve); it then runs by itself",
            process.id, process.sandbox_id, fmt::join(process.argv, " "), process.sandbox_id,
            process.id, process.sandbox_id, process.id);
        json s = ProcessToJson(*current);
        s["error"] = {{"code", "awaiting_review"}, {"message", msg}};
        return {std::move(s), true, msg};
      }
      slice = std::min(slice, to_deadline);
    }
    if (left.count() <= 0) {
      std::string msg = fmt::format(
          "process {} in sandbox {} is still running after {} s; it goes on in the background",
          process.id, process.sandbox_id,
          std::chrono::duration_cast<std::chrono::seconds>(limit).count());
      return {ProcessToJson(*current), true, msg};
    }
    auto outcome = service->WaitProcess(process.sandbox_id, process.id, slice, max_bytes,
                                        context.who);
    if (outcome.ok()) {
      json s = OutcomeJson(*outcome);
      const auto& p = outcome->process;
      if (p.state == store::ProcessState::kRejected) {
        std::string msg = fmt::format("a reviewer rejected process {} (`{}`)", p.id,
                                      fmt::join(p.argv, " "));
        return {std::move(s), true, msg};
      }
      if (p.state == store::ProcessState::kCancelled) {
        return {std::move(s), true,
                fmt::format("process {} was cancelled before it ran: its sandbox ended", p.id)};
      }
      const bool clean = p.result && p.result->exit_code == 0 && !p.result->signal;
      if (clean) return Ok(std::move(s));
      std::string how =
          !p.result ? "did not finish"
          : p.result->exit_code
              ? fmt::format("exited with status {}", *p.result->exit_code)
          : p.result->signal ? fmt::format("was killed by signal {} ({})", *p.result->signal,
                                           store::RenderEndReason(p.result->reason))
                             : fmt::format("ended: {}", store::RenderEndReason(p.result->reason));
      std::string msg = fmt::format("the command {}.\n{}", how, DumpJson(s));
      return {std::move(s), true, std::move(msg)};
    }
    if (outcome.error().code != ErrorCode::kUnavailable) return Failed(outcome.error());
    if (context.cancelled && context.cancelled->load()) {
      (void)service->Kill(process.sandbox_id, std::to_string(process.id), context.who);
      return {ProcessToJson(*current), true,
              fmt::format("cancelled by the client: process {} was killed", process.id)};
    }
    if (context.notify) {
      progress += 1;
      const auto waited =
          std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
      std::string message =
          reviewing ? fmt::format("process {} waits for a reviewer ({} s)", process.id, waited)
                    : fmt::format("process {} running ({} s)", process.id, waited);
      context.notify(json{{"progress", progress}, {"message", message}});
    }
  }
}

ToolResult McpServer::ProcessWait(const json& args, const CallContext& context,
                                  std::string* sandbox_out) {
  auto timeout = IntArg(args, "timeout_s", 1, 3600);
  if (!timeout.ok()) return Failed(timeout.error());
  auto max_out = IntArg(args, "max_output_bytes", 1, 4 << 20);
  if (!max_out.ok()) return Failed(max_out.error());
  auto sandbox = SandboxFor(args, context);
  if (!sandbox.ok()) return Failed(sandbox.error());
  *sandbox_out = *sandbox;
  auto p = options_.sandboxes->GetProcess(*sandbox, ProcessIdArg(args), context.who);
  if (!p.ok()) return Failed(p.error());
  return AwaitOutcome(*p, std::chrono::seconds(timeout->value_or(60)),
                      MaxOutput(options_.config, *max_out), context);
}

ToolResult McpServer::File(const ToolSpec& tool, const json& args, const CallContext& context,
                           std::string* sandbox_out) {
  auto path_arg = StringArg(args, "path", tool.id != ToolId::kFileList);
  if (!path_arg.ok()) return Failed(path_arg.error());
  const std::string path_text = path_arg->empty() ? std::string(1, '/') : std::move(*path_arg);
  const std::string* path = &path_text;
  auto sandbox = SandboxFor(args, context);
  if (!sandbox.ok()) return Failed(sandbox.error());
  *sandbox_out = *sandbox;
  auto root = options_.sandboxes->Files(*sandbox, context.who);
  if (!root.ok()) return Failed(root.error());
  switch (tool.id) {
    case ToolId::kFileRead: {
      auto offset = IntArg(args, "offset", 0, int64_t{1} << 50);
      if (!offset.ok()) return Failed(offset.error());
      auto max = IntArg(args, "max_bytes", 1, 4 << 20);
      if (!max.ok()) return Failed(max.error());
      auto read = root->Read(*path);
      if (!read.ok()) return Failed(read.error());
      if (read->listing) {
        return Failed(MakeError(ErrorCode::kInvalidArgument,
                                "{} is a directory: use file_list", *path));
      }
      const uint64_t off = static_cast<uint64_t>(offset->value_or(0));
      const size_t want = MaxOutput(options_.config, *max);
      auto bytes = ReadAt(read->file.get(), off, want);
      if (!bytes.ok()) return Failed(bytes.error());
      const bool truncated = off + bytes->size() < read->info.size;
      json s = {{"path", *path},
                {"size", read->info.size},
                {"offset", off},
                {"truncated", truncated}};
      // A cut may fall inside a UTF-8 sequence: up to three trailing bytes are left for the
      // next read rather than making the whole text base64.
      std::string text = std::move(*bytes);
      if (truncated && !supervisor::IsValidUtf8(text)) {
        for (size_t cut = 1; cut <= 3 && cut < text.size(); ++cut) {
          if (supervisor::IsValidUtf8(std::string_view(text).substr(0, text.size() - cut))) {
            text.resize(text.size() - cut);
            break;
          }
        }
      }
      if (supervisor::IsValidUtf8(text)) {
        s["encoding"] = "utf-8";
        s["content"] = std::move(text);
      } else {
        s["encoding"] = "base64";
        s["content"] = Base64Encode(text);
      }
      return Ok(std::move(s));
    }
    case ToolId::kFileWrite: {
      auto content = StringArg(args, "content", true);
      if (!content.ok()) return Failed(content.error());
      auto encoding = StringArg(args, "encoding", false);
      if (!encoding.ok()) return Failed(encoding.error());
      std::string data;
      if (encoding->empty() || *encoding == "utf-8") {
        data = std::move(*content);
      } else if (*encoding == "base64") {
        if (!IsStrictBase64(*content)) {
          return Failed(MakeError(ErrorCode::kInvalidArgument, "content is not valid base64"));
        }
        data = Base64Decode(*content);
      } else {
        return Failed(MakeError(ErrorCode::kInvalidArgument,
                                "encoding must be \"utf-8\" or \"base64\""));
      }
      files::WriteOptions o;
      auto parents = BoolArg(args, "make_parents");
      if (!parents.ok()) return Failed(parents.error());
      o.make_parents = *parents;
      auto mode = IntArg(args, "mode", 0, 0777);
      if (!mode.ok()) return Failed(mode.error());
      if (*mode) o.mode = static_cast<uint32_t>(**mode);
      if (Status st = root->Write(*path, data, o); !st.ok()) return Failed(st.error());
      return Ok({{"path", *path}, {"size", data.size()}});
    }
    case ToolId::kFileList: {
      auto list = root->List(*path);
      if (!list.ok()) return Failed(list.error());
      json entries = json::array();
      for (const auto& e : list->entries) {
        entries.push_back({{"name", Utf8Lossy(e.name)},
                           {"type", files::FileTypeName(e.type)},
                           {"size", e.size},
                           {"mode", e.mode},
                           {"mtime", FormatMtime(e.mtime_ns)}});
      }
      return Ok({{"path", *path}, {"entries", std::move(entries)}, {"truncated", list->truncated}});
    }
    case ToolId::kFileMkdir: {
      if (Status st = root->MakeDirectories(*path); !st.ok()) return Failed(st.error());
      return Ok({{"path", *path}});
    }
    case ToolId::kFileRemove: {
      auto recursive = BoolArg(args, "recursive");
      if (!recursive.ok()) return Failed(recursive.error());
      if (Status st = root->Remove(*path, *recursive); !st.ok()) return Failed(st.error());
      return Ok({{"path", *path}, {"removed", true}});
    }
    default: break;
  }
  return Failed(MakeError(ErrorCode::kInternal, "not a file tool"));
}

ToolResult McpServer::Sandbox(const ToolSpec& tool, const json& args, const CallContext& context,
                              std::string* sandbox_out) {
  auto* service = options_.sandboxes;
  const auto& who = context.who;
  auto shown = [&](const Result<store::SandboxRecord>& r) -> ToolResult {
    if (!r.ok()) return Failed(r.error());
    return Ok(SandboxToJson(*r, service->Live(r->id)));
  };
  switch (tool.id) {
    case ToolId::kSandboxCreate: {
      json body = json::object();
      json limits = json::object();
      for (const char* f : {"cpus", "memory", "timeout_s"}) {
        if (args.contains(f) && !args[f].is_null()) limits[f] = args[f];
      }
      if (!limits.empty()) body["limits"] = limits;
      for (const char* f : {"idle_timeout_s", "env", "labels", "from_snapshot"}) {
        if (args.contains(f) && !args[f].is_null()) body[f] = args[f];
      }
      auto request = SandboxRequestFromJson(body);
      if (!request.ok()) return Failed(request.error());
      auto created = service->Create(std::move(*request), who);
      if (!created.ok()) return Failed(created.error());
      *sandbox_out = created->sandbox.id;
      return Ok(SandboxToJson(created->sandbox, service->Live(created->sandbox.id)));
    }
    case ToolId::kSandboxList: {
      store::SandboxFilter f;
      f.submitter = who.name;
      f.limit = 100;
      auto state = StringArg(args, "state", false);
      if (!state.ok()) return Failed(state.error());
      if (!state->empty()) {
        auto s = store::ParseSandboxState(*state);
        if (!s.ok()) return Failed(s.error());
        f.states = {*s};
      }
      if (args.contains("labels")) {
        auto labels = StringMap(args["labels"], "labels");
        if (!labels.ok()) return Failed(labels.error());
        f.labels = std::move(*labels);
      }
      auto page = service->List(std::move(f), who);
      if (!page.ok()) return Failed(page.error());
      json out = json::array();
      for (const auto& s : page->sandboxes) out.push_back(SandboxToJson(s, service->Live(s.id)));
      return Ok({{"sandboxes", std::move(out)}});
    }
    default: break;
  }
  auto id = StringArg(args, "sandbox_id", true);
  if (!id.ok()) return Failed(id.error());
  *sandbox_out = *id;
  switch (tool.id) {
    case ToolId::kSandboxGet: return shown(service->Get(*id, who));
    case ToolId::kSandboxDelete: return shown(service->Delete(*id, who));
    case ToolId::kSandboxPause: return shown(service->Pause(*id, who));
    case ToolId::kSandboxResume: return shown(service->Resume(*id, who));
    default: break;
  }
  return Failed(MakeError(ErrorCode::kInternal, "not a sandbox tool"));
}

ToolResult McpServer::ProcessQuery(const ToolSpec& tool, const json& args,
                                   const CallContext& context, std::string* sandbox_out) {
  auto* service = options_.sandboxes;
  auto sandbox = SandboxFor(args, context);
  if (!sandbox.ok()) return Failed(sandbox.error());
  *sandbox_out = *sandbox;
  if (tool.id == ToolId::kProcessList) {
    store::ProcessFilter f;
    f.limit = 1000;
    auto list = service->ListProcesses(*sandbox, std::move(f), context.who);
    if (!list.ok()) return Failed(list.error());
    json out = json::array();
    for (const auto& p : *list) out.push_back(ProcessToJson(p));
    return Ok({{"processes", std::move(out)}});
  }
  const std::string pid = ProcessIdArg(args);
  if (pid.empty()) {
    return Failed(MakeError(ErrorCode::kInvalidArgument,
                            "process_id must be a process number or a tag"));
  }
  if (tool.id == ToolId::kProcessSignal) {
    int sig = SIGTERM;
    if (args.contains("signal") && !args["signal"].is_null()) {
      auto parsed = ParseSignal(args["signal"]);
      if (!parsed.ok()) return Failed(parsed.error());
      sig = *parsed;
    }
    auto p = service->GetProcess(*sandbox, pid, context.who);
    if (!p.ok()) return Failed(p.error());
    Status st = sig == SIGKILL ? service->Kill(*sandbox, pid, context.who)
                               : service->Signal(*sandbox, pid, sig, context.who);
    if (!st.ok()) return Failed(st.error());
    return Ok({{"sandbox_id", *sandbox}, {"process_id", p->id}, {"signal", sig}});
  }
  // process_logs
  auto out_off = IntArg(args, "stdout_offset", 0, int64_t{1} << 50);
  if (!out_off.ok()) return Failed(out_off.error());
  auto err_off = IntArg(args, "stderr_offset", 0, int64_t{1} << 50);
  if (!err_off.ok()) return Failed(err_off.error());
  auto max = IntArg(args, "max_bytes", 1, 4 << 20);
  if (!max.ok()) return Failed(max.error());
  auto handle = service->Output(*sandbox, pid, context.who);
  if (!handle.ok()) return Failed(handle.error());
  const int64_t want = static_cast<int64_t>(MaxOutput(options_.config, *max));
  ProcessStreams streams(handle->dir);
  std::string out = streams.Read(1, out_off->value_or(0), want);
  std::string err = streams.Read(2, err_off->value_or(0), want);
  const int64_t out_next = out_off->value_or(0) + static_cast<int64_t>(out.size());
  const int64_t err_next = err_off->value_or(0) + static_cast<int64_t>(err.size());
  return Ok({{"sandbox_id", *sandbox},
             {"process_id", handle->process.id},
             {"state", store::ProcessStateName(handle->process.state)},
             {"stdout", Utf8Lossy(std::move(out))},
             {"stderr", Utf8Lossy(std::move(err))},
             {"stdout_next_offset", out_next},
             {"stderr_next_offset", err_next}});
}

}  // namespace sbx::api::mcp
