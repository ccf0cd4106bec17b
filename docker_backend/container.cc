#include "docker_backend/container.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <chrono>
#include <cmath>

#include "docker_backend/frames.h"

namespace sbx::docker {
namespace {

using nlohmann::json;

// After the kill of a timed-out or cancelled step, how long the stream may take to close.
constexpr auto kDrainAfterKill = std::chrono::seconds(10);
// The exec's exit code is recorded a moment after its stream closes.
constexpr auto kExitCodeWait = std::chrono::seconds(5);
constexpr std::string_view kStartFailurePrefix = "OCI runtime exec failed";
// The most of a start-failure message held back before it is taken for the program's output.
constexpr size_t kMaxHeldBytes = 4096;

// Counts a process's output, delivers what fits under its output limit (`delivered` so far),
// flags the rest as truncated.
void Deliver(int stream, std::string_view data, const ExecRequest& request,
             const Container::OutputSink& sink, ExecOutcome& out, uint64_t& delivered) {
  (stream == 1 ? out.stdout_bytes : out.stderr_bytes) += data.size();
  uint64_t room = request.output_limit_bytes > delivered ? request.output_limit_bytes - delivered : 0;
  if (data.size() > room) out.output_truncated = true;
  data = data.substr(0, static_cast<size_t>(std::min<uint64_t>(room, data.size())));
  if (!data.empty()) {
    delivered += data.size();
    sink(stream, data);
  }
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

uint64_t MsSince(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

// Reads `events` (GET /events, filtered to exec_die) until the exit code of `exec_id` arrives,
// the stream ends, or `deadline` passes.
std::optional<int> WaitForExecDie(HijackedStream& events, const std::string& exec_id,
                                  Clock::time_point deadline) {
  ExecDieLines lines(exec_id);
  if (auto code = lines.Feed(events.early)) return code;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{events.fd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    ssize_t n = ::recv(events.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return std::nullopt;
    if (auto code = lines.Feed(std::string_view(buf, static_cast<size_t>(n)))) return code;
  }
}

}  // namespace

Result<std::unique_ptr<Container>> Container::Create(std::shared_ptr<const EngineClient> client,
                                                     const ContainerSpec& spec) {
  auto body = CreateBody(spec);
  if (!body.ok()) return std::move(body).error();
  auto made = Make(std::move(client), spec);
  if (!made.ok()) return made;
  std::unique_ptr<Container> c = std::move(*made);
  auto created = c->client_->CallJson("POST", "/containers/create?name=" + UrlEncode(spec.name),
                                      "creating container " + spec.name, *body);
  if (!created.ok()) {
    Error e = std::move(created).error();
    if (e.code == ErrorCode::kNotFound) {
      e.message = fmt::format("image '{}' is not in the Docker daemon's image store; pull or "
                              "import it first ({})",
                              spec.image, e.message);
    }
    return e;
  }
  c->id_ = created->value("Id", "");
  if (c->id_.empty()) {
    return MakeError(ErrorCode::kInternal, "creating container {}: the daemon returned no Id",
                     spec.name);
  }
  auto started =
      c->client_->CallJson("POST", "/containers/" + c->id_ + "/start", "starting container " + spec.name);
  if (!started.ok()) {
    (void)c->Destroy();
    return std::move(started).error();
  }
  return c;
}

Container::~Container() {
  if (Status st = Destroy(); !st.ok()) {
    spdlog::error("container {}: {}", name_, st.error().ToString());
  }
}

void Container::Cancel() {
  cancelled_.store(true);
  uint64_t one = 1;
  if (cancel_fd_) (void)!::write(cancel_fd_.get(), &one, sizeof one);
}

Status Container::Kill() {
  auto r = client_->Call("POST", "/containers/" + id_ + "/kill?signal=KILL");
  if (!r.ok()) return std::move(r).error();
  // 409: it is not running any more, which is what a kill wants.
  if (r->status == 204 || r->status == 409 || r->status == 200) return Ok();
  return ReplyError(*r, "killing container " + name_);
}

Status Container::Destroy() {
  if (destroyed_ || id_.empty()) return Ok();
  auto r = client_->Call("DELETE", "/containers/" + id_ + "?force=true&v=true");
  if (!r.ok()) return WithContext(std::move(r).error(), "removing container " + name_);
  if (r->status != 204 && r->status != 200 && r->status != 404) {
    return ReplyError(*r, "removing container " + name_);
  }
  destroyed_ = true;
  return Ok();
}

bool Container::OomSince(double since_unix_s) {
  // The daemon's "oom" event for this container (an exec'd process killed by the memory
  // cgroup's OOM killer leaves the container running, so State.OOMKilled is not set yet).
  json filters = {{"container", json::array({id_})}, {"event", json::array({"oom"})}};
  std::string path = fmt::format("/events?since={:.3f}&until={:.3f}&filters={}", since_unix_s - 1,
                                 UnixNow(), UrlEncode(filters.dump()));
  auto r = client_->Call("GET", path);
  if (r.ok() && r->status == 200 && r->body.find("\"oom\"") != std::string::npos) return true;
  auto inspect = client_->CallJson("GET", "/containers/" + id_ + "/json", "inspecting container");
  if (inspect.ok()) {
    const json& state = (*inspect)["State"];
    if (state.is_object() && state.value("OOMKilled", false)) return true;
  }
  return false;
}

Result<std::unique_ptr<Container>> Container::Prepare(std::shared_ptr<const EngineClient> client,
                                                      const ContainerSpec& spec) {
  if (auto body = CreateBody(spec); !body.ok()) return std::move(body).error();
  auto image = client->Call("GET", "/images/" + UrlEncode(spec.image) + "/json");
  if (!image.ok()) return WithContext(std::move(image).error(), "looking up image " + spec.image);
  if (image->status == 404) {
    return MakeError(ErrorCode::kNotFound,
                     "image '{}' is not in the Docker daemon's image store; pull or import it "
                     "first",
                     spec.image);
  }
  if (image->status != 200) return ReplyError(*image, "looking up image " + spec.image);
  // VOLUME in an image makes Docker create an anonymous volume on the host for each path, which
  // outlives the container and escapes its limits: such images are refused.
  auto doc = json::parse(image->body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object()) {
    const json& config = doc.contains("Config") ? doc["Config"] : json();
    if (config.is_object() && config.contains("Volumes") && config["Volumes"].is_object() &&
        !config["Volumes"].empty()) {
      std::string paths;
      for (auto it = config["Volumes"].begin(); it != config["Volumes"].end(); ++it) {
        paths += (paths.empty() ? "" : ", ") + it.key();
      }
      return MakeError(ErrorCode::kPermissionDenied,
                       "image '{}' declares volumes ({}), which Docker would create on the host "
                       "outside the run's limits; use an image without VOLUME",
                       spec.image, paths);
    }
  }
  auto made = Make(std::move(client), spec);
  if (!made.ok()) return made;
  (*made)->spec_ = spec;
  (*made)->prepared_ = true;
  return made;
}

Result<std::unique_ptr<Container>> Container::Make(std::shared_ptr<const EngineClient> client,
                                                   const ContainerSpec& spec) {
  std::unique_ptr<Container> c(new Container());
  c->client_ = std::move(client);
  c->name_ = spec.name;
  c->user_ = spec.user;
  c->memory_limit_ = spec.memory_bytes;
  c->cancel_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!c->cancel_fd_) return ErrnoError("eventfd");
  return c;
}

Container::Begun Container::Begin(const ExecRequest& request) const {
  Begun b;
  b.start = Clock::now();
  b.deadline = request.timeout_ms > 0 ? b.start + std::chrono::milliseconds(request.timeout_ms)
                                      : Clock::time_point::max();
  b.process = request.exec;
  if (b.process.user.empty()) b.process.user = user_;
  b.process.attach_stdin = !request.stdin_data.empty();
  return b;
}

Container::Pumped Container::Pump(HijackedStream& stream, const ExecRequest& request,
                                  bool stdin_open, Clock::time_point deadline, int held_stream,
                                  std::string_view held_prefix, const OutputSink& sink,
                                  ExecOutcome& out, HijackedStream* stats,
                                  StatsLines* stats_lines) {
  Pumped pumped;
  bool first_held_stream = true;
  std::string daemon_error;
  FrameDemuxer demux([&](int s, std::string_view data) {
    if (s == 3) {
      daemon_error.append(data.substr(0, 4096));
      return;
    }
    if (s != 1 && s != 2) return;
    if (s == held_stream && first_held_stream) {
      first_held_stream = false;
      if (data.substr(0, held_prefix.size()) == held_prefix) {
        pumped.held.assign(data);
        return;
      }
    }
    if (!pumped.held.empty()) {
      if (s == held_stream && pumped.held.size() + data.size() <= kMaxHeldBytes) {
        pumped.held.append(data);  // the runtime's message, in more than one frame
        return;
      }
      // More than the runtime ever says: the held bytes were the program's own, and go first.
      Deliver(held_stream, pumped.held, request, sink, out, pumped.delivered);
      pumped.held.clear();
    }
    Deliver(s, data, request, sink, out, pumped.delivered);
  });
  demux.Feed(stream.early);
  if (stats_lines != nullptr && stats != nullptr) stats_lines->Feed(stats->early);

  const int fd = stream.fd.get();
  std::string_view to_write = request.stdin_data;
  if (stdin_open && to_write.empty()) {
    ::shutdown(fd, SHUT_WR);
    stdin_open = false;
  }
  Clock::time_point drain_until = Clock::time_point::max();
  char buf[64 << 10];
  for (;;) {
    auto now = Clock::now();
    if (pumped.stop == Stop::kNone && (now >= deadline || cancelled_.load())) {
      pumped.stop = now >= deadline && !cancelled_.load() ? Stop::kTimeout : Stop::kCancel;
      if (Status k = Kill(); !k.ok()) {
        spdlog::error("container {}: kill: {}", name_, k.error().ToString());
      }
      drain_until = now + kDrainAfterKill;
    }
    if (now >= drain_until) break;
    auto until = std::min(pumped.stop == Stop::kNone ? deadline : drain_until, drain_until);
    int wait_ms = until == Clock::time_point::max()
                      ? -1
                      : static_cast<int>(std::clamp<int64_t>(
                            std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1,
                            0, 1 << 30));
    const bool with_stats = stats != nullptr && stats->fd;
    pollfd p[3] = {{fd, static_cast<short>(POLLIN | (stdin_open ? POLLOUT : 0)), 0},
                   {cancel_fd_.get(), static_cast<short>(pumped.stop == Stop::kNone ? POLLIN : 0), 0},
                   {with_stats ? stats->fd.get() : -1, POLLIN, 0}};
    int r = ::poll(p, 3, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      pumped.transport = ErrnoError("poll on the container's output stream");
      break;
    }
    if (pumped.stop == Stop::kNone && (p[1].revents & POLLIN)) continue;  // Cancel(): above
    if (with_stats && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::recv(stats->fd.get(), buf, sizeof buf, 0);
      if (n > 0) {
        stats_lines->Feed(std::string_view(buf, static_cast<size_t>(n)));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        stats->fd.reset();  // the container stopped: the daemon ends its stats
      }
    }
    if (stdin_open && (p[0].revents & (POLLOUT | POLLERR))) {
      ssize_t n = ::send(fd, to_write.data(), to_write.size(), MSG_NOSIGNAL);
      if (n > 0) to_write.remove_prefix(static_cast<size_t>(n));
      if (n < 0 && errno != EAGAIN && errno != EINTR) to_write = {};  // the process closed stdin
      if (to_write.empty()) {
        ::shutdown(fd, SHUT_WR);
        stdin_open = false;
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        demux.Feed(std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) {
        pumped.transport = ErrnoError("reading the container's output stream");
        pumped.transport->code = ErrorCode::kUnavailable;
      }
      break;  // end of the stream
    }
  }
  stream.fd.reset();
  return pumped;
}


void Container::EndStopped(Stop stop, ExecOutcome& out) {
  out.end = stop == Stop::kTimeout ? ExecEnd::kTimedOut : ExecEnd::kCancelled;
  out.signal = SIGKILL;
}

bool Container::EndWithStatus(int code, bool start_failed, int held_stream, Pumped& pumped,
                              const ExecRequest& request, const OutputSink& sink,
                              ExecOutcome& out) {
  if (start_failed) {
    out.end = ExecEnd::kStartFailed;
    out.exit_code = code;
    out.start_error = pumped.held.substr(0, pumped.held.find_last_not_of("\r\n") + 1);
    return false;
  }
  // A program that printed the runtime's words itself: its output after all.
  if (!pumped.held.empty()) Deliver(held_stream, pumped.held, request, sink, out, pumped.delivered);
  if (code > 128 && code <= 128 + 64) {
    out.signal = code - 128;
    out.end = ExecEnd::kSignaled;
    return out.signal == SIGKILL;
  }
  out.end = ExecEnd::kExited;
  out.exit_code = code;
  return false;
}

Result<ExecOutcome> Container::Run(const ExecRequest& request, const OutputSink& sink) {
  return prepared_ ? RunMain(request, sink) : Exec(request, sink);
}

Result<ExecOutcome> Container::Exec(const ExecRequest& request, const OutputSink& sink) {
  ExecOutcome out;
  if (cancelled_.load()) {
    out.end = ExecEnd::kCancelled;
    return out;
  }
  const double start_unix = UnixNow();
  const auto [start, deadline, spec] = Begin(request);
  auto created = client_->CallJson("POST", "/containers/" + id_ + "/exec", "creating an exec",
                                   ExecBody(spec));
  if (!created.ok()) return std::move(created).error();
  const std::string exec_id = created->value("Id", "");
  // Its end and exit code come as the daemon's exec_die event. Subscribed to before the exec
  // starts (the daemon subscribes before it answers), so the event cannot slip past.
  json filters = {{"type", json::array({"container"})},
                  {"container", json::array({id_})},
                  {"event", json::array({"exec_die"})}};
  auto events = client_->OpenStream("/events?filters=" + UrlEncode(filters.dump()),
                                    std::chrono::milliseconds(10'000));
  if (!events.ok()) {
    spdlog::warn("container {}: no events: {}", name_, events.error().ToString());
  }
  auto stream = client_->Hijack("/exec/" + exec_id + "/start", {{"Detach", false}, {"Tty", false}},
                                std::chrono::milliseconds(30'000));
  if (!stream.ok()) return WithContext(std::move(stream).error(), "starting an exec");
  Pumped pumped = Pump(*stream, request, spec.attach_stdin, deadline, 1, kStartFailurePrefix, sink,
                       out, nullptr, nullptr);
  out.wall_ms = MsSince(start);

  // The exit code: the daemon records it a moment after the stream ends. A stopped step's
  // container is gone with its exec, and its end is already known.
  std::optional<int> exit_code;
  if (pumped.stop == Stop::kNone && events.ok()) {
    exit_code = WaitForExecDie(*events, exec_id, Clock::now() + kExitCodeWait);
  }
  if (pumped.stop == Stop::kNone && !exit_code) {
    // No events (or none in time): what the daemon has recorded, asked once.
    auto inspect = client_->CallJson("GET", "/exec/" + exec_id + "/json", "inspecting an exec",
                                     nullptr, std::chrono::milliseconds(10'000));
    if (!inspect.ok()) {
      Error e = std::move(inspect).error();
      if (pumped.transport) e = *pumped.transport;
      e.message = "the Docker daemon failed during the step: " + e.message;
      return e;
    }
    if (!inspect->value("Running", false) && (*inspect)["ExitCode"].is_number_integer()) {
      exit_code = (*inspect)["ExitCode"].get<int>();
    }
  }
  if (pumped.stop != Stop::kNone) {
    EndStopped(pumped.stop, out);
    return out;
  }
  if (!exit_code) {
    if (pumped.transport) return *pumped.transport;
    return MakeError(ErrorCode::kUnavailable,
                     "the Docker daemon did not report the exec's exit code within {} s",
                     std::chrono::duration_cast<std::chrono::seconds>(kExitCodeWait).count());
  }
  const bool killed = EndWithStatus(*exit_code, IsExecStartFailure(pumped.held, *exit_code), 1,
                                    pumped, request, sink, out);
  if (out.end == ExecEnd::kStartFailed) return out;
  // The container's figures: CPU during the step, the memory peak so far.
  auto stats = client_->CallJson("GET", "/containers/" + id_ + "/stats?stream=false&one-shot=true",
                                 "container stats", nullptr, std::chrono::milliseconds(10'000));
  if (stats.ok()) {
    StatsFigures f = ParseStats(*stats);
    if (f.cpu_total_ns >= cpu_seen_ns_) out.cpu_ms = (f.cpu_total_ns - cpu_seen_ns_) / 1'000'000;
    cpu_seen_ns_ = f.cpu_total_ns;
    out.memory_peak_bytes = f.memory_peak_bytes;
  }
  if (killed && memory_limit_ > 0 && OomSince(start_unix)) out.end = ExecEnd::kOomKilled;
  return out;
}

Result<ExecOutcome> Container::RunMain(const ExecRequest& request, const OutputSink& sink) {
  ExecOutcome out;
  if (ran_main_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "container {} runs one process as its own, and has run it", name_);
  }
  ran_main_ = true;
  if (cancelled_.load()) {
    out.end = ExecEnd::kCancelled;
    return out;
  }
  const auto [start, deadline, main] = Begin(request);
  auto body = CreateBodyFor(spec_, main);
  if (!body.ok()) return std::move(body).error();
  auto created = client_->CallJson("POST", "/containers/create?name=" + UrlEncode(spec_.name),
                                   "creating container " + spec_.name, *body);
  if (!created.ok()) return std::move(created).error();
  id_ = created->value("Id", "");
  if (id_.empty()) {
    return MakeError(ErrorCode::kInternal, "creating container {}: the daemon returned no Id",
                     spec_.name);
  }
  // Attached before it starts, so not a byte is missed.
  auto stream = client_->Hijack(
      "/containers/" + id_ + "/attach?stream=1&stdout=1&stderr=1" +
          (main.attach_stdin ? "&stdin=1" : ""),
      nlohmann::json::object(), std::chrono::milliseconds(30'000));
  if (!stream.ok()) return WithContext(std::move(stream).error(), "attaching to " + spec_.name);
  auto started = client_->CallJson("POST", "/containers/" + id_ + "/start",
                                   "starting container " + spec_.name);
  if (!started.ok()) return std::move(started).error();
  // Its figures, sampled by the daemon while it runs. Not having them is no reason to fail.
  auto stats = client_->OpenStream("/containers/" + id_ + "/stats?stream=true",
                                   std::chrono::milliseconds(10'000));
  if (!stats.ok()) {
    spdlog::warn("container {}: no stats: {}", name_, stats.error().ToString());
  }
  StatsLines stats_lines;
  Pumped pumped = Pump(*stream, request, main.attach_stdin, deadline, 2, kInitExecFailurePrefix,
                       sink, out, stats.ok() ? &*stats : nullptr, &stats_lines);
  if (stats.ok()) stats->fd.reset();
  out.wall_ms = MsSince(start);

  // Its exit status: the attach ends when its process does; the daemon answers once it has
  // recorded the stop.
  auto waited = client_->CallJson("POST", "/containers/" + id_ + "/wait?condition=not-running",
                                  "waiting for container " + spec_.name, nullptr,
                                  std::chrono::milliseconds(pumped.stop != Stop::kNone ? 15'000
                                                                                       : 10'000));
  out.cpu_ms = stats_lines.figures().cpu_total_ns / 1'000'000;
  out.memory_peak_bytes = stats_lines.figures().memory_peak_bytes;
  if (pumped.stop != Stop::kNone) {
    EndStopped(pumped.stop, out);
    return out;
  }
  if (!waited.ok() || !(*waited)["StatusCode"].is_number_integer()) {
    Error e = waited.ok() ? MakeError(ErrorCode::kUnavailable, "the wait answered no StatusCode")
                          : std::move(waited).error();
    if (pumped.transport) e = *pumped.transport;
    e.message = "the Docker daemon failed during the run: " + e.message;
    return e;
  }
  const int code = (*waited)["StatusCode"].get<int>();
  const bool killed = EndWithStatus(code, IsInitExecFailure(pumped.held, code), 2, pumped,
                                    request, sink, out);
  if (killed && memory_limit_ > 0) {
    auto inspect = client_->CallJson("GET", "/containers/" + id_ + "/json",
                                     "inspecting container " + spec_.name);
    if (inspect.ok() && (*inspect)["State"].is_object() &&
        (*inspect)["State"].value("OOMKilled", false)) {
      out.end = ExecEnd::kOomKilled;
      // It reached its limit: that is its peak, whatever the last sample saw.
      out.memory_peak_bytes = std::max(out.memory_peak_bytes, memory_limit_);
    }
  }
  return out;
}

Result<std::vector<std::string>> RemoveLeftovers(const EngineClient& client,
                                                 const std::string& daemon_identity) {
  auto list = client.CallJson(
      "GET", "/containers/json?all=true&filters=" + UrlEncode(DaemonLabelFilter(daemon_identity)),
      "listing containers");
  if (!list.ok()) return std::move(list).error();
  std::vector<std::string> removed;
  if (!list->is_array()) return removed;
  for (const auto& c : *list) {
    std::string id = c.value("Id", "");
    if (id.empty()) continue;
    std::string name = id.substr(0, 12);
    if (c.contains("Names") && c["Names"].is_array() && !c["Names"].empty() &&
        c["Names"][0].is_string()) {
      name = c["Names"][0].get<std::string>();
      if (!name.empty() && name[0] == '/') name.erase(0, 1);
    }
    auto r = client.Call("DELETE", "/containers/" + id + "?force=true&v=true");
    if (!r.ok()) return std::move(r).error();
    if (r->status != 204 && r->status != 404) return ReplyError(*r, "removing container " + name);
    removed.push_back(name);
  }
  return removed;
}

}  // namespace sbx::docker
