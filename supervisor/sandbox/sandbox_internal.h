// The sandbox service's insides, shared by its two files: sandbox_service.cc (lifecycle,
// expiry, snapshots, files) and sandbox_processes.cc (processes, their output thread).
// Internal to sbx_sandbox.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/sandbox/sandbox_service.h"
#include "base/clock.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using Clock = std::chrono::steady_clock;

// Milliseconds since the epoch, as the records keep them.
Error SandboxNotFound(std::string_view id);
nlohmann::json ProcessResultJson(const store::ProcessResult& r);
// kPermissionDenied unless `who` may decide on a submission of `submitter`: a reviewer or an
// admin, and never on its own.
Status MayReview(const Principal& who, const std::string& submitter, std::string_view what,
                 std::string_view id);

// ---- The live state of one sandbox --------------------------------------------------------------

struct LiveProc {
  int64_t id = 0;
  isolate::ProcessId engine_id = 0;
  bool pty = false;
  std::shared_ptr<ProcessOutput> output;
  Clock::time_point started;
  // The output thread reads out/err/pty under io_mu; FinishProcess drains and closes them under
  // it, once.
  std::mutex io_mu;
  bool finished = false;
  UniqueFd out, err, pty_fd, done;
  std::vector<uint64_t> tokens;  // epoll registrations
  std::mutex in_mu;
  UniqueFd in;  // a pipe's write end, or a dup of the terminal's master
  // Waiters of WaitProcess.
  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::optional<store::ProcessRecord> final_record;
};

struct LiveBox {
  std::string id;
  std::string submitter;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;
  bool has_workspace = false;
  uint64_t output_cap = 16ull << 20;
  std::string dir;
  std::mutex mu;  // lifecycle calls on this sandbox, one at a time
  std::unique_ptr<LiveSandbox> engine;
  std::optional<RunMounts> mounts;
  std::mutex procs_mu;
  std::map<int64_t, std::shared_ptr<LiveProc>> procs;
  std::atomic<int> running{0};
  std::atomic<bool> ending{false};
  // Guarded by the service's mu.
  Clock::time_point expires;
  Clock::time_point last_activity;
  std::chrono::milliseconds idle{0};
  int64_t expires_at_ms = 0;
};

struct SandboxService::Impl {
  Impl(store::Store& s, EventBus& e, SandboxServiceOptions o)
      : store(s), events(e), options(std::move(o)), snapshots(options.data_dir + "/snapshots") {}

  store::Store& store;
  EventBus& events;
  SandboxServiceOptions options;
  Snapshots snapshots;

  std::mutex mu;  // boxes, timers, stopping
  std::condition_variable timer_cv;
  // Counts the decisions on processes that waited for review (started after an approval,
  // rejected, cancelled with their sandbox), so that WaitProcess wakes when one is decided.
  std::mutex decide_mu;
  std::condition_variable decide_cv;
  uint64_t decisions = 0;
  void Decided() {
    {
      std::lock_guard lock(decide_mu);
      ++decisions;
    }
    decide_cv.notify_all();
  }
  std::map<std::string, std::shared_ptr<LiveBox>> boxes;
  bool stopping = false;
  std::thread timer_thread, io_thread;

  UniqueFd epoll, wake;
  std::mutex watch_mu;
  struct Watch {
    std::shared_ptr<LiveBox> box;
    std::shared_ptr<LiveProc> proc;
    int kind;  // 1 stdout, 2 stderr, 3 terminal, 4 done
  };
  std::map<uint64_t, Watch> watches;
  uint64_t next_token = 1;

  // ---- the change feed (SubscribeChanges) ----
  std::mutex change_mu;
  std::map<uint64_t, std::shared_ptr<const ChangeListener>> change_listeners;
  uint64_t next_change_token = 1;
  // The listeners are called without change_mu held, so that one may unsubscribe (itself or
  // another) from inside its call.
  void Publish(const SandboxChange& change) {
    std::vector<std::shared_ptr<const ChangeListener>> listeners;
    {
      std::lock_guard lock(change_mu);
      for (const auto& [token, listener] : change_listeners) listeners.push_back(listener);
    }
    for (const auto& listener : listeners) (*listener)(change);
  }
  // The store's writes that change a sandbox's or a process's state, published to the feed.
  // (Writes that change no state, an activity time or the engine's info, go to the store
  // directly.)
  Result<store::CreateSandboxResult> CreateSandbox(const store::SandboxRecord& rec) {
    auto r = store.CreateSandbox(rec);
    if (r.ok() && r->created) Publish(ChangeOf(r->sandbox));
    return r;
  }
  Result<store::SandboxRecord> UpdateSandbox(std::string_view id,
                                             const std::vector<store::SandboxState>& from,
                                             store::SandboxState to,
                                             const store::SandboxUpdate& update) {
    auto r = store.UpdateSandbox(id, from, to, update);
    if (r.ok()) Publish(ChangeOf(*r));
    return r;
  }
  Result<store::ProcessRecord> CreateProcess(const store::ProcessRecord& rec) {
    auto r = store.CreateProcess(rec);
    if (r.ok()) Publish(ChangeOf(*r));
    return r;
  }
  Result<store::ProcessRecord> UpdateProcess(std::string_view sandbox_id, int64_t id,
                                             const std::vector<store::ProcessState>& from,
                                             store::ProcessState to,
                                             const store::ProcessUpdate& update) {
    auto r = store.UpdateProcess(sandbox_id, id, from, to, update);
    if (r.ok()) Publish(ChangeOf(*r));
    return r;
  }
  static SandboxChange ChangeOf(const store::SandboxRecord& s) {
    SandboxChange c;
    c.sandbox_id = s.id;
    c.submitter = s.submitter;
    c.state = store::SandboxStateName(s.state);
    if (s.reason.code != store::EndCode::kNone) c.reason = store::RenderEndReason(s.reason);
    return c;
  }
  static SandboxChange ChangeOf(const store::ProcessRecord& p) {
    SandboxChange c;
    c.sandbox_id = p.sandbox_id;
    c.submitter = p.submitter;
    c.process_id = p.id;
    c.state = store::ProcessStateName(p.state);
    if (p.result) c.reason = store::RenderEndReason(p.result->reason);
    return c;
  }

  // ---- helpers ----
  Result<store::SandboxRecord> Load(std::string_view id, const Principal& who) {
    auto sb = store.GetSandbox(id);
    if (!sb.ok()) return std::move(sb).error();
    if (!MayAccess(*sb, who)) return SandboxNotFound(id);
    return sb;
  }
  std::shared_ptr<LiveBox> Box(std::string_view id) {
    std::lock_guard lock(mu);
    auto it = boxes.find(std::string(id));
    return it == boxes.end() ? nullptr : it->second;
  }
  void Activity(LiveBox& box) {
    std::lock_guard lock(mu);
    box.last_activity = Clock::now();
  }
  void Audit(const Principal& who, std::string_view action, std::string_view id,
             nlohmann::json details) {
    events.Audit(who, action, id, std::move(details));
  }
  std::string SandboxDir(std::string_view id) const {
    return options.data_dir + "/" + kSandboxesDir + "/" + std::string(id);
  }
  static std::string ProcessDir(const std::string& sandbox_dir, int64_t pid) {
    return sandbox_dir + "/processes/" + std::to_string(pid);
  }

  Result<store::SandboxRequest> Validate(store::SandboxRequest r, const Principal& who);
  // kFailedPrecondition when this node does not carry every label of the node_selector.
  Status CheckSelector(const store::SandboxRequest& r) const;
  policy::Decision Judge(const store::SandboxRecord& sb);
  Result<store::SandboxRecord> StartApproved(store::SandboxRecord sb, const Principal& who);
  Result<store::SandboxRecord> End(const std::string& id, store::SandboxState state,
                                   store::EndReason reason,
                                   const Principal& who);
  Result<store::SandboxRecord> Freeze(std::string_view id, const Principal& who, bool pause);
  Result<store::SandboxRecord> Restore(const store::SandboxRecord& sb,
                                       const std::shared_ptr<LiveBox>& box);
  std::vector<std::string> WritableDirs(const store::SandboxRecord& sb) const {
    std::vector<std::string> d = {"/tmp", "/artifacts"};
    if (sb.workspace_path && sb.workspace_mode == "cow") d.push_back("/workspace");
    return d;
  }
  Result<files::SandboxRoot> RootOf(const LiveBox& box) const {
    return files::SandboxRoot::OfProcess(box.engine->InitPid(), box.engine->InitPidFd(),
                                         files::Owner{box.engine->HostUid(), box.engine->HostGid()},
                                         options.file_limits);
  }
  Result<store::ProcessRecord> Launch(const std::shared_ptr<LiveBox>& box,
                                      store::ProcessRecord rec, const Principal& who);
  void FinishProcess(const std::shared_ptr<LiveBox>& box, const std::shared_ptr<LiveProc>& proc,
                     std::optional<isolate::LiveProcessResult> result);
  void Drain(LiveProc& proc, int kind);
  void Register(const std::shared_ptr<LiveBox>& box, const std::shared_ptr<LiveProc>& proc);
  void IoLoop();
  void TimerLoop();
  Result<std::pair<std::shared_ptr<LiveBox>, std::shared_ptr<LiveProc>>> LiveProcess(
      std::string_view sandbox_id, std::string_view id_or_tag, const Principal& who,
      store::ProcessRecord* record = nullptr);
};

}  // namespace sbx::supervisor
