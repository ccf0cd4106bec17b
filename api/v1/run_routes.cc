#include "api/v1/run_routes.h"

#include "api/v1/node_proxy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "api/v1/event_pump.h"
#include "api/v1/route_util.h"
#include "base/fs.h"
#include "supervisor/exec/result_json.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/workspace/artifacts.h"
#include "supervisor/workspace/run_logs.h"

namespace sbx::api {
namespace {

using store::EventType;
using store::RunRecord;

}  // namespace

const char* const kRedacted = "<redacted>";

Result<RunRecord> VisibleRun(const RouteContext& ctx, const Request& req) {
  auto run = ctx.store->GetRun(req.PathParam("id"));
  if (!run.ok()) return run;
  if (auto owner = OwnerFilter(req); owner && run->submitter != *owner) {
    // The store's own words for a run that does not exist: nothing tells the two apart.
    return MakeError(ErrorCode::kNotFound, "run {} not found", req.PathParam("id"));
  }
  return run;
}

nlohmann::json RunToJson(const RunRecord& r) {
  nlohmann::json j;
  j["id"] = r.id;
  j["state"] = store::RunStateName(r.state);
  j["submitter"] = r.submitter;
  if (r.steps.empty()) {
    j["argv"] = r.argv;
  } else {
    j["steps"] = nlohmann::json::array();
    for (const auto& s : r.steps) j["steps"].push_back({{"name", s.name}, {"argv", s.argv}});
  }
  nlohmann::json limits;
  limits["cpus"] = r.limits.cpus ? nlohmann::json(*r.limits.cpus) : nlohmann::json(nullptr);
  limits["memory"] = OptInt(r.limits.memory_bytes);
  limits["pids"] = OptInt(r.limits.pids);
  limits["timeout_s"] = OptInt(r.limits.timeout_s);
  limits["output_bytes"] = OptInt(r.limits.output_bytes);
  j["limits"] = limits;
  j["network"] = r.network;
  j["seccomp_profile"] = r.seccomp_profile.empty() ? "default" : r.seccomp_profile;
  // Values are secrets (tokens, passwords): the names alone go out, to anyone.
  j["env"] = nlohmann::json::object();
  for (const auto& [name, value] : r.env) j["env"][name] = kRedacted;
  j["stdin_bytes"] = r.stdin_data.size();
  j["labels"] = r.labels;
  if (r.workspace && !r.workspace->sha.empty()) {
    // A pinned checkout: its tree is the run's own, made for it and removed after it.
    j["workspace"] = nullptr;
    j["checkout"] = {{"repo", r.workspace->repo},
                     {"sha", r.workspace->sha},
                     {"mode", r.workspace->mode}};
  } else {
    j["workspace"] = r.workspace ? nlohmann::json{{"path", r.workspace->path},
                                                  {"mode", r.workspace->mode}}
                                 : nlohmann::json(nullptr);
    j["checkout"] = nullptr;
  }
  j["idempotency_key"] = r.idempotency_key ? nlohmann::json(*r.idempotency_key) : nullptr;
  j["policy"] = r.policy;
  // Fixed when the run was planned; runs planned before it was stored compute it.
  auto stored_plan = r.policy.is_object() ? r.policy.find("plan_sha256") : r.policy.end();
  j["plan_sha256"] = stored_plan != r.policy.end() && stored_plan->is_string()
                         ? stored_plan->get<std::string>()
                         : supervisor::PlanSha256(r);
  // What a reviewer decides with: how many approvals it needs, which it has, until when.
  if (r.policy.is_object() && r.policy.value("decision", "") == "review") {
    nlohmann::json votes = nlohmann::json::array();
    if (r.approval) {
      for (const auto& v : r.approval->votes) votes.push_back(store::ReviewVoteJson(v));
    }
    auto expires = r.policy.find("review_expires_at_ms");
    j["review"] = {{"approvals_required", r.policy.value("approvals_required", 1)},
                   {"approvals", votes},
                   {"expires_at_ms", expires != r.policy.end() ? *expires : nlohmann::json(nullptr)}};
  } else {
    j["review"] = nullptr;
  }
  if (r.approval && !r.approval->approved_by.empty()) {
    j["approval"] = {{"approved_by", r.approval->approved_by},
                     {"approved_at_ms", r.approval->approved_at_ms},
                     {"rule", r.approval->rule}};
  } else {
    j["approval"] = nullptr;
  }
  j["node"] = r.node ? nlohmann::json(*r.node) : nullptr;
  j["node_selector"] = r.node_selector;
  j["retry_on_node_loss"] = r.retry_on_node_loss;
  j["attempt"] = r.attempt;
  // The backend asked for (the default filled in at submission); result.backend says which ran it.
  j["backend"] = r.backend.empty() ? "native" : r.backend;
  j["image"] = r.image.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.image);
  j["project_id"] = r.project_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.project_id);
  j["created_at_ms"] = r.created_at_ms;
  j["queued_at_ms"] = OptInt(r.queued_at_ms);
  j["started_at_ms"] = OptInt(r.started_at_ms);
  j["finished_at_ms"] = OptInt(r.finished_at_ms);
  if (r.result) {
    nlohmann::json res = supervisor::StepResultJson({"", r.result->reason, r.result->exit_code,
                                         r.result->signal, r.result->wall_ms, r.result->cpu_ms,
                                         r.result->memory_peak_bytes});
    res.erase("name");
    res["seccomp_denials"] = supervisor::SeccompDenialsJson(r.result->seccomp_denials);
    res["output_truncated"] = r.result->output_truncated;
    res["backend"] = r.result->backend.empty() ? nlohmann::json(nullptr)
                                               : nlohmann::json(r.result->backend);
    res["steps"] = nlohmann::json::array();
    for (const auto& s : r.result->steps) res["steps"].push_back(supervisor::StepResultJson(s));
    res["isolation"] = r.result->isolation;
    j["result"] = res;
  } else {
    j["result"] = nullptr;
  }
  return j;
}

Result<store::RunRequest> RunRequestFromJson(const nlohmann::json& body) {
  if (!body.is_object()) return FieldError("body", "must be a JSON object");
  static const std::set<std::string> kKnown = {
      "argv",  "steps",  "limits", "network",   "seccomp_profile", "env",
      "stdin", "labels", "workspace", "idempotency_key", "backend", "image", "project",
      "checkout", "node_selector", "retry_on_node_loss"};
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (!kKnown.count(it.key())) return FieldError(it.key(), "unknown field");
  }
  store::RunRequest r;
  if (body.contains("argv")) {
    auto a = StringArray(body["argv"], "argv");
    if (!a.ok()) return std::move(a).error();
    r.argv = std::move(*a);
  }
  if (body.contains("steps")) {
    const auto& steps = body["steps"];
    if (!steps.is_array() || steps.empty()) return FieldError("steps", "must be a non-empty array");
    for (size_t i = 0; i < steps.size(); ++i) {
      std::string f = fmt::format("steps[{}]", i);
      if (!steps[i].is_object()) return FieldError(f, "must be an object {name, argv}");
      store::Step s;
      for (auto it = steps[i].begin(); it != steps[i].end(); ++it) {
        if (it.key() != "name" && it.key() != "argv") return FieldError(f + "." + it.key(), "unknown field");
      }
      if (steps[i].contains("name")) {
        if (!steps[i]["name"].is_string()) return FieldError(f + ".name", "must be a string");
        s.name = steps[i]["name"].get<std::string>();
      }
      auto a = StringArray(steps[i].value("argv", nlohmann::json()), f + ".argv");
      if (!a.ok()) return std::move(a).error();
      s.argv = std::move(*a);
      r.steps.push_back(std::move(s));
    }
  }
  if (body.contains("limits")) {
    auto l = LimitsFromJson(body["limits"], "limits");
    if (!l.ok()) return std::move(l).error();
    r.limits = *l;
  }
  for (const char* f :
       {"network", "seccomp_profile", "stdin", "idempotency_key", "backend", "image", "project"}) {
    if (body.contains(f) && !body[f].is_string()) return FieldError(f, "must be a string");
  }
  r.network = body.value("network", "");
  r.seccomp_profile = body.value("seccomp_profile", "");
  r.stdin_data = body.value("stdin", "");
  if (auto it = body.find("workspace"); it != body.end() && !it->is_null()) {
    // "PATH" (read-only) or {"path": PATH, "mode": "ro" | "cow"}.
    store::Workspace ws;
    if (it->is_string()) {
      ws.path = it->get<std::string>();
    } else if (it->is_object()) {
      for (auto f = it->begin(); f != it->end(); ++f) {
        if (f.key() != "path" && f.key() != "mode") {
          return FieldError("workspace." + f.key(), "unknown field (path, mode)");
        }
        if (!f.value().is_string()) return FieldError("workspace." + f.key(), "must be a string");
      }
      ws.path = it->value("path", "");
      ws.mode = it->value("mode", "ro");
    } else {
      return FieldError("workspace", "must be a path or {\"path\", \"mode\"}");
    }
    if (ws.path.empty()) return FieldError("workspace.path", "must name a directory");
    if (ws.path.find('\0') != std::string::npos) {
      return FieldError("workspace.path", "must not contain NUL");
    }
    if (ws.mode != "ro" && ws.mode != "cow") {
      return FieldError("workspace.mode", "use \"ro\" (read-only) or \"cow\" (copy-on-write)");
    }
    r.workspace = std::move(ws);
  }
  if (body.contains("idempotency_key")) r.idempotency_key = body["idempotency_key"].get<std::string>();
  r.backend = body.value("backend", "");
  if (!r.backend.empty() && r.backend != "native" && r.backend != "docker" && r.backend != "auto") {
    return FieldError("backend", "'" + r.backend + "' is not a backend (native, docker, auto)");
  }
  r.image = body.value("image", "");
  // The project, by id or name; resolved (and the caller's membership checked) on submission.
  r.project_id = body.value("project", "");
  if (body.contains("project") && r.project_id.empty()) {
    return FieldError("project", "must name a project");
  }
  // {"repo": URL or path, or "project": its repo, "sha": 40 hex, "mode"?: "ro" | "cow"}.
  if (auto it = body.find("checkout"); it != body.end() && !it->is_null()) {
    if (r.workspace) return FieldError("checkout", "give workspace or checkout, not both");
    if (!it->is_object())
      return FieldError("checkout", "must be {\"repo\" or \"project\", \"sha\"}");
    store::Workspace ws;
    for (auto f = it->begin(); f != it->end(); ++f) {
      if (!f.value().is_string()) return FieldError("checkout." + f.key(), "must be a string");
      const std::string v = f.value().get<std::string>();
      if (f.key() == "repo") {
        ws.repo = v;
      } else if (f.key() == "sha") {
        ws.sha = v;
      } else if (f.key() == "mode") {
        ws.mode = v;
      } else if (f.key() == "project") {
        if (!r.project_id.empty() && r.project_id != v) {
          return FieldError("checkout.project", "names another project than \"project\"");
        }
        r.project_id = v;
      } else {
        return FieldError("checkout." + f.key(), "unknown field (repo, project, sha, mode)");
      }
    }
    if (ws.sha.empty()) return FieldError("checkout.sha", "names the commit (40 hex digits)");
    if (ws.repo.empty() && r.project_id.empty()) {
      return FieldError("checkout", "names a repo, or a project whose repo it is");
    }
    if (ws.mode != "ro" && ws.mode != "cow") {
      return FieldError("checkout.mode", "use \"ro\" (a change fails the run) or \"cow\"");
    }
    r.workspace = std::move(ws);
  }
  if (body.contains("image") && (r.image.empty() || r.image.find('\0') != std::string::npos)) {
    return FieldError("image", "must name an image");
  }
  if (!r.image.empty() && r.backend == "native") {
    return FieldError("image", "needs the docker backend (the native backend runs the host's "
                               "system directories); drop \"image\" or ask for docker or auto");
  }
  SBX_TRY(OptionalStringMap(body, "env", &r.env));
  SBX_TRY(OptionalStringMap(body, "labels", &r.labels));
  SBX_TRY(OptionalStringMap(body, "node_selector", &r.node_selector));
  SBX_TRY(store::CheckNodeLabels(r.node_selector, "node_selector"));
  if (auto it = body.find("retry_on_node_loss"); it != body.end()) {
    if (!it->is_boolean()) return FieldError("retry_on_node_loss", "must be true or false");
    r.retry_on_node_loss = it->get<bool>();  // needs an idempotency key: the store checks
  }
  return r;
}

namespace {

Reply Fail(const Error& e) { return ErrorResponse(e); }

Reply GetRunHandler(const RouteContext& ctx, const Request& req) {
  auto run = VisibleRun(ctx, req);
  if (!run.ok()) return Fail(run.error());
  nlohmann::json j = RunToJson(*run);
  // ?timeline=true: how long each phase of its execution took, in microseconds.
  if (auto t = req.query.Get("timeline")) {
    if (*t != "true" && *t != "false") return Fail(FieldError("timeline", "must be true or false"));
    if (*t == "true" && run->result) {
      nlohmann::json timeline = nlohmann::json::array();
      for (const auto& p : run->result->timeline) {
        timeline.push_back({{"phase", p.phase}, {"us", p.us}});
      }
      j["result"]["timeline"] = std::move(timeline);
    }
  }
  return JsonResponse(200, j);
}

// A step.log event's bytes as a range of its open log file, for SendBinary; no fd when the
// event carries its bytes itself, or the file is gone or shorter than the range (the message is
// then built in memory from what there is). *path and *fd keep the last file open.
FileBytes LogFileBytes(const store::EventRecord& e, const std::string& data_dir, std::string* path,
                       std::shared_ptr<const UniqueFd>* fd) {
  auto range = supervisor::LogEventRange(e, data_dir);
  if (!range) return {};
  if (!*fd || *path != range->path) {
    UniqueFd f(::open(range->path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!f) return {};
    *fd = std::make_shared<const UniqueFd>(std::move(f));
    *path = range->path;
  }
  struct stat st;
  if (::fstat((*fd)->get(), &st) < 0 || !S_ISREG(st.st_mode) ||
      st.st_size < range->offset + static_cast<int64_t>(range->length)) {
    return {};
  }
  return {*fd, range->offset, range->length};
}

// Whether runs belong to one submitter, remembered per run for one event stream (read on the
// pump's delivery thread, one event at a time). Bounded: past kMax runs it starts again.
class OwnedRuns {
 public:
  OwnedRuns(store::Store* store, std::string owner) : store_(store), owner_(std::move(owner)) {}
  bool Owns(const std::string& run_id) {
    if (auto it = known_.find(run_id); it != known_.end()) return it->second;
    auto run = store_->GetRun(run_id);
    if (!run.ok()) return false;  // unknown, or the store failed: shown to nobody but reviewers
    if (known_.size() >= kMax) known_.clear();
    return known_[run_id] = run->submitter == owner_;
  }

 private:
  static constexpr size_t kMax = 4096;
  store::Store* store_;
  std::string owner_;
  std::unordered_map<std::string, bool> known_;
};

Reply EventsHandler(const RouteContext& ctx, const Request& req, bool one_run) {
  std::string run_id;
  std::optional<store::RunRecord> run;
  if (one_run) {
    auto visible = VisibleRun(ctx, req);
    if (!visible.ok()) return Fail(visible.error());
    run = std::move(*visible);
    run_id = run->id;
  }
  auto after = NonNegativeParam(req, "after");
  if (!after.ok()) return Fail(after.error());
  // A run that ran on another node: its stream is that node's (its step.log bytes are there).
  if (run) {
    if (auto relayed = RelayEventsFromOwner(ctx, req, *run, *after)) return std::move(*relayed);
  }
  // format=binary: step.log events as binary messages (EventToBinaryMessage), the rest as JSON.
  bool binary = false;
  if (auto f = req.query.Get("format")) {
    if (*f == "binary") {
      binary = true;
    } else if (*f != "json") {
      return Fail(FieldError("format", "must be json or binary"));
    }
  }
  WebSocketAccept accept;
  accept.resume_after = *after;
  RouteContext c = ctx;
  // Every run's events: a submitter's stream carries its own runs' alone.
  std::shared_ptr<OwnedRuns> owned;
  if (auto owner = OwnerFilter(req); owner && !one_run) {
    owned = std::make_shared<OwnedRuns>(ctx.store, *owner);
  }
  accept.on_open = [c, run_id, after = *after, one_run, binary,
                    owned](std::shared_ptr<WebSocket> ws) {
    // One run: positions are its seq, and the session ends after run.completed. Every run:
    // positions are the store's cursor, and the session stays open.
    std::string data_dir = c.config->data_dir;
    EventPump::Consumer consumer;
    // A message that does not fit yet is kept (not rebuilt) until the client has read enough:
    // a log chunk is up to 1 MiB, and the queue's byte cap must never turn into an overflow
    // for a client that keeps reading.
    struct Pending {
      int64_t position = -1;
      std::string message;
      FileBytes file;  // a binary step.log message's bytes, sent from its log file
      bool binary = false;
      // The log file the last message came from, kept open for the next one.
      std::string log_path;
      std::shared_ptr<const UniqueFd> log_fd;
    };
    auto pending = std::make_shared<Pending>();
    // The last position delivered or skipped, for caught_up below.
    auto last = std::make_shared<std::atomic<int64_t>>(after);
    consumer.deliver = [ws, one_run, data_dir, binary, pending, owned,
                        last](const store::EventRecord& e) {
      last->store(one_run ? e.seq : e.cursor);
      if (owned && !owned->Owns(e.run_id)) return EventPump::Step::kNext;
      if (ws->queue_space() == 0) return EventPump::Step::kWait;
      const int64_t position = one_run ? e.seq : e.cursor;
      if (pending->position != position) {
        pending->position = position;
        pending->binary = binary && e.type == EventType::kStepLog;
        pending->file = {};
        if (pending->binary) {
          pending->file = LogFileBytes(e, data_dir, &pending->log_path, &pending->log_fd);
        }
        pending->message = !pending->binary   ? EventToJsonText(e, data_dir)
                           : pending->file.fd ? BinaryMessageHead(e)
                                              : EventToBinaryMessage(e, data_dir);
      }
      if (!ws->HasRoomFor(pending->message.size() + pending->file.length)) {
        return EventPump::Step::kWait;
      }
      std::string message = std::move(pending->message);
      pending->position = -1;
      auto sent = !pending->binary ? ws->Send(std::move(message), position)
                  : pending->file.fd
                      ? ws->SendBinary(std::move(message), std::move(pending->file), position)
                      : ws->SendBinary(std::move(message), position);
      if (sent != WebSocket::SendResult::kQueued) return EventPump::Step::kStop;
      if (one_run && e.type == EventType::kRunCompleted) {
        ws->Close();
        return EventPump::Step::kStop;
      }
      return EventPump::Step::kNext;
    };
    consumer.on_writable = [ws](std::function<void()> f) { ws->OnWritable(std::move(f)); };
    if (one_run) {
      // A client that resumes at or past the run's run.completed (its last event) is told at
      // once that nothing more will come. A run turns terminal before its artifacts and
      // run.completed are recorded, so the state alone does not say the stream is over.
      store::Store* store = c.store;
      consumer.caught_up = [ws, store, run_id, last] {
        const int64_t pos = last->load();
        if (pos < 1) return false;
        auto run = store->GetRun(run_id);
        if (!run.ok() || !store::IsTerminal(run->state)) return false;
        auto at = store->ListEvents(run_id, pos - 1, 1);
        if (!at.ok()) return false;
        std::optional<store::EventRecord> end;
        if (!at->empty()) {
          end = at->front();
        } else {
          // Past the last event (seqs have no gaps): look at what the last one is.
          int64_t seq = 0;
          for (;;) {
            auto page = store->ListEvents(run_id, seq, 1000);
            if (!page.ok()) return false;
            if (page->empty()) break;
            end = page->back();
            seq = end->seq;
            if (page->size() < 1000) break;
          }
        }
        if (!end || end->type != EventType::kRunCompleted) return false;
        ws->Close();
        return true;
      };
    }
    auto pump = EventPump::Start(*c.runs, *c.store, run_id, after, std::move(consumer));
    ws->OnClose([pump](WebSocket::CloseReason) { pump->Stop(); });
  };
  return accept;
}


std::string TailLines(const std::string& s, int64_t n) {
  if (n < 0) return s;
  if (n == 0) return "";
  size_t pos = s.size();
  if (pos > 0 && s[pos - 1] == '\n') --pos;
  for (int64_t i = 0; i < n; ++i) {
    size_t nl = pos == 0 ? std::string::npos : s.rfind('\n', pos - 1);
    if (nl == std::string::npos) return s;
    pos = nl;
  }
  return s.substr(pos + 1);
}

// The last n lines (TailLines) of a text handed over piece by piece, keeping little more than
// them: the kept text is cut back to its last n lines whenever it has doubled.
class TailWindow {
 public:
  explicit TailWindow(int64_t n) : n_(n) {}
  void Add(std::string_view piece) {
    kept_.append(piece);
    if (kept_.size() >= 2 * trimmed_ + (64 << 10)) {
      kept_ = TailLines(kept_, n_);
      trimmed_ = kept_.size();
    }
  }
  std::string Take() { return TailLines(kept_, n_); }

 private:
  int64_t n_;
  std::string kept_;
  size_t trimmed_ = 0;
};

// "2026-11-23T01:05:59.123Z ".
std::string TimestampPrefix(int64_t ts_ms) {
  time_t secs = static_cast<time_t>(ts_ms / 1000);
  struct tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z ", std::string_view(buf, n), static_cast<int>(ts_ms % 1000));
}

// With timestamps, each line gets the time its first byte arrived (a line split over several
// chunks keeps the first one's), per stream.
class LogFormatter {
 public:
  explicit LogFormatter(bool timestamps) : timestamps_(timestamps) {}
  std::string Format(const store::EventRecord& e, std::string bytes) {
    if (!timestamps_ || bytes.empty()) return bytes;
    bool& at_line_start = e.data.value("stream", "") == "stderr" ? err_bol_ : out_bol_;
    std::string prefix = TimestampPrefix(e.ts_ms), out;
    out.reserve(bytes.size() + prefix.size());
    for (char ch : bytes) {
      if (at_line_start) out += prefix;
      out.push_back(ch);
      at_line_start = ch == '\n';
    }
    return out;
  }

 private:
  bool timestamps_;
  bool out_bol_ = true, err_bol_ = true;
};

Reply LogsHandler(const RouteContext& ctx, const Request& req) {
  auto run = VisibleRun(ctx, req);
  if (!run.ok()) return Fail(run.error());
  // Its log files are on the node that ran it.
  if (auto forwarded = ForwardToOwner(ctx, req, *run)) return std::move(*forwarded);
  std::string stream(req.query.Get("stream").value_or("all"));
  if (stream != "stdout" && stream != "stderr" && stream != "all") {
    return ErrorResponse(400, "invalid_argument", "stream: use stdout, stderr or all");
  }
  int64_t tail = -1;
  if (auto t = req.query.Get("tail")) {
    try {
      tail = std::stoll(std::string(*t));
    } catch (const std::exception&) {
      tail = -2;
    }
    if (tail < 0) return ErrorResponse(400, "invalid_argument", "tail: a non-negative integer");
  }
  auto follow = FlagParam(req, "follow");
  if (!follow.ok()) return Fail(follow.error());
  auto timestamps = FlagParam(req, "timestamps");
  if (!timestamps.ok()) return Fail(timestamps.error());
  // The log is its latest attempt's: a run requeued after its node was lost ran again from the
  // start, and its earlier attempt's chunks stay in its events (and their bytes on that node).
  auto latest = std::make_shared<int64_t>(std::max<int64_t>(run->attempt, 1));
  auto matches = [stream, latest](const store::EventRecord& e) {
    if (e.type != EventType::kStepLog ||
        (stream != "all" && e.data.value("stream", "") != stream)) {
      return false;
    }
    const int64_t attempt = supervisor::LogEventAttempt(e);
    if (attempt < *latest) return false;
    *latest = attempt;  // claimed again while followed: the new attempt's output from here
    return true;
  };
  const std::string data_dir = ctx.config->data_dir;
  if (!*follow && tail >= 0) {
    // The last lines: formatted in order, only the tail kept as it goes.
    TailWindow window(tail);
    LogFormatter fmt(*timestamps);
    for (int64_t after = 0;;) {
      auto page = ctx.store->ListEvents(run->id, after, 1000);
      if (!page.ok()) return Fail(page.error());
      if (page->empty()) break;
      for (const auto& e : *page) {
        if (matches(e)) window.Add(fmt.Format(e, supervisor::LogEventBytes(e, data_dir)));
        after = e.seq;
      }
    }
    Response r;
    r.content_type = "application/octet-stream";
    r.body = window.Take();
    return r;
  }
  // Streamed at the client's pace, from the store's events and the log files, so a log of any
  // size costs a chunk of memory at a time: everything there is now, and with follow=true live
  // output until the run completes. The stream keeps its place by seq, so a slow client makes
  // it wait (kBackoff), never buffer without bound.
  StreamResponse sr;
  RouteContext c = ctx;
  std::string id = run->id;
  bool ts = *timestamps;
  bool snapshot = !*follow;
  // Not yet claimed: if another node claims it, the rest of the log comes from that node.
  const bool may_move = !run->node && !req.headers.Get("x-sandboxd-proxied");
  ForwardedRequest forward = ForwardedRequest::Of(req);
  sr.start = [c, id, matches, data_dir, ts, snapshot, may_move,
              forward](std::shared_ptr<StreamSink> sink) {
    auto fmt = std::make_shared<LogFormatter>(ts);
    EventPump::Consumer consumer;
    consumer.deliver = [c, id, sink, matches, data_dir, fmt, may_move,
                        forward](const store::EventRecord& e) {
      if (may_move && e.type == EventType::kRunStatus && e.data.value("state", "") == "RUNNING") {
        const std::string node = e.data.value("node", "");
        if (!node.empty() && node != c.runs->options().node) {
          ContinueFromOwner(c, node, id, forward, sink);
          return EventPump::Step::kStop;
        }
      }
      if (matches(e)) {
        // A full buffer takes nothing; the formatter's line state only advances on success.
        if (sink->closed()) return EventPump::Step::kStop;
        LogFormatter attempt = *fmt;
        auto w = sink->Write(attempt.Format(e, supervisor::LogEventBytes(e, data_dir)));
        if (w == StreamSink::WriteResult::kBackoff) return EventPump::Step::kWait;
        if (w == StreamSink::WriteResult::kClosed) return EventPump::Step::kStop;
        *fmt = attempt;
      }
      if (e.type == EventType::kRunCompleted) {
        sink->Finish();
        return EventPump::Step::kStop;
      }
      return EventPump::Step::kNext;
    };
    consumer.on_writable = [sink](std::function<void()> f) { sink->OnWritable(std::move(f)); };
    if (snapshot) {
      consumer.caught_up = [sink] {
        sink->Finish();
        return true;
      };
    }
    auto pump = EventPump::Start(*c.runs, *c.store, id, 0, std::move(consumer));
    sink->OnClose([pump](StreamSink::CloseReason) { pump->Stop(); });
  };
  return sr;
}

// POST /v1/policy:evaluate {"argv": [...]} | {"command": "..."} | {"steps": [{argv}...]}, with
// optional api_key_name (default: the caller's) and labels.
Reply EvaluatePolicyHandler(const RouteContext& ctx, const Request& req) {
  auto body = ParseBody(req, false);
  if (!body.ok()) return Fail(body.error());
  if (!body->is_object()) return Fail(FieldError("body", "must be a JSON object"));
  policy::CommandInput in;
  for (auto it = body->begin(); it != body->end(); ++it) {
    const std::string& k = it.key();
    if (k == "argv") {
      auto a = StringArray(it.value(), "argv");
      if (!a.ok()) return Fail(a.error());
      in.argvs.push_back(std::move(*a));
    } else if (k == "steps") {
      if (!it.value().is_array() || it.value().empty()) {
        return Fail(FieldError("steps", "must be a non-empty array of {argv}"));
      }
      for (size_t i = 0; i < it.value().size(); ++i) {
        const auto& s = it.value()[i];
        std::string f = fmt::format("steps[{}].argv", i);
        if (!s.is_object()) return Fail(FieldError(f, "missing"));
        auto a = StringArray(s.value("argv", nlohmann::json()), f);
        if (!a.ok()) return Fail(a.error());
        in.argvs.push_back(std::move(*a));
      }
    } else if (k == "command") {
      if (!it.value().is_string()) return Fail(FieldError("command", "must be a string"));
      in.command = it.value().get<std::string>();
    } else if (k == "api_key_name") {
      if (!it.value().is_string()) return Fail(FieldError("api_key_name", "must be a string"));
      in.api_key_name = it.value().get<std::string>();
    } else if (k == "labels") {
      auto l = StringMap(it.value(), "labels");
      if (!l.ok()) return Fail(l.error());
      in.labels = std::move(*l);
    } else {
      return Fail(FieldError(k, "unknown field (argv, steps, command, api_key_name, labels)"));
    }
  }
  if (in.argvs.empty() && !in.command) {
    return Fail(FieldError("body", "give argv, steps or command"));
  }
  if (in.api_key_name.empty() && req.principal) in.api_key_name = req.principal->key_name;
  auto decision = ctx.runs->Evaluate(in);
  if (!decision) {
    return JsonResponse(200, {{"decision", "review"},
                              {"risk", nullptr},
                              {"reasons", nlohmann::json::array()},
                              {"rule", nullptr},
                              {"note", "no command policy: a reviewer decides"}});
  }
  return JsonResponse(200, policy::ToJson(*decision));
}

Reply ArtifactHandler(const RouteContext& ctx, const Request& req) {
  std::string name(req.PathParam("name"));
  if (Status st = supervisor::CheckArtifactName(name); !st.ok()) return Fail(st.error());
  auto run = VisibleRun(ctx, req);
  if (!run.ok()) return Fail(run.error());
  if (auto forwarded = ForwardToOwner(ctx, req, *run)) return std::move(*forwarded);
  auto fd = supervisor::OpenArtifact(ctx.config->data_dir, run->id, name);
  if (!fd.ok()) return Fail(fd.error());
  struct stat st{};
  if (::fstat(fd->get(), &st) < 0) return Fail(ErrnoError("stat artifact {}", name));
  const std::string type = name.ends_with(".md")      ? "text/markdown; charset=utf-8"
                           : name.ends_with(".json")  ? "application/json"
                           : name.ends_with(".patch") ? "text/x-diff; charset=utf-8"
                                                      : "application/octet-stream";
  const auto size = static_cast<uint64_t>(st.st_size);
  // A small artifact in one piece, with its Content-Length; a larger one streamed.
  constexpr uint64_t kInlineBytes = 1 << 20;
  if (size <= kInlineBytes) {
    Response r;
    r.content_type = type;
    auto body = ReadAt(fd->get(), 0, static_cast<size_t>(size));
    if (!body.ok()) return Fail(body.error());
    r.body = std::move(*body);
    return r;
  }
  StreamResponse sr;
  sr.content_type = type;
  auto shared = std::make_shared<const UniqueFd>(std::move(*fd));
  sr.start = [shared, size](std::shared_ptr<StreamSink> sink) {
    std::make_shared<FileStreamer>(std::move(sink), shared, 0, size)->Pump();
  };
  return sr;
}

// The seccomp profiles in force (reloaded with the command policy).
Reply SeccompProfilesHandler(const RouteContext& c) {
  auto set = c.runs->seccomp_profiles();
  nlohmann::json out = nlohmann::json::array();
  if (set) {
    for (const auto& p : set->profiles()) {
      out.push_back({{"name", p.name},
                     {"source", p.source},
                     {"default_action", p.profile.default_action},
                     {"rules", p.profile.syscalls.size()},
                     {"instructions", p.instructions},
                     {"sha256", p.sha256},
                     {"permissive", p.permissive},
                     {"names_denials", p.program.notify == seccomp::NotifyMode::kDeny},
                     {"shadowed_rules", p.program.shadowed}});
    }
  }
  return JsonResponse(200, {{"seccomp_profiles_dir", c.config->seccomp_profiles_dir},
                            {"source", set ? set->source() : "builtin"},
                            {"profiles", out}});
}

Reply SeccompProfileHandler(const RouteContext& c, std::string_view name) {
  auto set = c.runs->seccomp_profiles();
  const supervisor::LoadedSeccompProfile* p = set ? set->Find(name) : nullptr;
  if (p == nullptr || name.empty()) {
    return ErrorResponse(404, "not_found",
                         fmt::format("no seccomp profile named '{}'; GET /v1/seccomp/profiles "
                                     "lists them",
                                     name));
  }
  auto doc = nlohmann::json::parse(p->json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return ErrorResponse(500, "internal", "profile text does not parse");
  return JsonResponse(200, doc);
}

}  // namespace

Status AddRunRoutes(Router& router, const RouteContext& ctx) {
  RouteContext c = ctx;
  SBX_TRY(router.Add(Method::kGet, "/healthz", Access::kPublic,
                     [](const Request&) -> Reply { return JsonResponse(200, {{"ok", true}}); }));
  SBX_TRY(router.Add(Method::kGet, "/v1/info", Access::kSubmitter, [c](const Request& req) -> Reply {
    const auto& l = c.config->limits;
    auto set = [](const supervisor::LimitSet& s) {
      return nlohmann::json{{"cpus", s.cpus},
                            {"memory", s.memory_bytes},
                            {"pids", s.pids},
                            {"timeout_s", s.timeout_s},
                            {"output_bytes", s.output_bytes}};
    };
    nlohmann::json iso = {
        {"namespaces", {"user", "pid", "mount", "network", "ipc", "uts", "cgroup"}},
        {"cgroup", {{"layout", cgroup::LayoutName(c.host->layout)},
                    {"unified_mount", c.host->unified_mount}}},
        {"seccomp", "default profile (Docker/OCI format), native ABI"},
        {"capabilities", "none"},
        {"no_new_privs", true}};
    nlohmann::json backends = nlohmann::json::array();
    for (const auto& b : c.runs->Backends()) {
      backends.push_back({{"name", b.name},
                          {"available", b.available},
                          {"reason", b.available ? nlohmann::json(nullptr) : nlohmann::json(b.reason)},
                          {"detail", b.detail},
                          {"default", b.name == c.runs->options().default_backend}});
    }
    // Who asks: the web page shows the buttons of the caller's role, and never approve on the
    // caller's own records.
    nlohmann::json caller = nullptr;
    if (req.principal) {
      caller = {{"name", req.principal->key_name}, {"role", RoleName(req.principal->role)}};
    }
    // Where /v1/events starts to carry only what happens from now on.
    auto events_after = c.store->LatestEventCursor();
    if (!events_after.ok()) return Fail(events_after.error());
    // The nodes sharing the store, by state (GET /v1/nodes lists them).
    nlohmann::json cluster = {{"ready", 0}, {"draining", 0}, {"lost", 0}};
    if (auto nodes = c.store->ListNodes(); nodes.ok()) {
      for (const auto& n : *nodes) {
        auto& count = cluster[NodeStateShown(n, c)];
        count = count.get<int>() + 1;
      }
    } else {
      return Fail(nodes.error());
    }
    return JsonResponse(200, {{"node", c.runs->options().node},
                              {"caller", caller},
                              {"events_after", *events_after},
                              {"backends", backends},
                              {"default_backend", c.runs->options().default_backend},
                              {"limits", {{"defaults", set(l.defaults)}, {"maxima", set(l.maxima)}}},
                              {"max_concurrent_runs", l.max_concurrent_runs},
                              {"max_queue", l.max_queue},
                              {"cluster", {{"nodes", cluster}}},
                              {"isolation", iso}});
  }));
  SBX_TRY(router.Add(Method::kPost, "/v1/runs", Access::kSubmitter, [c](const Request& req) -> Reply {
    auto body = ParseBody(req, false);
    if (!body.ok()) return Fail(body.error());
    auto run = RunRequestFromJson(*body);
    if (!run.ok()) return Fail(run.error());
    if (auto key = req.headers.Get("Idempotency-Key")) run->idempotency_key = std::string(*key);
    auto created = c.runs->Submit(std::move(*run), ToPrincipal(*c.config, req));
    if (!created.ok()) return ErrorResponseWithRetry(created.error());
    return JsonResponse(created->created ? 201 : 200, RunToJson(created->run));
  }));
  SBX_TRY(router.Add(Method::kGet, "/v1/runs", Access::kSubmitter, [c](const Request& req) -> Reply {
    store::RunFilter f;
    for (auto s : req.query.GetAll("state")) {
      auto st = store::ParseRunState(s);
      if (!st.ok()) return Fail(st.error());
      f.states.push_back(*st);
    }
    for (auto l : req.query.GetAll("label")) {
      size_t eq = l.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return ErrorResponse(400, "invalid_argument", "label: use label=KEY=VALUE");
      }
      f.labels[std::string(l.substr(0, eq))] = std::string(l.substr(eq + 1));
    }
    f.submitter = OwnerFilter(req);
    if (auto project = req.query.Get("project")) {
      // By id or name, among the projects the caller may see.
      auto p = c.runs->projects().Get(*project, ToPrincipal(*c.config, req));
      if (!p.ok()) return Fail(p.error());
      f.project_id = p->id;
    }
    f.cursor = std::string(req.query.Get("cursor").value_or(""));
    if (auto lim = req.query.Get("limit")) {
      try {
        f.limit = std::stoi(std::string(*lim));
      } catch (const std::exception&) {
        f.limit = 0;
      }
      if (f.limit < 1 || f.limit > 1000) {
        return ErrorResponse(400, "invalid_argument", "limit: 1 to 1000");
      }
    }
    // Read before the list: /v1/events?after=events_after then carries every change the list
    // may not show, and none of the history before it.
    auto events_after = c.store->LatestEventCursor();
    if (!events_after.ok()) return Fail(events_after.error());
    auto page = c.store->ListRuns(f);
    if (!page.ok()) return Fail(page.error());
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& r : page->runs) runs.push_back(RunToJson(r));
    return JsonResponse(200, {{"runs", runs},
                              {"next_cursor", page->next_cursor.empty()
                                                  ? nlohmann::json(nullptr)
                                                  : nlohmann::json(page->next_cursor)},
                              {"events_after", *events_after}});
  }));
  SBX_TRY(router.Add(Method::kGet, "/v1/runs/{id}", Access::kSubmitter,
                     [c](const Request& req) -> Reply { return GetRunHandler(c, req); }));
  SBX_TRY(router.Add(Method::kPost, "/v1/runs/{id}:approve", Access::kReviewer,
                     [c](const Request& req) -> Reply {
                       // Optional body: {"comment": "…", "plan_sha256": "…"}.
                       auto fields = OptionalStringFields(req, {"comment", "plan_sha256"});
                       if (!fields.ok()) return Fail(fields.error());
                       supervisor::Review::ApproveInput in;
                       in.comment = (*fields)["comment"];
                       in.plan_sha256 = (*fields)["plan_sha256"];
                       auto r = c.runs->Approve(req.PathParam("id"), ToPrincipal(*c.config, req),
                                                in);
                       return r.ok() ? Reply(JsonResponse(200, RunToJson(*r))) : Fail(r.error());
                     }));
  SBX_TRY(router.Add(Method::kPost, "/v1/runs/{id}:reject", Access::kReviewer,
                     [c](const Request& req) -> Reply {
                       auto fields = OptionalStringFields(req, {"reason"});
                       if (!fields.ok()) return Fail(fields.error());
                       const std::string reason = (*fields)["reason"];
                       auto r = c.runs->Reject(req.PathParam("id"), ToPrincipal(*c.config, req),
                                               reason);
                       return r.ok() ? Reply(JsonResponse(200, RunToJson(*r))) : Fail(r.error());
                     }));
  SBX_TRY(router.Add(Method::kPost, "/v1/runs/{id}:cancel", Access::kSubmitter,
                     [c](const Request& req) -> Reply {
                       // A submitter cancels its own runs only: another's is not_found.
                       auto run = VisibleRun(c, req);
                       if (!run.ok()) return Fail(run.error());
                       auto r = c.runs->Cancel(run->id, ToPrincipal(*c.config, req));
                       return r.ok() ? Reply(JsonResponse(202, RunToJson(*r))) : Fail(r.error());
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/runs/{id}/logs", Access::kSubmitter,
                     [c](const Request& req) -> Reply { return LogsHandler(c, req); }));
  SBX_TRY(router.Add(Method::kGet, "/v1/runs/{id}/artifacts", Access::kSubmitter,
                     [c](const Request& req) -> Reply {
                       auto run = VisibleRun(c, req);
                       if (!run.ok()) return Fail(run.error());
                       if (auto forwarded = ForwardToOwner(c, req, *run)) {
                         return std::move(*forwarded);
                       }
                       auto list = supervisor::ReadManifest(c.config->data_dir, run->id);
                       nlohmann::json out = nlohmann::json::array();
                       if (list.ok()) {
                         for (const auto& a : *list) {
                           out.push_back({{"name", a.name}, {"size", a.size}, {"sha256", a.sha256}});
                         }
                       } else if (list.error().code != ErrorCode::kNotFound) {
                         return Fail(list.error());
                       }
                       return JsonResponse(200, {{"run_id", run->id},
                                                 {"state", store::RunStateName(run->state)},
                                                 {"artifacts", out}});
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/runs/{id}/artifacts/{name+}", Access::kSubmitter,
                     [c](const Request& req) -> Reply { return ArtifactHandler(c, req); }));
  SBX_TRY(router.AddWebSocket("/v1/runs/{id}/events", Access::kSubmitter,
                              [c](const Request& req) -> Reply { return EventsHandler(c, req, true); }));
  SBX_TRY(router.AddWebSocket("/v1/events", Access::kSubmitter,
                              [c](const Request& req) -> Reply { return EventsHandler(c, req, false); }));
  SBX_TRY(router.Add(Method::kPost, "/v1/policy:evaluate", Access::kSubmitter,
                     [c](const Request& req) -> Reply { return EvaluatePolicyHandler(c, req); }));
  SBX_TRY(router.Add(Method::kGet, "/v1/policies", Access::kSubmitter,
                     [c](const Request&) -> Reply {
                       auto p = c.runs->command_policy();
                       nlohmann::json cp = nullptr;
                       if (p) {
                         cp = {{"source", p->source()},
                               {"shell", p->shell() == policy::ShellMode::kAllow ? "allow" : "deny"},
                               {"protections", {{"destructive", p->destructive_protection()}}}};
                       }
                       return JsonResponse(200, {{"policy_dir", c.config->policy_dir},
                                                 {"command_policy", cp}});
                     }));
  SBX_TRY(router.Add(Method::kPost, "/v1/policies:reload", Access::kAdmin,
                     [c](const Request& req) -> Reply {
                       Status st = c.runs->ReloadCommandPolicy(c.config->policy_dir,
                                                               ToPrincipal(*c.config, req));
                       if (!st.ok()) return Fail(st.error());
                       auto p = c.runs->command_policy();
                       return JsonResponse(200, {{"reloaded", true},
                                                 {"source", p ? p->source() : ""}});
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/seccomp/profiles", Access::kSubmitter,
                     [c](const Request&) -> Reply { return SeccompProfilesHandler(c); }));
  SBX_TRY(router.Add(Method::kGet, "/v1/seccomp/profiles/{name}", Access::kSubmitter,
                     [c](const Request& req) -> Reply {
                       return SeccompProfileHandler(c, req.PathParam("name"));
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/audit", Access::kReviewer, [c](const Request& req) -> Reply {
    store::AuditFilter f;
    if (auto r = req.query.Get("run_id")) f.run_id = std::string(*r);
    auto after = req.query.Get("after_id");
    if (after) {
      try {
        f.after_id = std::stoll(std::string(*after));
      } catch (const std::exception&) {
        return ErrorResponse(400, "invalid_argument", "after_id: an integer");
      }
    }
    auto records = c.store->ListAudit(f);
    if (!records.ok()) return Fail(records.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : *records) {
      out.push_back({{"id", a.id},
                     {"ts_ms", a.ts_ms},
                     {"actor", a.actor},
                     {"action", a.action},
                     {"run_id", a.run_id ? nlohmann::json(*a.run_id) : nullptr},
                     {"details", a.details},
                     {"prev_hash", a.prev_hash},
                     {"hash", a.hash}});
    }
    return JsonResponse(200, {{"records", out}});
  }));
  SBX_TRY(AddChangeRoutes(router, ctx));
  SBX_TRY(AddProjectRoutes(router, ctx));
  SBX_TRY(AddJobRoutes(router, ctx));
  SBX_TRY(AddNodeRoutes(router, ctx));
  SBX_TRY(AddRunnerRoutes(router, ctx));
  return Ok();
}

}  // namespace sbx::api
