#include "api/http/internal/fronts.h"

#include <algorithm>
#include <utility>

namespace sbx::api::internal {

// ---- StreamFront ----

StreamFront::StreamFront(std::weak_ptr<Wakeable> session, PostFn post, size_t limit_bytes)
    : session_(std::move(session)),
      post_(std::move(post)),
      limit_(std::max<size_t>(1, limit_bytes)) {}

void StreamFront::Run(std::function<void()> fn, bool inline_call) {
  if (!fn) return;
  if (inline_call || !post_(fn)) fn();
}

std::shared_ptr<Wakeable> StreamFront::WakeLocked() {
  if (wake_pending_ || detached_) return nullptr;
  std::shared_ptr<Wakeable> s = session_.lock();
  if (s) {
    wake_pending_ = true;
    s->Wake();
  }
  return s;
}

std::function<void()> StreamFront::FireCloseLocked(CloseReason reason) {
  if (close_fired_) return nullptr;
  close_fired_ = true;
  reason_ = reason;
  on_writable_ = nullptr;
  if (!on_close_) return nullptr;
  return [cb = std::move(on_close_), reason] { cb(reason); };
}

StreamSink::WriteResult StreamFront::Write(std::string_view bytes) {
  std::shared_ptr<Wakeable> keep;
  std::lock_guard lock(mu_);
  if (closed_ || finishing_) return WriteResult::kClosed;
  if (bytes.empty()) return WriteResult::kOk;
  if (buffered_ > 0 && buffered_ + bytes.size() > limit_) return WriteResult::kBackoff;
  queue_.emplace_back(bytes);
  buffered_ += bytes.size();
  keep = WakeLocked();
  return WriteResult::kOk;
}

void StreamFront::Finish() {
  std::shared_ptr<Wakeable> keep;
  std::lock_guard lock(mu_);
  if (closed_ || finishing_) return;
  finishing_ = true;
  on_writable_ = nullptr;
  keep = WakeLocked();
}

void StreamFront::OnWritable(std::function<void()> callback) {
  bool now = false;
  bool inline_call = false;
  {
    std::lock_guard lock(mu_);
    if (closed_ || finishing_) return;
    if (buffered_ <= limit_ / 2) {
      now = true;
      inline_call = detached_;
    } else {
      on_writable_ = std::move(callback);
    }
  }
  if (now) Run(std::move(callback), inline_call);
}

void StreamFront::OnClose(std::function<void(CloseReason)> callback) {
  std::function<void()> run;
  bool inline_call = false;
  {
    std::lock_guard lock(mu_);
    if (!close_fired_) {
      on_close_ = std::move(callback);
      return;
    }
    inline_call = detached_;
    run = [cb = std::move(callback), reason = reason_] { cb(reason); };
  }
  Run(std::move(run), inline_call);
}

bool StreamFront::closed() const {
  std::lock_guard lock(mu_);
  return closed_ || finishing_;
}

size_t StreamFront::buffered_bytes() const {
  std::lock_guard lock(mu_);
  return buffered_;
}

StreamFront::Next StreamFront::Take(std::string* out) {
  std::lock_guard lock(mu_);
  wake_pending_ = false;
  if (closed_) return Next::kClosed;
  if (!queue_.empty()) {
    *out = std::move(queue_.front());
    queue_.pop_front();
    return Next::kData;
  }
  return finishing_ ? Next::kEnd : Next::kIdle;
}

void StreamFront::Written(size_t bytes) {
  std::function<void()> run;
  {
    std::lock_guard lock(mu_);
    buffered_ -= std::min(bytes, buffered_);
    if (on_writable_ && buffered_ <= limit_ / 2) run = std::exchange(on_writable_, nullptr);
  }
  Run(std::move(run), false);
}

void StreamFront::Stop() {
  std::function<void()> run;
  std::shared_ptr<Wakeable> keep;
  {
    std::lock_guard lock(mu_);
    if (closed_ || finishing_) return;
    finishing_ = true;
    run = FireCloseLocked(CloseReason::kServerStopping);
    keep = WakeLocked();
  }
  Run(std::move(run), false);
}

void StreamFront::Close(CloseReason reason) {
  std::function<void()> run;
  bool inline_call = false;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    queue_.clear();
    buffered_ = 0;
    run = FireCloseLocked(reason);
    inline_call = detached_;
  }
  Run(std::move(run), inline_call);
}

void StreamFront::Detach() {
  Close(CloseReason::kServerStopping);
  std::lock_guard lock(mu_);
  detached_ = true;
}

// ---- WebSocketFront ----

WebSocketFront::WebSocketFront(std::weak_ptr<Wakeable> session, PostFn post, Limits limits,
                               std::optional<int64_t> resume_after)
    : session_(std::move(session)),
      post_(std::move(post)),
      limits_(limits),
      initial_resume_(resume_after) {}

WebSocketFront::~WebSocketFront() {
  std::lock_guard lock(mu_);
  DropQueuedLocked(queued_bytes_);
}

void WebSocketFront::Run(std::function<void()> fn, bool inline_call) {
  if (!fn) return;
  if (inline_call || !post_(fn)) fn();
}

bool WebSocketFront::HalfEmptyLocked() const {
  return queue_.size() <= std::max<size_t>(1, limits_.max_messages) / 2 &&
         queued_bytes_ <= limits_.max_bytes / 2;
}

size_t WebSocketFront::queue_space() const {
  std::lock_guard lock(mu_);
  size_t max = std::max<size_t>(1, limits_.max_messages);
  if (ClosingLocked() || queue_.size() >= max || queued_bytes_ >= limits_.max_bytes) return 0;
  if (limits_.budget_used && !queue_.empty() &&
      limits_.budget_used->load(std::memory_order_relaxed) >= limits_.budget_bytes) {
    return 0;  // every session's queues together are full: a replay waits for OnWritable
  }
  return max - queue_.size();
}

bool WebSocketFront::HasRoomFor(size_t bytes) const {
  std::lock_guard lock(mu_);
  return !ClosingLocked() && FitsLocked(bytes);
}

bool WebSocketFront::FitsLocked(size_t bytes) const {
  if (queue_.size() >= std::max<size_t>(1, limits_.max_messages)) return false;
  // Within the byte cap; or, once the queue is half empty (when OnWritable fires), one message
  // of any size: so the queue never holds more than half the cap plus one message, and a
  // message bigger than half the cap does not wait for an empty queue.
  if (queue_.empty()) return true;
  if (limits_.budget_used &&
      limits_.budget_used->load(std::memory_order_relaxed) + bytes > limits_.budget_bytes) {
    return false;
  }
  return queued_bytes_ + bytes <= limits_.max_bytes || queued_bytes_ <= limits_.max_bytes / 2;
}

void WebSocketFront::AddQueuedLocked(size_t n) {
  queued_bytes_ += n;
  if (limits_.budget_used) limits_.budget_used->fetch_add(n, std::memory_order_relaxed);
}

void WebSocketFront::DropQueuedLocked(size_t n) {
  n = std::min(queued_bytes_, n);
  queued_bytes_ -= n;
  if (limits_.budget_used) limits_.budget_used->fetch_sub(n, std::memory_order_relaxed);
}

void WebSocketFront::OnWritable(std::function<void()> callback) {
  bool inline_call = false;
  {
    std::lock_guard lock(mu_);
    if (ClosingLocked()) return;
    if (!HalfEmptyLocked()) {
      on_writable_ = std::move(callback);
      return;
    }
    inline_call = detached_;
  }
  Run(std::move(callback), inline_call);
}

std::shared_ptr<Wakeable> WebSocketFront::WakeLocked() {
  if (wake_pending_ || detached_) return nullptr;
  std::shared_ptr<Wakeable> s = session_.lock();
  if (s) {
    wake_pending_ = true;
    s->Wake();
  }
  return s;
}

std::function<void()> WebSocketFront::FireCloseLocked(CloseReason reason) {
  on_writable_ = nullptr;
  if (close_fired_) return nullptr;
  close_fired_ = true;
  fired_reason_ = reason;
  if (!on_close_) return nullptr;
  return [cb = std::move(on_close_), reason] { cb(reason); };
}

WebSocket::SendResult WebSocketFront::Send(std::string text, std::optional<int64_t> seq) {
  return Queue(std::move(text), {}, seq, false);
}

WebSocket::SendResult WebSocketFront::SendBinary(std::string bytes, std::optional<int64_t> seq) {
  return Queue(std::move(bytes), {}, seq, true);
}

WebSocket::SendResult WebSocketFront::SendBinary(std::string head, FileBytes tail,
                                                 std::optional<int64_t> seq) {
  if (!tail.fd) tail.length = 0;
  return Queue(std::move(head), std::move(tail), seq, true);
}

WebSocket::SendResult WebSocketFront::Queue(std::string text, FileBytes file,
                                            std::optional<int64_t> seq, bool binary) {
  std::function<void()> run;
  std::shared_ptr<Wakeable> keep;
  {
    std::lock_guard lock(mu_);
    if (ended_ || close_requested_ || overflow_) return SendResult::kClosed;
    const size_t bytes = text.size() + file.length;
    if (FitsLocked(bytes)) {
      AddQueuedLocked(bytes);
      queue_.push_back({std::move(text), std::move(file), seq, binary});
      keep = WakeLocked();
      return SendResult::kQueued;
    }
    // Drop what is queued: the client resumes from the last seq that reached the socket.
    overflow_ = true;
    queue_.clear();
    DropQueuedLocked(queued_bytes_);
    run = FireCloseLocked(CloseReason::kOverflow);
    keep = WakeLocked();
  }
  Run(std::move(run), false);
  return SendResult::kOverflow;
}

void WebSocketFront::Close() {
  std::shared_ptr<Wakeable> keep;
  std::lock_guard lock(mu_);
  if (ended_ || close_requested_ || overflow_) return;
  on_writable_ = nullptr;
  close_requested_ = true;
  handler_closed_ = true;
  close_code_ = kCloseNormal;
  keep = WakeLocked();
}

void WebSocketFront::OnClose(std::function<void(CloseReason)> callback) {
  std::function<void()> run;
  bool inline_call = false;
  {
    std::lock_guard lock(mu_);
    if (!close_fired_) {
      on_close_ = std::move(callback);
      return;
    }
    inline_call = detached_;
    run = [cb = std::move(callback), reason = fired_reason_] { cb(reason); };
  }
  Run(std::move(run), inline_call);
}

bool WebSocketFront::closed() const {
  std::lock_guard lock(mu_);
  return ended_ || close_requested_ || overflow_;
}

std::optional<int64_t> WebSocketFront::last_sent_seq() const {
  std::lock_guard lock(mu_);
  return last_sent_;
}

size_t WebSocketFront::queued_messages() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

WebSocketFront::Next WebSocketFront::Take() {
  std::function<void()> writable;
  Next next = TakeLocked(&writable);
  Run(std::move(writable), false);
  return next;
}

WebSocketFront::Next WebSocketFront::TakeLocked(std::function<void()>* writable) {
  std::lock_guard lock(mu_);
  wake_pending_ = false;
  Next next;
  if (ended_) return next;
  if (overflow_) {
    if (final_taken_) return next;
    final_taken_ = true;
    nlohmann::json notice = {{"type", "overflow"}, {"resume_after", nullptr}};
    if (last_sent_) {
      notice["resume_after"] = *last_sent_;
    } else if (initial_resume_) {
      notice["resume_after"] = *initial_resume_;
    }
    next.kind = Next::Kind::kFinal;
    next.text = DumpJson(notice);
    next.close_code = kCloseTryAgainLater;
    return next;
  }
  if (!queue_.empty()) {
    next.kind = Next::Kind::kMessage;
    next.text = std::move(queue_.front().data);
    next.file = std::move(queue_.front().file);
    next.seq = queue_.front().seq;
    next.binary = queue_.front().binary;
    queue_.pop_front();
    DropQueuedLocked(next.text.size() + next.file.length);
    if (on_writable_ && HalfEmptyLocked()) *writable = std::exchange(on_writable_, nullptr);
    return next;
  }
  if (close_requested_ && !close_taken_) {
    close_taken_ = true;
    next.kind = Next::Kind::kClose;
    next.close_code = close_code_;
  }
  return next;
}

void WebSocketFront::Sent(std::optional<int64_t> seq) {
  if (!seq) return;
  std::lock_guard lock(mu_);
  last_sent_ = seq;
}

void WebSocketFront::Stop() {
  std::function<void()> run;
  std::shared_ptr<Wakeable> keep;
  {
    std::lock_guard lock(mu_);
    if (ended_ || overflow_ || close_requested_) return;
    close_requested_ = true;
    close_code_ = kCloseGoingAway;
    run = FireCloseLocked(CloseReason::kServerStopping);
    keep = WakeLocked();
  }
  Run(std::move(run), false);
}

void WebSocketFront::Ended(CloseReason reason) {
  std::function<void()> run;
  std::shared_ptr<MessageCallback> drop;
  bool inline_call = false;
  {
    std::lock_guard lock(mu_);
    ended_ = true;
    if (!delivering_) drop = std::move(on_message_);
    queue_.clear();
    DropQueuedLocked(queued_bytes_);
    if (overflow_) {
      reason = CloseReason::kOverflow;
    } else if (handler_closed_) {
      reason = CloseReason::kServerClosed;
    }
    run = FireCloseLocked(reason);
    inline_call = detached_;
  }
  Run(std::move(run), inline_call);
}

void WebSocketFront::OnMessage(MessageCallback callback) {
  std::function<void()> start;
  {
    std::lock_guard lock(mu_);
    // Nothing more will come to a session that is over with nothing left to deliver.
    if (ended_ && incoming_.empty()) return;
    on_message_ = callback ? std::make_shared<MessageCallback>(std::move(callback)) : nullptr;
    start = StartDeliveryLocked();
  }
  Run(std::move(start), false);
}

bool WebSocketFront::IncomingRoomLocked() const {
  return incoming_bytes_ < limits_.max_incoming_bytes &&
         incoming_.size() < std::max<size_t>(1, limits_.max_incoming_messages);
}

bool WebSocketFront::IncomingRoom() const {
  std::lock_guard lock(mu_);
  return IncomingRoomLocked();
}

std::function<void()> WebSocketFront::StartDeliveryLocked() {
  if (delivering_ || incoming_.empty() || !on_message_ || detached_) return nullptr;
  delivering_ = true;
  // A front made without a shared_ptr (a unit test of the queue alone) has no one to deliver
  // to on the pool.
  return [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->Deliver();
  };
}

bool WebSocketFront::Received(std::string_view data, bool binary) {
  std::function<void()> start;
  bool room = true;
  {
    std::lock_guard lock(mu_);
    // Nobody listens, and nobody will: on_open has returned without a callback.
    if (opened_ && !on_message_) return true;
    incoming_bytes_ += data.size();
    incoming_.push_back({std::string(data), binary});
    start = StartDeliveryLocked();
    room = IncomingRoomLocked();
    if (!room) read_paused_ = true;
  }
  Run(std::move(start), false);
  return room;
}

void WebSocketFront::Opened() {
  std::function<void()> start;
  std::shared_ptr<Wakeable> keep;
  {
    std::lock_guard lock(mu_);
    opened_ = true;
    if (!on_message_) {
      incoming_.clear();
      incoming_bytes_ = 0;
      if (read_paused_) {
        read_paused_ = false;
        keep = WakeLocked();
      }
    }
    start = StartDeliveryLocked();
  }
  Run(std::move(start), false);
}

void WebSocketFront::Deliver() {
  for (;;) {
    Incoming message;
    std::shared_ptr<MessageCallback> callback;
    std::shared_ptr<Wakeable> keep;
    {
      std::lock_guard lock(mu_);
      if (incoming_.empty() || !on_message_) {
        delivering_ = false;
        // The session is over and everything it read delivered: drop the callback, which
        // often holds this WebSocket.
        if (ended_) callback = std::move(on_message_);
        break;
      }
      message = std::move(incoming_.front());
      incoming_.pop_front();
      incoming_bytes_ -= std::min(incoming_bytes_, message.data.size());
      callback = on_message_;
      // Read on once the callbacks have caught up by half.
      if (read_paused_ && incoming_bytes_ <= limits_.max_incoming_bytes / 2 &&
          incoming_.size() <= std::max<size_t>(1, limits_.max_incoming_messages) / 2) {
        read_paused_ = false;
        // The session resumes reading when it next runs (Take() clears wake_pending_).
        keep = WakeLocked();
      }
    }
    (*callback)(message.data, message.binary);
  }
}

void WebSocketFront::Detach() {
  Ended(CloseReason::kServerStopping);
  std::lock_guard lock(mu_);
  detached_ = true;
}

}  // namespace sbx::api::internal
