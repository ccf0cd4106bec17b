// What a route handler sees and returns: Request, Response, streamed bodies and WebSocket
// sessions. No Boost header is needed to use these; the Beast adapter lives in api/*.cc.
//
// Threading: handlers run on the server's worker pool, never on an I/O thread, so they may block
// (database, cgroup files, spawning). StreamSink and WebSocket are safe to use from any thread;
// their callbacks run on the worker pool too, except after the server has stopped, when they run
// on the thread that registers them (the pool is gone).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "api/http/auth.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::api {

enum class Method { kGet, kHead, kPost, kPut, kPatch, kDelete, kOptions, kOther };
// "GET", "POST", …; "OTHER" for kOther.
const char* MethodName(Method method);
// Method tokens are case-sensitive (RFC 9110 §9.1): "get" is kOther.
Method ParseMethod(std::string_view token);

// Header fields in the order they came; names compare case-insensitively.
class HeaderList {
 public:
  void Add(std::string name, std::string value);
  // The first field called `name`, or nullopt.
  std::optional<std::string_view> Get(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// A decoded query string. Keys may repeat ("?stream=stdout&stream=stderr").
class QueryParams {
 public:
  QueryParams() = default;
  explicit QueryParams(std::vector<std::pair<std::string, std::string>> items)
      : items_(std::move(items)) {}
  // The first value for `key`, or nullopt; "?follow" alone gives "".
  std::optional<std::string_view> Get(std::string_view key) const;
  std::vector<std::string_view> GetAll(std::string_view key) const;
  bool Has(std::string_view key) const { return Get(key).has_value(); }
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct Request {
  Method method = Method::kGet;
  std::string method_name;  // as sent
  std::string target;       // as sent: path and query, not decoded
  std::string path;         // the path part of target, not decoded
  int version = 11;         // 10 for HTTP/1.0, 11 for HTTP/1.1
  // Decoded {param} segments of the route pattern. Never empty, never "." or "..", never
  // contain '/' or NUL.
  std::map<std::string, std::string, std::less<>> path_params;
  QueryParams query;  // decoded; '+' is a space
  HeaderList headers;
  std::string body;
  // The authenticated caller; nullopt on public routes.
  std::optional<Principal> principal;
  // "127.0.0.1:40112", "[::1]:40112" or "unix".
  std::string peer;

  // The decoded path parameter, or "" when the pattern has no such parameter.
  std::string_view PathParam(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  // Extra header fields. A name must be an HTTP token and a value must not contain CR, LF or
  // NUL; a response that breaks this is replaced by a 500.
  HeaderList headers;
  std::string body;
};

// The JSON text of `body` with status `status`. Invalid UTF-8 in strings is replaced (U+FFFD)
// rather than failing.
Response JsonResponse(int status, const nlohmann::json& body);
// {"error": {"code": code, "message": message}}.
Response ErrorResponse(int status, std::string_view code, std::string_view message);
// The status from HttpStatusFor(error.code), the code from ErrorCodeName(); the message is
// error.message only: errno text and context stay in the server's log.
Response ErrorResponse(const Error& error);
// kInvalidArgument 400, kPermissionDenied 403, kNotFound 404, kAlreadyExists and
// kFailedPrecondition 409, kResourceExhausted 429, kUnavailable 503, kInternal 500.
int HttpStatusFor(ErrorCode code);
// nlohmann::json::dump that replaces invalid UTF-8 instead of throwing.
std::string DumpJson(const nlohmann::json& value);

// The writing end of a streamed response body (chunked transfer encoding on HTTP/1.1; on
// HTTP/1.0 the raw bytes, ended by closing the connection).
//
// The buffer is bounded (ServerOptions::stream_buffer_bytes). A producer that is faster than the
// client gets kBackoff: nothing was taken, and it should keep its position (a log offset) and
// try again once OnWritable fires, or poll. This is how "follow the log until the run ends" is
// built: write what there is, on kBackoff wait for OnWritable, when idle wait for new output,
// and call Finish() when the run has ended and everything is written.
class StreamSink {
 public:
  enum class WriteResult {
    kOk,       // queued
    kBackoff,  // the buffer is full; nothing was queued
    kClosed,   // the stream is over (Finish called, client gone, server stopping); stop producing
  };
  enum class CloseReason {
    kFinished,        // Finish() was called and everything was sent
    kClientGone,      // the client disconnected, or a write failed or timed out
    kServerStopping,  // the server is shutting down; what was queued is still sent
  };

  virtual ~StreamSink() = default;

  // Queues `bytes` as the next piece of the body. Empty writes are accepted and ignored. A
  // piece larger than the buffer is accepted when the buffer is empty.
  virtual WriteResult Write(std::string_view bytes) = 0;
  // Ends the body once everything queued has been sent. Later writes get kClosed. Idempotent.
  virtual void Finish() = 0;
  // Calls `callback` once when the buffer is at most half full: right away when it already is,
  // else after enough has been sent. Replaces an earlier callback that has not run. Not called
  // once the stream is closed (OnClose is).
  virtual void OnWritable(std::function<void()> callback) = 0;
  // Calls `callback` once when the stream ends, for any reason; right away when it already
  // has. Replaces an earlier callback that has not run.
  virtual void OnClose(std::function<void(CloseReason)> callback) = 0;
  virtual bool closed() const = 0;
  // Bytes accepted and not yet written to the socket.
  virtual size_t buffered_bytes() const = 0;
};

struct StreamResponse {
  int status = 200;
  std::string content_type = "application/octet-stream";
  HeaderList headers;  // same rules as Response::headers
  // Called once, on a worker thread, after the response head has been sent. The producer may
  // keep the sink (in a thread, a subscription, a timer) as long as it likes; it must end with
  // Finish() or stop at kClosed/OnClose. If the head cannot be sent, start is not called.
  std::function<void(std::shared_ptr<StreamSink>)> start;
};

// A byte range of an open file, kept open by whoever holds it.
struct FileBytes {
  std::shared_ptr<const UniqueFd> fd;
  int64_t offset = 0;
  size_t length = 0;
};

// A server-side WebSocket session. Outgoing messages go through a bounded queue
// (ServerOptions::ws_queue_messages / ws_queue_bytes; once the queue is at most half full one
// message of any size is taken, see HasRoomFor). When a Send would exceed it, the queued
// messages are dropped, the client is sent {"type":"overflow","resume_after":SEQ} where SEQ is
// the seq of the last message actually written to the socket (or the accept's resume_after
// when none was, or null), and the session closes with code 1013 (try again later). The client
// reconnects with ?after=SEQ. Pings and close are answered. Incoming data messages go to the
// OnMessage callback, or are read and discarded when there is none.
class WebSocket {
 public:
  enum class SendResult {
    kQueued,
    kOverflow,  // the queue was full: this message and the queued ones were dropped; closing
    kClosed,    // the session is closing or closed; nothing was queued
  };
  enum class CloseReason {
    kClientClosed,    // the client sent close or disconnected
    kServerClosed,    // Close() was called
    kOverflow,        // the outbound queue overflowed
    kServerStopping,  // the server is shutting down
    kError,           // a read or write failed or timed out
  };

  virtual ~WebSocket() = default;

  // Queues `text`. `seq` is the position of the event it carries, if any; it becomes
  // resume_after once the message has been written.
  virtual SendResult Send(std::string text, std::optional<int64_t> seq) = 0;
  SendResult Send(std::string text) { return Send(std::move(text), std::nullopt); }
  // The same, as a binary message (opcode 2): bytes that need not be UTF-8, sent as they are.
  virtual SendResult SendBinary(std::string bytes, std::optional<int64_t> seq) = 0;
  // A binary message of `head` followed by `tail`'s bytes, which go from the file to the socket
  // with sendfile: the daemon never copies them (over TCP the kernel sends the page cache's
  // pages). The file must hold the whole range until the message is written: a range cut short
  // fails the write and ends the session.
  virtual SendResult SendBinary(std::string head, FileBytes tail, std::optional<int64_t> seq) = 0;
  // How many messages Send can queue now without overflowing (0 once closing). A handler that
  // replays history (?after=SEQ) paces itself with this and OnWritable, so that a replay never
  // overflows; live events just Send.
  virtual size_t queue_space() const = 0;
  // Whether a message of `bytes` would be queued now rather than overflow: not closing, below
  // the message cap, and within the byte cap (or the queue is empty: one message of any size
  // is always taken).
  virtual bool HasRoomFor(size_t bytes) const = 0;
  // Calls `callback` once when the queue is at most half full (messages and bytes): right away
  // when it already is, else after enough has been written. Replaces an earlier callback that
  // has not run. Not called once the session is closing (OnClose is).
  virtual void OnWritable(std::function<void()> callback) = 0;
  // Closes normally (1000) after the queued messages are sent.
  virtual void Close() = 0;
  // Calls `callback` once when the session ends; right away when it already has. Replaces an
  // earlier callback that has not run.
  virtual void OnClose(std::function<void(CloseReason)> callback) = 0;
  virtual bool closed() const = 0;
  // The seq of the last message written to the socket, if any carried one.
  virtual std::optional<int64_t> last_sent_seq() const = 0;

  // Calls `callback` with each data message the client sends (text or binary, the payload
  // exactly as sent), on a worker thread, in order and one at a time. Messages that arrive
  // before on_open returns are held and given to the callback it registers (or dropped when it
  // registers none), so a client may send right after the handshake. Bounded: a message over
  // ServerOptions::ws_max_incoming_bytes closes the session with 1009 (message too big), and
  // while the callbacks are behind by that many bytes (or 16 messages) the session stops
  // reading the socket, so a client that outpaces its handler waits rather than costing memory.
  // Messages read before the session ended are still delivered after it (OnClose may run
  // meanwhile on another worker). Replaces an earlier callback; the callback must not block for
  // long: it holds up the next message.
  using MessageCallback = std::function<void(std::string_view data, bool binary)>;
  virtual void OnMessage(MessageCallback callback) = 0;
};

// A WebSocket route's handler accepts the upgrade by returning this (or refuses it by returning
// a Response, which is sent as a plain HTTP answer).
struct WebSocketAccept {
  // The resume point to report on an overflow before any message with a seq was sent (the
  // client's ?after=).
  std::optional<int64_t> resume_after;
  // Called once, on a worker thread, after the handshake completed. Not called if it failed.
  std::function<void(std::shared_ptr<WebSocket>)> on_open;
};

using Reply = std::variant<Response, StreamResponse, WebSocketAccept>;

// Runs on a worker thread. An exception escaping a handler becomes a 500.
using Handler = std::function<Reply(const Request&)>;

}  // namespace sbx::api
