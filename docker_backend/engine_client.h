// A client of the Docker Engine API over its Unix socket (never the `docker` binary): one
// connection per call, HTTP/1.1 written and parsed by Boost.Beast, a deadline on every call.
//
// Connect() pings the daemon (GET /_ping; its API-Version header) and negotiates the API
// version: the lower of the daemon's and kMaxApiVersion; a daemon older than kMinApiVersion is
// refused. Every later call goes to /v<version>/<path>.
//
// Errors: kUnavailable when the socket cannot be reached or a call outlives its deadline (the
// message names the socket and what to check); the daemon's own errors ({"message": …}) keep
// their text, with kNotFound for 404, kAlreadyExists for 409 and kInvalidArgument for 400.
//
// Thread safety: every method may be called from any thread; calls share nothing but the
// negotiated version.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::docker {

inline constexpr std::string_view kMinApiVersion = "1.40";  // Docker 19.03
inline constexpr std::string_view kMaxApiVersion = "1.41";  // what this client is written for

struct ClientOptions {
  // "unix:///var/run/docker.sock", "unix:/PATH" or a plain absolute path. Empty: $DOCKER_HOST
  // when it names a unix socket, else /var/run/docker.sock.
  std::string host;
  std::chrono::milliseconds call_timeout{30'000};  // every API call, start to end
};

// The socket path named by `host` (see ClientOptions::host). kInvalidArgument for tcp:// and
// other schemes: only a local socket is supported.
Result<std::string> SocketPathFor(std::string_view host);

// "1.41" < "1.43"; malformed versions compare as 0.0.
int CompareApiVersions(std::string_view a, std::string_view b);
// The version to speak: min(daemon, kMaxApiVersion); kUnavailable below kMinApiVersion.
Result<std::string> NegotiateApiVersion(std::string_view daemon_version);

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A hijacked connection (exec start, attach): the raw multiplexed stream after the HTTP
// upgrade. `early` holds stream bytes that arrived with the response header.
struct HijackedStream {
  UniqueFd fd;
  std::string early;
};

class EngineClient {
 public:
  static Result<std::unique_ptr<EngineClient>> Connect(ClientOptions options);

  const std::string& socket_path() const { return socket_path_; }
  const std::string& api_version() const { return api_version_; }
  const std::string& server_version() const { return server_version_; }

  // One call: `path` below the version prefix ("/containers/create?name=x"). Any HTTP status
  // is a reply; only transport failures are errors.
  Result<HttpReply> Call(std::string_view method, std::string_view path, std::string body = {},
                         std::string_view content_type = "application/json",
                         std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;
  // Call(), then: a 2xx status returns the body parsed as JSON (null for an empty body); any
  // other status is an Error carrying the daemon's message, prefixed by `what`.
  Result<nlohmann::json> CallJson(std::string_view method, std::string_view path,
                                  std::string_view what, const nlohmann::json& body = nullptr,
                                  std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;
  // POST `path` with Connection: Upgrade and returns the raw stream (101 or 200 expected).
  Result<HijackedStream> Hijack(std::string_view path, const nlohmann::json& body,
                                std::chrono::milliseconds timeout) const;

  // GET `path` as HTTP/1.0, so the daemon streams the body unchunked until it closes the
  // connection (stats?stream=true, events): the socket and the body bytes that came with the
  // header. A status other than 200 is an Error with the daemon's message.
  Result<HijackedStream> OpenStream(std::string_view path, std::chrono::milliseconds timeout) const;

  // POST /images/create?fromSrc=-: imports a root filesystem tarball as repo:tag, with
  // Dockerfile instructions `changes` applied (`docker import --change`, e.g. "VOLUME /data").
  Status ImportImage(std::string_view tar, std::string_view repo, std::string_view tag,
                     const std::vector<std::string>& changes = {}) const;

 private:
  EngineClient() = default;
  Result<UniqueFd> Dial(std::chrono::steady_clock::time_point deadline) const;
  std::string Versioned(std::string_view path) const;

  ClientOptions options_;
  std::string socket_path_;
  std::string api_version_;
  std::string server_version_;
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass).
std::string UrlEncode(std::string_view value);

// The Error for a non-2xx reply: the daemon's message, the status mapped to a code.
Error ReplyError(const HttpReply& reply, std::string_view what);

}  // namespace sbx::docker
