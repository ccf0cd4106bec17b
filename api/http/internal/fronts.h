// The handler-facing halves of streamed responses and WebSocket sessions: thread-safe, bounded
// queues between producers (any thread) and the session that writes them (its strand). No Asio
// here, so they are unit-tested without sockets.
//
// A front wakes its session through Wakeable::Wake(), which posts to the session's strand; the
// session then drains the front with Take() until it says kIdle. Callbacks for the handler run
// through `post` (the server's worker pool); once the front is detached (the server stopped)
// they run on the calling thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "api/http/http.h"

namespace sbx::api::internal {

class Wakeable {
 public:
  virtual ~Wakeable() = default;
  // Thread-safe; must not run the session's work inline.
  virtual void Wake() = 0;
};

// Runs a callback on the worker pool; false when the pool no longer takes work (the caller
// then runs it itself).
using PostFn = std::function<bool(std::function<void()>)>;

class StreamFront final : public StreamSink {
 public:
  enum class Next { kIdle, kData, kEnd, kClosed };

  StreamFront(std::weak_ptr<Wakeable> session, PostFn post, size_t limit_bytes);

  WriteResult Write(std::string_view bytes) override;
  void Finish() override;
  void OnWritable(std::function<void()> callback) override;
  void OnClose(std::function<void(CloseReason)> callback) override;
  bool closed() const override;
  size_t buffered_bytes() const override;

  // Session side. kData moves the next piece into *out; its bytes stay counted until Written.
  Next Take(std::string* out);
  void Written(size_t bytes);
  // The server is stopping: no more writes, what is queued still goes out, then the end;
  // OnClose(kServerStopping) runs now.
  void Stop();
  // The stream is over: the queue is dropped and OnClose(reason) runs unless it already has.
  void Close(CloseReason reason);
  // Close(kServerStopping); from now on callbacks run on the calling thread.
  void Detach();

 private:
  // Returns the session so that its last reference, if this is it, is dropped unlocked.
  std::shared_ptr<Wakeable> WakeLocked();
  std::function<void()> FireCloseLocked(CloseReason reason);
  void Run(std::function<void()> fn, bool inline_call);

  const std::weak_ptr<Wakeable> session_;
  const PostFn post_;
  const size_t limit_;

  mutable std::mutex mu_;
  std::deque<std::string> queue_;
  size_t buffered_ = 0;     // queued plus the piece being written
  bool finishing_ = false;  // Finish() or Stop(): end after the queue
  bool closed_ = false;     // Close(): nothing more goes out
  bool close_fired_ = false;
  CloseReason reason_ = CloseReason::kFinished;
  bool wake_pending_ = false;
  bool detached_ = false;
  std::function<void()> on_writable_;
  std::function<void(CloseReason)> on_close_;
};

class WebSocketFront final : public WebSocket,
                             public std::enable_shared_from_this<WebSocketFront> {
 public:
  struct Limits {
    size_t max_messages = 1024;
    size_t max_bytes = 8 * 1024 * 1024;
    // Incoming messages waiting for the OnMessage callback: past either, the session stops
    // reading until the callbacks catch up.
    size_t max_incoming_bytes = 64 * 1024;
    size_t max_incoming_messages = 16;
    // Bytes queued by every session together (shared), and the most they may be; a message
    // that would pass it overflows this session unless its queue is empty. Null: no budget.
    std::shared_ptr<std::atomic<size_t>> budget_used;
    size_t budget_bytes = 0;
  };
  struct Next {
    enum class Kind {
      kIdle,
      kMessage,  // send text (or binary, when binary is set)
      kFinal,    // send text, then close with close_code
      kClose,    // close with close_code
    };
    Kind kind = Kind::kIdle;
    std::string text;
    FileBytes file;  // kMessage: binary, and its bytes go on with this range (when fd is set)
    std::optional<int64_t> seq;
    bool binary = false;
    uint16_t close_code = 1000;
  };

  WebSocketFront(std::weak_ptr<Wakeable> session, PostFn post, Limits limits,
                 std::optional<int64_t> resume_after);
  ~WebSocketFront() override;  // gives back its share of the budget

  SendResult Send(std::string text, std::optional<int64_t> seq) override;
  SendResult SendBinary(std::string bytes, std::optional<int64_t> seq) override;
  SendResult SendBinary(std::string head, FileBytes tail, std::optional<int64_t> seq) override;
  using WebSocket::Send;
  size_t queue_space() const override;
  bool HasRoomFor(size_t bytes) const override;
  void OnWritable(std::function<void()> callback) override;
  void Close() override;
  void OnClose(std::function<void(CloseReason)> callback) override;
  bool closed() const override;
  std::optional<int64_t> last_sent_seq() const override;
  void OnMessage(MessageCallback callback) override;

  // Session side.
  Next Take();
  // A data message from the client. False: the incoming queue is full, and the session should
  // stop reading until IncomingRoom() (it is woken when the callbacks have caught up).
  bool Received(std::string_view data, bool binary);
  bool IncomingRoom() const;
  // on_open has returned (or there was none): without a callback by now, what was held is
  // dropped, and later messages are discarded as they come.
  void Opened();
  void Sent(std::optional<int64_t> seq);
  // Server stopping: OnClose(kServerStopping) now; close 1001 once the queue is sent.
  void Stop();
  // The session is over. `reason` is what the session saw (kClientClosed, kError, …); an
  // overflow or a Close() by the handler takes precedence.
  void Ended(CloseReason reason);
  // Ended(kServerStopping); from now on callbacks run on the calling thread.
  void Detach();
  size_t queued_messages() const;

  static constexpr uint16_t kCloseNormal = 1000;
  static constexpr uint16_t kCloseGoingAway = 1001;
  static constexpr uint16_t kCloseTryAgainLater = 1013;

 private:
  std::shared_ptr<Wakeable> WakeLocked();
  std::function<void()> FireCloseLocked(CloseReason reason);
  void Run(std::function<void()> fn, bool inline_call);
  Next TakeLocked(std::function<void()>* writable);
  bool HalfEmptyLocked() const;
  bool FitsLocked(size_t bytes) const;
  // queued_bytes_ changes by +n / -n, and the shared budget with it.
  void AddQueuedLocked(size_t n);
  void DropQueuedLocked(size_t n);
  bool ClosingLocked() const { return ended_ || close_requested_ || overflow_; }
  SendResult Queue(std::string data, FileBytes file, std::optional<int64_t> seq, bool binary);
  bool IncomingRoomLocked() const;
  // Starts a delivery on the worker pool when there is something to deliver and none runs.
  std::function<void()> StartDeliveryLocked();
  void Deliver();

  const std::weak_ptr<Wakeable> session_;
  const PostFn post_;
  const Limits limits_;
  const std::optional<int64_t> initial_resume_;

  mutable std::mutex mu_;
  struct Queued {
    std::string data;
    FileBytes file;
    std::optional<int64_t> seq;
    bool binary = false;
  };
  std::deque<Queued> queue_;
  size_t queued_bytes_ = 0;
  std::optional<int64_t> last_sent_;
  bool overflow_ = false;
  bool final_taken_ = false;
  bool close_requested_ = false;  // Close() or Stop()
  bool close_taken_ = false;
  uint16_t close_code_ = kCloseNormal;
  bool handler_closed_ = false;
  bool ended_ = false;
  bool close_fired_ = false;
  CloseReason fired_reason_ = CloseReason::kClientClosed;
  bool wake_pending_ = false;
  bool detached_ = false;
  std::function<void()> on_writable_;
  std::function<void(CloseReason)> on_close_;

  struct Incoming {
    std::string data;
    bool binary = false;
  };
  std::deque<Incoming> incoming_;
  size_t incoming_bytes_ = 0;
  std::shared_ptr<MessageCallback> on_message_;
  bool opened_ = false;      // on_open returned
  bool delivering_ = false;  // a Deliver() is queued or running
  bool read_paused_ = false;  // Received() said stop; wake the session once there is room
};

}  // namespace sbx::api::internal
