#include "docker_backend/engine_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace sbx::docker {
namespace {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMaxReplyBytes = 64ull << 20;

// A connected socket as a Beast SyncStream whose reads and writes fail with timed_out past one
// deadline for the whole exchange (SO_RCVTIMEO would restart with every byte).
class DeadlineStream {
 public:
  DeadlineStream(int fd, Clock::time_point deadline) : fd_(fd), deadline_(deadline) {}

  template <class Buffers>
  std::size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() == 0) continue;
      if (!Wait(POLLIN, ec)) return 0;
      for (;;) {
        ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
        if (n > 0) return static_cast<size_t>(n);
        if (n == 0) {
          ec = boost::asio::error::eof;
          return 0;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          if (!Wait(POLLIN, ec)) return 0;
          continue;
        }
        ec = boost::system::error_code(errno, boost::system::system_category());
        return 0;
      }
    }
    ec = {};
    return 0;
  }
  template <class Buffers>
  std::size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    // Beast hands the header over as many small pieces: one sendmsg for all of them.
    iovec iov[64];
    size_t n_iov = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && n_iov < 64; ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() == 0) continue;
      iov[n_iov++] = {const_cast<void*>(b.data()), b.size()};
    }
    ec = {};
    if (n_iov == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n_iov;
    for (;;) {
      if (!Wait(POLLOUT, ec)) return 0;
      ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR || errno == EAGAIN) continue;
      ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  bool Wait(short events, boost::system::error_code& ec) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
      if (left.count() <= 0) {
        ec = boost::asio::error::timed_out;
        return false;
      }
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) {
        ec = boost::system::error_code(errno, boost::system::system_category());
        return false;
      }
    }
  }

  int fd_;
  Clock::time_point deadline_;
};

ErrorCode CodeForStatus(int status) {
  switch (status) {
    case 400: return ErrorCode::kInvalidArgument;
    case 401:
    case 403: return ErrorCode::kPermissionDenied;
    case 404: return ErrorCode::kNotFound;
    case 409: return ErrorCode::kAlreadyExists;
    case 503: return ErrorCode::kUnavailable;
    default: return ErrorCode::kInternal;
  }
}

int VersionPart(std::string_view v, size_t index) {
  size_t dot = v.find('.');
  std::string_view part = index == 0 ? v.substr(0, dot)
                                     : (dot == std::string_view::npos ? "" : v.substr(dot + 1));
  if (part.empty() || part.size() > 6) return 0;
  int n = 0;
  for (char c : part) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + (c - '0');
  }
  return n;
}

template <class Parser>
void CopyHeaders(const Parser& p, HttpReply& out) {
  out.status = static_cast<int>(p.get().result_int());
  for (const auto& f : p.get()) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
}

}  // namespace

Result<std::string> SocketPathFor(std::string_view host) {
  std::string h(host);
  if (h.empty()) {
    const char* env = std::getenv("DOCKER_HOST");
    h = env != nullptr && *env != '\0' ? env : "unix:///var/run/docker.sock";
  }
  if (h.rfind("unix://", 0) == 0) {
    h = h.substr(7);
  } else if (h.rfind("unix:", 0) == 0) {
    h = h.substr(5);
  } else if (h.find("://") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "docker host '{}' is not a unix socket; only unix:///PATH is supported",
                     std::string(host.empty() ? h : host));
  }
  if (h.empty() || h[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "docker host '{}' must be an absolute socket path",
                     h);
  }
  if (h.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument, "docker socket path '{}' is too long", h);
  }
  return h;
}

int CompareApiVersions(std::string_view a, std::string_view b) {
  int am = VersionPart(a, 0), bm = VersionPart(b, 0);
  if (am != bm) return am < bm ? -1 : 1;
  int an = VersionPart(a, 1), bn = VersionPart(b, 1);
  if (an != bn) return an < bn ? -1 : 1;
  return 0;
}

Result<std::string> NegotiateApiVersion(std::string_view daemon_version) {
  if (CompareApiVersions(daemon_version, kMinApiVersion) < 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "the Docker daemon speaks Engine API '{}'; sandboxd needs {} or newer "
                     "(Docker 19.03+)",
                     std::string(daemon_version), std::string(kMinApiVersion));
  }
  return std::string(CompareApiVersions(daemon_version, kMaxApiVersion) < 0 ? daemon_version
                                                                             : kMaxApiVersion);
}

std::string UrlEncode(std::string_view value) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Error ReplyError(const HttpReply& reply, std::string_view what) {
  std::string message;
  try {
    auto j = nlohmann::json::parse(reply.body);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) {
      message = j["message"].get<std::string>();
    }
  } catch (const std::exception&) {
  }
  if (message.empty()) message = reply.body.substr(0, 512);
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.pop_back();
  return MakeError(CodeForStatus(reply.status), "{}: Docker daemon answered {}: {}", what,
                   reply.status, message);
}

Result<std::unique_ptr<EngineClient>> EngineClient::Connect(ClientOptions options) {
  auto path = SocketPathFor(options.host);
  if (!path.ok()) return std::move(path).error();
  std::unique_ptr<EngineClient> c(new EngineClient());
  c->options_ = std::move(options);
  c->socket_path_ = *path;
  auto ping = c->Call("GET", "/_ping", {}, {});
  if (!ping.ok()) return std::move(ping).error();
  if (ping->status != 200) return ReplyError(*ping, "GET /_ping");
  auto it = ping->headers.find("api-version");
  if (it == ping->headers.end()) {
    return MakeError(ErrorCode::kUnavailable,
                     "{} answered /_ping without an API-Version header; is it a Docker daemon?",
                     c->socket_path_);
  }
  auto version = NegotiateApiVersion(it->second);
  if (!version.ok()) return std::move(version).error();
  c->api_version_ = *version;
  auto v = c->CallJson("GET", "/version", "GET /version");
  if (!v.ok()) return std::move(v).error();
  c->server_version_ = v->value("Version", "");
  return c;
}

std::string EngineClient::Versioned(std::string_view path) const {
  if (api_version_.empty()) return std::string(path);  // /_ping, before negotiation
  return "/v" + api_version_ + std::string(path);
}

Result<UniqueFd> EngineClient::Dial(Clock::time_point deadline) const {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoError("socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EINPROGRESS) {
      // The daemon's accept backlog is full: wait for it, within the deadline.
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd.get(), POLLOUT, 0};
      (void)::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
      continue;
    }
    Error e = ErrnoError("cannot reach the Docker daemon at {}", socket_path_);
    e.code = ErrorCode::kUnavailable;
    e.context = "is dockerd running? set docker_host (or DOCKER_HOST) to its socket";
    return e;
  }
  return MakeError(ErrorCode::kUnavailable, "the Docker daemon at {} does not accept connections",
                   socket_path_);
}

Result<HttpReply> EngineClient::Call(std::string_view method, std::string_view path,
                                     std::string body, std::string_view content_type,
                                     std::optional<std::chrono::milliseconds> timeout) const {
  const auto limit = timeout.value_or(options_.call_timeout);
  const auto deadline = Clock::now() + limit;
  const std::string target = Versioned(path);
  auto fd = Dial(deadline);
  if (!fd.ok()) return std::move(fd).error();
  DeadlineStream stream(fd->get(), deadline);
  boost::system::error_code ec;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "sandboxd");
  req.set(http::field::connection, "close");
  if (!body.empty() || method == "POST") {
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    req.body() = std::move(body);
  }
  req.prepare_payload();
  http::write(stream, req, ec);
  HttpReply out;
  if (!ec) {
    boost::beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxReplyBytes);
    http::read(stream, buf, parser, ec);
    if (!ec) {
      CopyHeaders(parser, out);
      out.body = std::move(parser.get().body());
      return out;
    }
  }
  if (ec == boost::asio::error::timed_out) {
    return MakeError(ErrorCode::kUnavailable,
                     "{} {}: the Docker daemon at {} did not answer within {} ms", method, target,
                     socket_path_, limit.count());
  }
  return MakeError(ErrorCode::kUnavailable, "{} {}: the connection to the Docker daemon at {} "
                   "failed: {}", method, target, socket_path_, ec.message());
}

Result<nlohmann::json> EngineClient::CallJson(std::string_view method, std::string_view path,
                                              std::string_view what, const nlohmann::json& body,
                                              std::optional<std::chrono::milliseconds> timeout) const {
  auto reply = Call(method, path, body.is_null() ? std::string() : body.dump(), "application/json",
                    timeout);
  if (!reply.ok()) return WithContext(std::move(reply).error(), std::string(what));
  if (reply->status < 200 || reply->status > 299) return ReplyError(*reply, what);
  if (reply->body.empty()) return nlohmann::json(nullptr);
  try {
    return nlohmann::json::parse(reply->body);
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "{}: the Docker daemon's reply is not JSON: {}", what,
                     e.what());
  }
}

namespace {

// Writes `req` and reads the reply's header: the connection and the body bytes that came with
// the header when the status is one of `ok` (a hijacked or a streamed body follows), else the
// daemon's Error.
template <class Body>
Result<HijackedStream> ExchangeHead(UniqueFd fd, Clock::time_point deadline,
                                    http::request<Body>& req, std::initializer_list<int> ok,
                                    const std::string& socket_path) {
  const std::string what =
      std::string(req.method_string()) + " " + std::string(req.target());
  DeadlineStream stream(fd.get(), deadline);
  boost::system::error_code ec;
  http::write(stream, req, ec);
  boost::beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxReplyBytes);
  if (!ec) http::read_header(stream, buf, parser, ec);
  if (ec) {
    return MakeError(ErrorCode::kUnavailable, "{}: the Docker daemon at {} failed: {}", what,
                     socket_path, ec.message());
  }
  HttpReply head;
  CopyHeaders(parser, head);
  if (std::find(ok.begin(), ok.end(), head.status) == ok.end()) {
    if (!parser.is_done()) http::read(stream, buf, parser, ec);
    head.body = parser.get().body();
    return ReplyError(head, what);
  }
  HijackedStream out;
  auto rest = buf.data();
  out.early.assign(static_cast<const char*>(rest.data()), rest.size());
  out.fd = std::move(fd);
  return out;
}

}  // namespace

Result<HijackedStream> EngineClient::Hijack(std::string_view path, const nlohmann::json& body,
                                            std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  auto fd = Dial(deadline);
  if (!fd.ok()) return std::move(fd).error();
  http::request<http::string_body> req{http::verb::post, Versioned(path), 11};
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "sandboxd");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "tcp");
  req.set(http::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  return ExchangeHead(std::move(*fd), deadline, req, {101, 200}, socket_path_);
}

Result<HijackedStream> EngineClient::OpenStream(std::string_view path,
                                                std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  auto fd = Dial(deadline);
  if (!fd.ok()) return std::move(fd).error();
  http::request<http::empty_body> req{http::verb::get, Versioned(path), 10};
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "sandboxd");
  return ExchangeHead(std::move(*fd), deadline, req, {200}, socket_path_);
}

Status EngineClient::ImportImage(std::string_view tar, std::string_view repo,
                                 std::string_view tag,
                                 const std::vector<std::string>& changes) const {
  std::string path = fmt::format("/images/create?fromSrc=-&repo={}&tag={}", UrlEncode(repo),
                                 UrlEncode(tag));
  for (const std::string& change : changes) path += "&changes=" + UrlEncode(change);
  auto reply = Call("POST", path, std::string(tar), "application/x-tar",
                    std::chrono::milliseconds(120'000));
  if (!reply.ok()) return std::move(reply).error();
  if (reply->status != 200) return ReplyError(*reply, "importing an image");
  // A stream of JSON progress messages; a failure is one with "error".
  size_t pos = 0;
  while (pos < reply->body.size()) {
    size_t nl = reply->body.find('\n', pos);
    std::string_view line(reply->body.data() + pos,
                          (nl == std::string::npos ? reply->body.size() : nl) - pos);
    pos = nl == std::string::npos ? reply->body.size() : nl + 1;
    try {
      auto j = nlohmann::json::parse(line);
      if (j.is_object() && j.contains("error")) {
        return MakeError(ErrorCode::kInternal, "importing image {}:{}: {}", repo, tag,
                         j["error"].dump());
      }
    } catch (const std::exception&) {
    }
  }
  return Ok();
}

}  // namespace sbx::docker
