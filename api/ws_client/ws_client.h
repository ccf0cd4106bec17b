// A WebSocket client for `sandboxd runner`'s outbound link: ws:// and wss://, custom headers on
// the upgrade (Authorization), keep-alive pings and an idle timeout, a bounded send queue.
//
// Security: on wss:// the server's certificate chain AND its name (or IP address) are always
// verified, against the given CA file or the system's default verify paths; there is no switch
// to turn verification off.
//
// Threading: each client has one I/O thread; every socket operation runs there. Send, Close,
// Abort, queued_bytes and closed may be called from any thread. The callbacks run on the I/O
// thread (possibly before Connect has returned), one at a time; they should be quick (the link
// waits for them) and not throw (an exception is logged and ends the link).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace sbx::api {
namespace internal {
class WsLink;
}  // namespace internal

struct WsClientOptions {
  // ws://HOST[:PORT][/PATH][?QUERY] or wss://…; HOST is a name, an IPv4 address or [IPv6].
  // The default ports are 80 and 443. No user info, no fragment.
  std::string url;
  // Extra header fields sent with the upgrade request, e.g. {"Authorization", "Bearer …"}. A
  // name must be an HTTP token, and not one the handshake itself sets (Host, Upgrade,
  // Connection, Sec-WebSocket-Key/-Version/-Extensions); a value must not hold CR, LF or NUL.
  std::vector<std::pair<std::string, std::string>> headers;
  // wss:// only: a PEM file of the CA(s) to verify the server with; "" = the system's default
  // verify paths. The chain and the host name (or IP) are always verified.
  std::string ca_file;
  // For all of DNS, TCP, TLS and the upgrade.
  std::chrono::milliseconds connect_timeout{10'000};
  // A link with no frame from the server for this long is closed; a ping is sent when half of
  // it has passed without one (so a live but quiet server keeps it open). Zero: no timeout.
  std::chrono::milliseconds idle_timeout{20'000};
  // An incoming message larger than this closes the link (close code 1009).
  size_t max_message_bytes = 16 << 20;
  // Bytes accepted by Send/SendBinary and not yet written to the socket. A Send that would go
  // past it is refused and ends the link at once with on_close("send queue full").
  size_t max_queued_bytes = 64 << 20;
};

struct WsClientCallbacks {
  // Each data message, whole, on the I/O thread, in the order received.
  std::function<void(std::string data, bool binary)> on_message;
  // Once, on the I/O thread, after the link has ended (closed by either side, failed, timed
  // out, aborted); no on_message follows it. `why` says which: "closed" after Close(),
  // "closed by the server (1001 going away)", "aborted", "send queue full", "no frame from the
  // server for 20000 ms", "read failed: …". Not called when Connect fails.
  std::function<void(std::string why)> on_close;
};

// A parsed ws:// or wss:// URL.
struct WsUrl {
  bool tls = false;
  std::string host;          // a name, or an IP address (IPv6 without the brackets)
  uint16_t port = 0;         // the default port when the URL names none
  std::string target = "/";  // the path and query, "/" when the URL has no path
};
// kInvalidArgument, saying what is wrong, for anything but the forms in WsClientOptions::url.
Result<WsUrl> ParseWsUrl(std::string_view url);

class WsClient {
 public:
  // Resolves, connects, does the TLS handshake (wss) and the upgrade, all within
  // connect_timeout, then starts the I/O thread's read loop. Errors:
  //   kInvalidArgument  a bad URL or header, or a CA file that cannot be loaded;
  //   kUnavailable      DNS, TCP, TLS or timeout failures, with a message naming the step and
  //                     the server; a certificate that fails verification names the verify
  //                     error ("certificate verify failed (…)", "hostname mismatch") and what
  //                     to do; an upgrade answered with an HTTP status other than 101 (except
  //                     below), with the status and the start of the body;
  //   kPermissionDenied the upgrade answered 401 or 403 (status and start of body as above).
  static Result<std::unique_ptr<WsClient>> Connect(const WsClientOptions& options,
                                                   WsClientCallbacks callbacks);

  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;
  // Close(), then waits for the link to end (on_close runs meanwhile, on the I/O thread) and
  // joins the I/O thread: at most about 2 s past a stuck peer, plus a callback still running.
  // Called from a callback (on the I/O thread), it ends the link at once instead, no later
  // callback runs (not even on_close), and the I/O thread ends on its own after the current
  // callback returns.
  ~WsClient();

  // Queue a text (UTF-8) or a binary message. Returns false, queueing nothing, once the link is
  // closing or closed, or when the message would overflow max_queued_bytes (which ends the
  // link).
  bool Send(std::string text);
  bool SendBinary(std::string bytes);
  // Bytes accepted and not yet written to the socket (the message being written included).
  size_t queued_bytes() const;

  // Graceful close: the queued messages are sent, then a close frame (1000), and the server's
  // close is awaited; past 2 s from this call the link is cut instead. Idempotent; does not
  // wait (the destructor does). on_close gets "closed", or why it ended otherwise.
  void Close();
  // Ends the link at once: no close handshake, queued messages dropped (e.g. when the peer is
  // known dead). on_close gets "aborted" unless the link had already ended. Idempotent.
  void Abort();
  // Whether the link has ended (on_close has run or is running).
  bool closed() const;

 private:
  explicit WsClient(std::shared_ptr<internal::WsLink> link);
  std::shared_ptr<internal::WsLink> link_;
};

}  // namespace sbx::api
