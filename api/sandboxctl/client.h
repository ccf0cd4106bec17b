// sandboxctl's connection to the sandboxd API: a small synchronous HTTP/1.1 and WebSocket client
// over a Unix socket or TCP. One connection per call (the daemon is local or near; keeping it
// simple beats keep-alive here). No Boost header is needed to use it; the Beast adapter is
// client.cc, and its exceptions stop there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace sbx::ctl {

// Where the daemon listens: "unix:/PATH", "HOST:PORT" or "[V6ADDR]:PORT".
struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;  // kUnix
  std::string host;  // kTcp (without brackets)
  std::string port;  // kTcp
  // The spelling it was parsed from ("unix:/run/sandboxd/api.sock", "127.0.0.1:8080").
  std::string ToString() const;
};

inline constexpr char kDefaultEndpoint[] = "unix:/run/sandboxd/api.sock";

// kInvalidArgument when `spec` is neither form (a relative unix path, an empty host or port).
Result<Endpoint> ParseEndpoint(std::string_view spec);

// A reply that arrived, whatever its status.
struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
  // Every header field of the reply, in order (names as sent). Filled in by Call() and Upload().
  std::vector<std::pair<std::string, std::string>> headers;
};

// An answer the server gave with a status outside 2xx, as an error: `message` is the server's
// {"error":{"message"}} (or the body, or the status line), `context` holds "HTTP 403
// permission_denied". code: 400 kInvalidArgument, 401/403 kPermissionDenied, 404 kNotFound, 409
// kFailedPrecondition, 429 kResourceExhausted, 503 kUnavailable, anything else kInternal.
Error ApiError(const HttpReply& reply);

// The bytes of one streamed response body as they arrive. Returning an error stops the stream
// (the connection is closed) and the call returns that error.
using BodySink = std::function<Status(std::string_view bytes)>;

// What a WebSocket event handler tells the follower.
enum class EventAction { kContinue, kStop };

// Hands a request body to Client::Upload piece by piece: the producer calls `write` with each
// piece (any size; they are gathered into chunks of 64 KiB) and returns Ok when done. An error
// from `write` (the connection broke) should be returned as it is.
using BodyProducer = std::function<Status(const BodySink& write)>;

// The caller's side of a two-way WebSocket (Client::Duplex). Every method may be called from any
// thread while Duplex runs, and does nothing once it has returned.
class DuplexChannel {
 public:
  virtual ~DuplexChannel() = default;
  // Queues a binary (opcode 2) or text (opcode 1) message; messages go out in the order queued.
  virtual void SendBinary(std::string bytes) = 0;
  virtual void SendText(std::string text) = 0;
  // Sends a normal close once the queued messages are out; Duplex returns when the server
  // answers it (or the connection ends).
  virtual void Close() = 0;
};

class Client {
 public:
  // `api_key` may be empty: requests then carry no key, and a 401 says how to give one.
  Client(Endpoint endpoint, std::string api_key);

  const Endpoint& endpoint() const { return endpoint_; }

  // Sends one request (a JSON body when `json_body` is not null) and reads the whole reply, up
  // to 256 MiB. Fails with kUnavailable when the daemon cannot be reached (the message names
  // the address and asks whether sandboxd runs), kInternal when the connection breaks.
  // `target` is the path and query, already encoded.
  Result<HttpReply> Call(std::string_view method, const std::string& target,
                         const nlohmann::json* json_body = nullptr,
                         const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Call() that expects a 2xx JSON answer: other statuses become ApiError(), a body that is not
  // JSON kInternal.
  Result<nlohmann::json> CallJson(std::string_view method, const std::string& target,
                                  const nlohmann::json* json_body = nullptr);

  // POST `target` for a resource the server creates (201) or finds again by its idempotency key
  // (200): the resource and which it was. Other statuses become ApiError(); an answer that is
  // not a JSON object with a string "id" is kInternal "the server's answer to POST TARGET is not
  // WHAT" (`what`: "a run").
  struct Created {
    nlohmann::json resource;
    bool created = false;  // 201
  };
  Result<Created> CallCreate(const std::string& target, const nlohmann::json& body,
                             std::string_view what);

  // GET `target` and hand the body to `sink` piece by piece as it arrives (chunked or not),
  // never holding it whole. A non-2xx reply is read whole (bounded) and returned as ApiError()
  // without calling `sink`. Returns the status on success.
  Result<int> Stream(const std::string& target, const BodySink& sink);

  // Sends one request (a JSON body when `json_body` is not null) and hands the reply to the
  // caller as it arrives, whatever its status: `on_head` gets the status and header fields
  // (body empty), then `sink` each piece of the body. An error from either stops the exchange
  // and is returned. Errors as for Call().
  Status Exchange(std::string_view method, const std::string& target,
                  const nlohmann::json* json_body,
                  const std::vector<std::pair<std::string, std::string>>& headers,
                  const std::function<Status(const HttpReply& head)>& on_head,
                  const BodySink& sink);

  // Opens the WebSocket at `target` and calls `on_event` with each JSON message until the
  // server closes normally (returns Ok), `on_event` says kStop (Ok), or something fails.
  //
  // `{"type":"overflow","resume_after":SEQ}` notices are not passed on: the connection is
  // reopened with `after` set to the last seq that `on_event` saw (or the target's own `after`
  // when none was), and messages whose seq is not above it are dropped, so that the caller sees
  // each event once and in order. A close with 1013 (try again later) or a connection that
  // breaks mid-stream is resumed the same way; after 20 reconnections in a row that bring no
  // new event, or when the daemon cannot be reached again, it fails. Any other close code
  // (1001: the server is stopping) fails with kUnavailable. `make_target(after)` builds the
  // target for a given position. A refused upgrade is returned as ApiError().
  Status FollowEvents(const std::function<std::string(int64_t after)>& make_target, int64_t after,
                      const std::function<EventAction(const nlohmann::json& event)>& on_event);

  // Sends a request whose body `produce` streams (a file, a tar archive): with Content-Length
  // when `length` is known (the producer must then write exactly that many bytes, else the
  // request fails with kInternal and the connection is dropped), chunked otherwise. Reads the
  // whole reply like Call(). A server that answers before taking the whole body (401, 413)
  // gets its answer returned, not the broken write.
  Result<HttpReply> Upload(std::string_view method, const std::string& target,
                           const std::string& content_type, std::optional<uint64_t> length,
                           const BodyProducer& produce);

  // Opens the WebSocket at `target` and runs it on the calling thread until it ends: `on_open`
  // gets the channel once the upgrade succeeded (keep it to send from other threads),
  // `on_message` each message the server sends (`binary`: opcode 2). Returns Ok when the
  // server closes normally (1000) or after DuplexChannel::Close(); kUnavailable for another
  // close code, kInternal when the connection breaks, ApiError() for a refused upgrade, and
  // the error `on_message` returns (the connection is dropped then). No reconnection: a
  // terminal's bytes cannot be replayed in order once lost.
  Status Duplex(const std::string& target,
                const std::function<void(std::shared_ptr<DuplexChannel>)>& on_open,
                const std::function<Status(std::string_view data, bool binary)>& on_message);

 private:
  Endpoint endpoint_;
  std::string api_key_;
};

// Percent-encodes `s` for use as one path segment or query value: everything but the RFC 3986
// unreserved characters (A-Z a-z 0-9 - . _ ~) becomes %XX.
std::string PercentEncode(std::string_view s);
// Encodes each '/'-separated segment of `path` with PercentEncode, keeping the '/'s.
std::string EncodePathSegments(std::string_view path);

}  // namespace sbx::ctl
