// Processes inside a long-lived sandbox: started behind the command policy, their output read
// by one thread for every live process of the service (epoll over their pipes, terminals and
// done fds) into their ProcessOutput, their end recorded once.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/fs.h"
#include "supervisor/exec/result_json.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/sandbox/sandbox_internal.h"
#include "supervisor/sandbox/sandbox_service.h"

namespace sbx::supervisor {

using store::EndCode;
using store::EndReason;
using store::ProcessState;
using store::SandboxState;

namespace {

EndReason FromLive(const isolate::LiveProcessResult& r) {
  switch (r.reason) {
    case isolate::LiveEndReason::kExited:
      return {EndCode::kExited, ""};
    case isolate::LiveEndReason::kSignaled:
      return {EndCode::kSignaled, ""};
    case isolate::LiveEndReason::kTimedOut:
      return {EndCode::kTimedOut, ""};
    case isolate::LiveEndReason::kKilled:
      return {EndCode::kKilled, ""};
    case isolate::LiveEndReason::kSetupFailed:
      return {EndCode::kSetupFailed, r.error ? r.error->message : std::string()};
  }
  return {EndCode::kKilled, ""};
}

// A memfd holding `data`, sealed, read from offset 0: a process's stdin given whole.
Result<UniqueFd> StdinMemfd(std::string_view data) {
  UniqueFd fd(static_cast<int>(::memfd_create("sbx-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd) return ErrnoError("memfd_create");
  SBX_TRY(WriteAll(fd.get(), data));
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
      0) {
    return ErrnoError("sealing the stdin memfd");
  }
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return ErrnoError("lseek");
  // A read-only descriptor of its own, so the process cannot write into it.
  UniqueFd ro(::open(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ro) return ErrnoError("reopening the stdin memfd read-only");
  return ro;
}

// Writes all of `bytes` to a non-blocking fd, waiting for room at most `timeout`.
Status WriteWithin(int fd, std::string_view bytes, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      if (errno == EPIPE) {
        return MakeError(ErrorCode::kFailedPrecondition, "the process closed its stdin");
      }
      return ErrnoError("writing to the process's stdin");
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return MakeError(ErrorCode::kUnavailable,
                       "the process did not read its stdin within {} ms; {} bytes not written",
                       timeout.count(), bytes.size());
    }
    pollfd p{fd, POLLOUT, 0};
    (void)::poll(&p, 1, static_cast<int>(left));
  }
  return Ok();
}

}  // namespace

// ---- Processes ---------------------------------------------------------------------------------

void SandboxService::Impl::Register(const std::shared_ptr<LiveBox>& box,
                                    const std::shared_ptr<LiveProc>& proc) {
  std::lock_guard lock(watch_mu);
  auto add = [&](int fd, int kind) {
    if (fd < 0) return;
    const uint64_t token = next_token++;
    watches[token] = Watch{box, proc, kind};
    proc->tokens.push_back(token);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      spdlog::error("sandbox {}: process {}: epoll_ctl: {}", box->id, proc->id,
                    std::strerror(errno));
    }
  };
  add(proc->out.get(), 1);
  add(proc->err.get(), 2);
  add(proc->pty_fd.get(), 3);
  add(proc->done.get(), 4);
}

// Reads what `kind`'s fd holds now (io_mu held). Returns at EOF, EAGAIN or after 1 MiB.
void SandboxService::Impl::Drain(LiveProc& proc, int kind) {
  UniqueFd& fd = kind == 1 ? proc.out : kind == 2 ? proc.err : proc.pty_fd;
  if (!fd) return;
  char buf[64 << 10];
  for (size_t total = 0; total < (1u << 20);) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // EOF, or EIO from a terminal whose last slave closed: nothing more will come. Leave the
      // fd registered until the process is finished (the done fd decides the end); a closed
      // pipe stays readable, so unregister it to stop the wake-ups.
      if (n == 0 || (n < 0 && errno == EIO)) {
        (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
        fd.reset();
      }
      return;
    }
    proc.output->Append(kind == 2 ? 2 : 1, std::string_view(buf, static_cast<size_t>(n)));
    total += static_cast<size_t>(n);
  }
}

void SandboxService::Impl::FinishProcess(const std::shared_ptr<LiveBox>& box,
                                         const std::shared_ptr<LiveProc>& proc,
                                         std::optional<isolate::LiveProcessResult> live) {
  {
    std::lock_guard io(proc->io_mu);
    if (proc->finished) return;
    proc->finished = true;
    // Everything the process wrote before it ended is in the pipes now.
    for (int kind : {1, 2, 3}) Drain(*proc, kind);
    {
      std::lock_guard lock(watch_mu);
      for (uint64_t t : proc->tokens) watches.erase(t);
    }
    for (UniqueFd* fd : {&proc->out, &proc->err, &proc->pty_fd, &proc->done}) {
      if (*fd) (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd->get(), nullptr);
      fd->reset();
    }
  }
  {
    std::lock_guard in(proc->in_mu);
    proc->in.reset();
  }
  store::ProcessResult r;
  if (live) {
    r.reason = FromLive(*live);
    r.exit_code = live->exit_code;
    r.signal = live->signal;
    r.wall_ms = static_cast<int64_t>(live->wall_ms);
    r.cpu_ms = static_cast<int64_t>(live->cpu_ms);
  } else {
    r.reason = {EndCode::kKilled, ""};
    r.wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                      proc->started)
                    .count();
  }
  r.stdout_bytes = static_cast<int64_t>(proc->output->stored_bytes(1));
  r.stderr_bytes = static_cast<int64_t>(proc->output->stored_bytes(2));
  r.output_truncated = proc->output->truncated();
  // The record first: a client told process.finished reads FINISHED from then on.
  store::ProcessUpdate u;
  u.result = r;
  auto rec = UpdateProcess(box->id, proc->id, {ProcessState::kRunning},
                                 ProcessState::kFinished, u);
  if (!rec.ok()) {
    spdlog::error("sandbox {}: process {}: cannot record its end: {}", box->id, proc->id,
                  rec.error().ToString());
  }
  proc->output->Finished(ProcessResultJson(r));
  Audit(Daemon(), "process.finished", box->id,
        {{"process_id", proc->id}, {"result", ProcessResultJson(r)}});
  {
    std::lock_guard lock(mu);
    box->last_activity = Clock::now();
  }
  if (box->running.fetch_sub(1) == 1) timer_cv.notify_all();  // the idle clock may start
  {
    std::lock_guard w(proc->wait_mu);
    if (rec.ok()) proc->final_record = *rec;
  }
  proc->wait_cv.notify_all();
}

Result<store::ProcessRecord> SandboxService::Impl::Launch(const std::shared_ptr<LiveBox>& box,
                                                          store::ProcessRecord rec,
                                                          const Principal& who) {
  auto fail = [&](Error e) -> Result<store::ProcessRecord> {
    store::ProcessUpdate u;
    store::ProcessResult r;
    r.reason = {EndCode::kSetupFailed, e.message};
    u.result = r;
    auto from = rec.state;
    if (from == ProcessState::kAwaitingReview) {
      (void)UpdateProcess(box->id, rec.id, {from}, ProcessState::kRunning, {});
    }
    auto done = UpdateProcess(box->id, rec.id, {ProcessState::kRunning},
                                    ProcessState::kFinished, u);
    Audit(Daemon(), "process.finished", box->id,
          {{"process_id", rec.id}, {"result", ProcessResultJson(r)}});
    if (!done.ok()) return e;
    return done;
  };
  if (box->ending) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", box->id);
  }
  isolate::LiveProcessSpec spec;
  spec.argv = rec.argv;
  std::map<std::string, std::string> env = box->env;
  for (const auto& [k, v] : rec.env) env[k] = v;
  for (const auto& [k, v] : env) spec.env.push_back(k + "=" + v);
  spec.cwd = !rec.cwd.empty() ? rec.cwd : box->has_workspace ? RunMounts::kWorkspaceTarget : "/";
  spec.timeout_ms = static_cast<uint64_t>(rec.timeout_s.value_or(0)) * 1000;
  UniqueFd stdin_fd;
  if (rec.pty) {
    spec.pty = isolate::PtySize{static_cast<uint16_t>(rec.pty->cols),
                                static_cast<uint16_t>(rec.pty->rows)};
  } else {
    spec.out = isolate::LiveStdio::Pipe();
    spec.err = isolate::LiveStdio::Pipe();
    if (rec.stdin_open) {
      spec.in = isolate::LiveStdio::Pipe();
    } else if (!rec.stdin_data.empty()) {
      auto m = StdinMemfd(rec.stdin_data);
      if (!m.ok()) return fail(std::move(m).error());
      stdin_fd = std::move(*m);
      spec.in = isolate::LiveStdio::Fd(stdin_fd.get());
    }
  }
  auto proc = std::make_shared<LiveProc>();
  proc->id = rec.id;
  proc->pty = rec.pty.has_value();
  auto output = ProcessOutput::Create(ProcessDir(box->dir, rec.id),
                                      box->output_cap);
  if (!output.ok()) return fail(std::move(output).error());
  proc->output = std::move(*output);

  // The process counts as running from here, so the idle timer cannot end the sandbox under it.
  box->running.fetch_add(1);
  {
    std::lock_guard op(box->mu);
    if (box->ending) {
      box->running.fetch_sub(1);
      return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", box->id);
    }
    auto started = box->engine->Start(spec);
    if (!started.ok()) {
      box->running.fetch_sub(1);
      timer_cv.notify_all();
      if (started.error().code == ErrorCode::kResourceExhausted ||
          started.error().code == ErrorCode::kFailedPrecondition) {
        // Nothing started: the client may try again; the record says why.
        (void)fail(started.error());
        return std::move(started).error();
      }
      return fail(std::move(started).error());
    }
    proc->engine_id = started->id;
    proc->started = Clock::now();
    proc->out = std::move(started->out);
    proc->err = std::move(started->err);
    proc->done = std::move(started->done);
    if (started->pty) {
      proc->in = UniqueFd(::fcntl(started->pty.get(), F_DUPFD_CLOEXEC, 0));
      proc->pty_fd = std::move(started->pty);
    } else {
      proc->in = std::move(started->in);
    }
    std::lock_guard pl(box->procs_mu);
    box->procs[rec.id] = proc;
  }
  Decided();
  store::ProcessUpdate ru;
  ru.approval = rec.approval;
  auto running = UpdateProcess(box->id, rec.id, {rec.state}, ProcessState::kRunning, ru);
  proc->output->Started();
  Register(box, proc);
  Activity(*box);
  Audit(who, "process.started", box->id,
        {{"process_id", rec.id}, {"argv", rec.argv}, {"tag", rec.tag}});
  if (rec.stdin_open && !rec.stdin_data.empty()) {
    std::lock_guard in(proc->in_mu);
    if (proc->in) {
      Status st = WriteWithin(proc->in.get(), rec.stdin_data, std::chrono::seconds(5));
      if (!st.ok()) {
        spdlog::warn("sandbox {}: process {}: {}", box->id, rec.id, st.error().ToString());
      }
    }
  }
  if (!running.ok()) return std::move(running).error();
  return running;
}

Result<std::pair<std::shared_ptr<LiveBox>, std::shared_ptr<LiveProc>>>
SandboxService::Impl::LiveProcess(std::string_view sandbox_id, std::string_view id_or_tag,
                                  const Principal& who, store::ProcessRecord* record) {
  auto sb = Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  if (record) *record = *rec;
  auto box = Box(sandbox_id);
  if (!box || rec->state != ProcessState::kRunning) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} of sandbox {} is {}", rec->id,
                     sandbox_id, store::ProcessStateName(rec->state));
  }
  std::lock_guard pl(box->procs_mu);
  auto it = box->procs.find(rec->id);
  if (it == box->procs.end()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process {} of sandbox {} is not running on this node", rec->id, sandbox_id);
  }
  Activity(*box);
  return std::make_pair(box, it->second);
}

// ---- Threads -----------------------------------------------------------------------------------

void SandboxService::Impl::IoLoop() {
  epoll_event evs[64];
  for (;;) {
    const int n = ::epoll_wait(epoll.get(), evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      spdlog::error("sandbox output thread: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == 0) {
        std::lock_guard lock(mu);
        if (stopping) return;
        continue;
      }
      Watch w;
      {
        std::lock_guard lock(watch_mu);
        auto it = watches.find(evs[i].data.u64);
        if (it == watches.end()) continue;
        w = it->second;
      }
      if (w.kind == 4) {
        auto r = w.box->engine->ResultOf(w.proc->engine_id);
        FinishProcess(w.box, w.proc, r.ok() ? std::optional(*r) : std::nullopt);
        continue;
      }
      std::lock_guard io(w.proc->io_mu);
      if (!w.proc->finished) Drain(*w.proc, w.kind);
    }
  }
}

Result<store::ProcessRecord> SandboxService::StartProcess(std::string_view sandbox_id,
                                                          store::ProcessRequest request,
                                                          const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  if (request.argv.empty() || request.argv[0].empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "argv: a program to run is required");
  }
  if (request.timeout_s && *request.timeout_s < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "timeout_s must not be negative");
  }
  if (request.pty && (request.stdin_open || !request.stdin_data.empty())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "stdin and stdin_open do not go with pty: a terminal's input is written to "
                     "it (…:stdin or the pty WebSocket)");
  }
  // A paused sandbox starts nothing (its init is frozen): refused before anything is recorded.
  if (sb->state != SandboxState::kRunning) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}, not RUNNING{}",
                     sandbox_id, store::SandboxStateName(sb->state),
                     sb->state == SandboxState::kPaused ? "; resume it first" : "");
  }
  auto box = impl_->Box(sandbox_id);
  if (!box) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is not running on this node",
                     sandbox_id);
  }
  impl_->Activity(*box);
  // The command policy judges it as one step of a run by this key with the sandbox's labels.
  policy::Decision d;
  auto cp = impl_->options.command_policy ? impl_->options.command_policy() : nullptr;
  if (cp) {
    policy::CommandInput in;
    in.argvs.push_back(request.argv);
    in.api_key_name = who.name;
    in.labels = sb->labels;
    d = cp->Evaluate(in);
  } else {
    d.action = policy::Action::kReview;
  }
  if (d.action == policy::Action::kDeny) {
    const std::string why = d.reasons.empty() ? "no rule allows it" : d.reasons.front().message;
    impl_->Audit(who, "process.denied", sandbox_id,
                 {{"argv", request.argv}, {"policy", policy::ToJson(d)}});
    return MakeError(ErrorCode::kPermissionDenied, "the command policy denies {}: {}",
                     d.command.empty() ? request.argv[0] : d.command, why);
  }
  store::ProcessRecord rec;
  static_cast<store::ProcessRequest&>(rec) = std::move(request);
  rec.sandbox_id = std::string(sandbox_id);
  rec.submitter = who.name;
  rec.state = ProcessState::kAwaitingReview;
  rec.policy = policy::ToJson(d);
  if (d.action == policy::Action::kAllow) {
    rec.approval = store::SandboxApproval{
        "policy", NowMs(), d.rule ? fmt::format("{}:{}", d.rule->file, d.rule->line) : ""};
  }
  auto created = impl_->CreateProcess(rec);
  if (!created.ok()) return std::move(created).error();
  if (d.action == policy::Action::kReview) {
    impl_->Audit(who, "process.awaiting_review", sandbox_id,
                 {{"process_id", created->id}, {"argv", created->argv}});
    return created;
  }
  return impl_->Launch(box, std::move(*created), who);
}

Result<ProcessOutcome> SandboxService::WaitProcess(std::string_view sandbox_id,
                                                   int64_t process_id,
                                                   std::chrono::milliseconds timeout,
                                                   size_t max_bytes, const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ProcessOutcome out;
  for (;;) {
    // Read before looking, so that a decision made meanwhile is not missed.
    uint64_t seen = 0;
    {
      std::lock_guard d(impl_->decide_mu);
      seen = impl_->decisions;
    }
    std::shared_ptr<LiveProc> proc;
    if (auto box = impl_->Box(sandbox_id)) {
      std::lock_guard pl(box->procs_mu);
      auto it = box->procs.find(process_id);
      if (it != box->procs.end()) proc = it->second;
    }
    if (proc) {
      std::unique_lock w(proc->wait_mu);
      if (!proc->wait_cv.wait_until(w, deadline, [&] { return proc->final_record.has_value(); })) {
        return MakeError(ErrorCode::kUnavailable, "process {} still runs after {} ms", process_id,
                         timeout.count());
      }
      out.process = *proc->final_record;
      break;
    }
    auto rec = impl_->store.GetProcess(sandbox_id, std::to_string(process_id));
    if (!rec.ok()) return std::move(rec).error();
    if (rec->state != ProcessState::kAwaitingReview) {
      out.process = *rec;
      break;
    }
    // Waiting for a reviewer: until a decision on some process, then look again.
    std::unique_lock d(impl_->decide_mu);
    if (!impl_->decide_cv.wait_until(d, deadline, [&] { return impl_->decisions != seen; })) {
      return MakeError(ErrorCode::kUnavailable, "process {} still waits for review after {} ms",
                       process_id, timeout.count());
    }
  }
  const std::string dir = Impl::ProcessDir(impl_->SandboxDir(sandbox_id), process_id);
  auto head = [&](int stream, std::string* text, bool* truncated) {
    auto data = ReadFile(ProcessOutput::StreamPath(dir, stream), max_bytes + 1);
    if (!data.ok()) {
      // ReadFile refuses a file past its cap: read the first max_bytes by hand.
      UniqueFd fd(::open(ProcessOutput::StreamPath(dir, stream).c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) return;
      text->resize(max_bytes);
      auto n = ReadAllAt(fd.get(), text->data(), max_bytes, 0);
      text->resize(n.ok() ? *n : 0);
      *truncated = true;
      return;
    }
    *text = std::move(*data);
    if (text->size() > max_bytes) {
      text->resize(max_bytes);
      *truncated = true;
    }
  };
  head(1, &out.stdout_head, &out.stdout_truncated);
  head(2, &out.stderr_head, &out.stderr_truncated);
  return out;
}

Result<store::ProcessRecord> SandboxService::GetProcess(std::string_view sandbox_id,
                                                        std::string_view id_or_tag,
                                                        const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  return impl_->store.GetProcess(sandbox_id, id_or_tag);
}

Result<std::vector<store::ProcessRecord>> SandboxService::ListProcesses(
    std::string_view sandbox_id, store::ProcessFilter filter, const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  return impl_->store.ListProcesses(sandbox_id, filter);
}

Result<store::ProcessRecord> SandboxService::ApproveProcess(std::string_view sandbox_id,
                                                            std::string_view id_or_tag,
                                                            const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = impl_->store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  SBX_TRY(MayReview(who, rec->submitter, "approve process", std::to_string(rec->id)));
  if (rec->state != ProcessState::kAwaitingReview) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} is {}, not AWAITING_REVIEW",
                     rec->id, store::ProcessStateName(rec->state));
  }
  if (sb->state != SandboxState::kRunning) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox {} is {}: the process can start once it is RUNNING again",
                     sandbox_id, store::SandboxStateName(sb->state));
  }
  auto box = impl_->Box(sandbox_id);
  if (!box) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is not running on this node",
                     sandbox_id);
  }
  rec->approval = store::SandboxApproval{who.name, NowMs(), "review"};
  impl_->Audit(who, "process.approved", sandbox_id, {{"process_id", rec->id}});
  return impl_->Launch(box, std::move(*rec), who);
}

Result<store::ProcessRecord> SandboxService::RejectProcess(std::string_view sandbox_id,
                                                           std::string_view id_or_tag,
                                                           const Principal& who,
                                                           const std::string& reason) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = impl_->store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  SBX_TRY(MayReview(who, rec->submitter, "reject process", std::to_string(rec->id)));
  store::ProcessUpdate u;
  store::ProcessResult r;
  r.reason = EndReason{EndCode::kRejected, reason};
  u.result = r;
  auto out = impl_->UpdateProcess(sandbox_id, rec->id, {ProcessState::kAwaitingReview},
                                        ProcessState::kRejected, u);
  if (!out.ok()) return std::move(out).error();
  impl_->Decided();
  impl_->Audit(who, "process.rejected", sandbox_id, {{"process_id", rec->id}, {"reason", reason}});
  return out;
}

Status SandboxService::Signal(std::string_view sandbox_id, std::string_view id_or_tag, int sig,
                              const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  SBX_TRY(live->first->engine->Signal(live->second->engine_id, sig));
  impl_->Audit(who, "process.signaled", sandbox_id,
               {{"process_id", live->second->id}, {"signal", SignalName(sig)}});
  return Ok();
}

Status SandboxService::Kill(std::string_view sandbox_id, std::string_view id_or_tag,
                            const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  SBX_TRY(live->first->engine->Kill(live->second->engine_id));
  impl_->Audit(who, "process.killed", sandbox_id, {{"process_id", live->second->id}});
  return Ok();
}

Status SandboxService::WriteStdin(std::string_view sandbox_id, std::string_view id_or_tag,
                                  std::string_view bytes, bool close, const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  LiveProc& p = *live->second;
  std::lock_guard in(p.in_mu);
  if (!p.in) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process {} has no open stdin (start it with stdin_open or a pty)", p.id);
  }
  SBX_TRY(WriteWithin(p.in.get(), bytes, std::chrono::seconds(10)));
  if (close && !p.pty) p.in.reset();
  return Ok();
}

Status SandboxService::Resize(std::string_view sandbox_id, std::string_view id_or_tag,
                              isolate::PtySize size, const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  if (size.cols == 0 || size.rows == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "a terminal needs at least 1 column and row");
  }
  return live->first->engine->Resize(live->second->engine_id, size);
}

Result<SandboxService::OutputHandle> SandboxService::Output(std::string_view sandbox_id,
                                                            std::string_view id_or_tag,
                                                            const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = impl_->store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  OutputHandle h;
  h.dir = Impl::ProcessDir(impl_->SandboxDir(sandbox_id), rec->id);
  h.process = std::move(*rec);
  if (auto box = impl_->Box(sandbox_id)) {
    std::lock_guard pl(box->procs_mu);
    auto it = box->procs.find(h.process.id);
    if (it != box->procs.end()) h.live = it->second->output;
  }
  return h;
}

}  // namespace sbx::supervisor
