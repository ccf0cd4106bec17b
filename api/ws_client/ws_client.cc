// The Beast adapter behind ws_client.h. One io_context and one thread per client; the connect
// runs there as a chain of async steps under one deadline timer, then a read loop and a queue
// drained one async_write at a time. Exceptions from Beast and Asio are caught here.
#include "api/ws_client/ws_client.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>

namespace sbx::api {
namespace internal {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

// What the caller's threads touch (under mu_), and the calls they make, which post to the I/O
// thread. The stream and everything that uses it is in Link<Ws> below, on the I/O thread only.
class WsLink : public std::enable_shared_from_this<WsLink> {
 public:
  WsLink(const WsClientOptions& options, WsUrl url, WsClientCallbacks callbacks)
      : options_(options), url_(std::move(url)), callbacks_(std::move(callbacks)) {}
  virtual ~WsLink() = default;

  // Connects on a new I/O thread and waits for the outcome; on failure the thread is joined.
  // The thread holds a reference, so the link outlives every handler that runs.
  Status Open() {
    std::future<Status> result = connected_.get_future();
    net::post(io_, [this] { StartConnect(); });  // before run(), so that run() has work
    thread_ = std::thread([self = shared_from_this()] { self->Run(); });
    Status s = result.get();
    if (!s.ok()) {
      io_.stop();
      thread_.join();
    }
    return s;
  }

  bool Enqueue(std::string data, bool binary) {
    {
      std::lock_guard lock(mu_);
      if (closing_) return false;
      if (data.size() <= options_.max_queued_bytes - queued_bytes_) {
        queued_bytes_ += data.size();
        outbox_.push_back({std::move(data), binary});
        net::post(io_, [this] { Pump(); });
        return true;
      }
      closing_ = true;
    }
    net::post(io_, [this] { Finish("send queue full"); });
    return false;
  }

  size_t queued_bytes() const {
    std::lock_guard lock(mu_);
    return queued_bytes_;
  }

  void Close() {
    {
      std::lock_guard lock(mu_);
      if (closing_) return;
      closing_ = true;
    }
    net::post(io_, [this] { BeginClose(); });
  }

  void Abort() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    net::post(io_, [this] { Finish("aborted"); });
  }

  bool closed() const { return ended_.load(); }

  // For ~WsClient. On the I/O thread (from a callback) the thread cannot be joined: the link
  // ends now, silently, and the thread ends (and frees this) once the callback returns.
  void Shutdown() {
    if (std::this_thread::get_id() == thread_.get_id()) {
      silenced_ = true;
      Finish("destroyed");
      io_.stop();
      thread_.detach();
      return;
    }
    Close();
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return finished_; });
    }
    io_.stop();
    thread_.join();
  }

 protected:
  struct Message {
    std::string data;
    bool binary = false;
  };

  // On the I/O thread.
  virtual void StartConnect() = 0;
  virtual void Pump() = 0;  // writes the next queued message, or the close frame
  virtual void BeginClose() = 0;
  virtual void CutSocket() = 0;

  void ConnectDone(Status s) {
    if (connect_done_) return;
    connect_done_ = true;
    if (!s.ok()) {
      done_ = true;
      CutSocket();
    }
    connected_.set_value(std::move(s));
  }

  // Ends the link once: the socket is closed (pending operations fail), on_close runs.
  void Finish(std::string why) {
    if (done_) return;
    done_ = true;
    {
      std::lock_guard lock(mu_);
      closing_ = true;
      outbox_.clear();
      queued_bytes_ = 0;
    }
    close_timer_.cancel();
    CutSocket();
    ended_ = true;
    if (callbacks_.on_close && !silenced_) callbacks_.on_close(std::move(why));
    MarkFinished();
  }
  void MarkFinished() {
    std::lock_guard lock(mu_);
    finished_ = true;
    cv_.notify_all();
  }

  // The next queued message; its bytes stay counted until Written.
  bool TakeNext(Message* out) {
    std::lock_guard lock(mu_);
    if (outbox_.empty()) return false;
    *out = std::move(outbox_.front());
    outbox_.pop_front();
    return true;
  }
  void Written(size_t bytes) {
    std::lock_guard lock(mu_);
    queued_bytes_ -= bytes;
  }

  std::string HostPort() const {
    return url_.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", url_.host, url_.port)
                                                    : fmt::format("{}:{}", url_.host, url_.port);
  }

  const WsClientOptions options_;
  const WsUrl url_;
  const WsClientCallbacks callbacks_;
  net::io_context io_;
  net::steady_timer close_timer_{io_};
  // I/O thread only.
  bool connect_done_ = false;
  bool done_ = false;
  bool silenced_ = false;  // destroyed from a callback: no more callbacks

 private:
  void Run() {
    while (true) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        // From a callback, or an allocation in Beast: end the link, run on until it is over.
        spdlog::error("websocket client {}: {}", HostPort(), e.what());
        if (!connect_done_) {
          ConnectDone(
              MakeError(ErrorCode::kInternal, "connecting to {}: {}", HostPort(), e.what()));
        } else {
          Finish(fmt::format("internal error: {}", e.what()));
          MarkFinished();  // in case on_close threw
        }
      }
    }
  }

  std::thread thread_;
  std::promise<Status> connected_;
  std::atomic<bool> ended_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Message> outbox_;
  size_t queued_bytes_ = 0;
  bool closing_ = false;   // Send refuses; Close is done
  bool finished_ = false;  // Finish has returned
};

}  // namespace internal

namespace {

using namespace internal;  // NOLINT: the aliases above

using PlainWs = websocket::stream<beast::tcp_stream>;
using TlsWs = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

constexpr std::chrono::seconds kCloseTimeout{2};
constexpr size_t kBodyInError = 300;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The start of an HTTP refusal's body for an error message: one line, cut at a UTF-8 boundary.
std::string BodyStart(std::string_view body) {
  std::string out(body.substr(0, kBodyInError));
  for (char& c : out) c = static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
  if (body.size() > kBodyInError) {
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "…";
  }
  return out;
}

template <class Ws>
class Link final : public WsLink {
  static constexpr bool kTls = std::is_same_v<Ws, TlsWs>;

 public:
  Link(const WsClientOptions& options, WsUrl url, WsClientCallbacks callbacks,
       std::unique_ptr<ssl::context> tls)
      : WsLink(options, std::move(url), std::move(callbacks)),
        tls_(std::move(tls)),
        ws_(MakeStream(io_, tls_.get())) {
    error_code ec;
    net::ip::make_address(url_.host, ec);
    is_ip_ = !ec;
  }

 private:
  static Ws MakeStream(net::io_context& io, ssl::context* tls) {
    if constexpr (kTls) {
      return Ws(io, *tls);
    } else {
      return Ws(io);
    }
  }

  void StartConnect() override {
    deadline_.expires_after(options_.connect_timeout);
    deadline_.async_wait([this](error_code ec) {
      if (ec || connect_done_) return;
      timed_out_ = true;  // the pending step fails with operation_aborted and reports this
      resolver_.cancel();
      CutSocket();
    });
    stage_ = "resolving";
    auto on_resolve = [this](error_code ec, const tcp::resolver::results_type& results) {
      if (ec || timed_out_) return StepFailed(ec);
      stage_ = "connecting to";
      beast::get_lowest_layer(ws_).async_connect(results, [this](error_code ec, const auto&) {
        if (ec || timed_out_) return StepFailed(ec);
        if constexpr (kTls) {
          TlsHandshake();
        } else {
          Upgrade();
        }
      });
    };
    resolver_.async_resolve(url_.host, std::to_string(url_.port), on_resolve);
  }

  void TlsHandshake() {
    stage_ = "TLS handshake with";
    SSL* ssl = ws_.next_layer().native_handle();
    // OpenSSL checks the name (or IP) while it verifies the chain, so a mismatch is reported as
    // a verify error like the others. SNI only for names (RFC 6066 §3).
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const bool set = is_ip_ ? X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str()) == 1
                            : SSL_set_tlsext_host_name(ssl, url_.host.c_str()) == 1 &&
                                  X509_VERIFY_PARAM_set1_host(param, url_.host.c_str(), 0) == 1;
    if (!set) {
      return ConnectDone(MakeError(ErrorCode::kInternal,
                                   "TLS setup for {}: cannot set the name to verify", HostPort()));
    }
    ws_.next_layer().async_handshake(ssl::stream_base::client, [this](error_code ec) {
      if (ec || timed_out_) return TlsFailed(ec);
      Upgrade();
    });
  }

  void TlsFailed(error_code ec) {
    const long verify = SSL_get_verify_result(ws_.next_layer().native_handle());
    if (timed_out_ || verify == X509_V_OK) return StepFailed(ec);
    std::string hint = "check the server's certificate (and this host's clock)";
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      hint = fmt::format(
          "the certificate is not for {}; connect with a name or address that "
          "its subjectAltName lists",
          url_.host);
    } else if (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
               verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
               verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
               verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
               verify == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE) {
      hint = options_.ca_file.empty()
                 ? "give the CA that signed the server's certificate with --ca-file"
                 : fmt::format(
                       "{} does not hold the CA that signed the server's certificate; "
                       "give that CA with --ca-file",
                       options_.ca_file);
    }
    ConnectDone(MakeError(ErrorCode::kUnavailable,
                          "TLS handshake with {}: certificate verify failed ({}); {}", HostPort(),
                          X509_verify_cert_error_string(verify), hint));
  }

  void Upgrade() {
    stage_ = "WebSocket upgrade with";
    websocket::stream_base::timeout t;
    t.handshake_timeout = options_.connect_timeout;  // the close handshake's too
    t.keep_alive_pings = options_.idle_timeout.count() > 0;
    t.idle_timeout = websocket::stream_base::none();
    if (t.keep_alive_pings) t.idle_timeout = options_.idle_timeout;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [headers = options_.headers](websocket::request_type& req) {
          req.set(http::field::user_agent, "sandboxd");
          for (const auto& [name, value] : headers) req.set(name, value);
        }));
    ws_.read_message_max(options_.max_message_bytes);
    std::string host = HostPort();
    if (url_.port == (kTls ? 443 : 80)) host.resize(host.rfind(':'));
    ws_.async_handshake(response_, host, url_.target, [this](error_code ec) {
      if (ec || timed_out_) return UpgradeFailed(ec);
      response_ = {};
      deadline_.cancel();
      ConnectDone(Ok());
      DoRead();
    });
  }

  void UpgradeFailed(error_code ec) {
    if (timed_out_ || ec != websocket::error::upgrade_declined) return StepFailed(ec);
    const int status = static_cast<int>(response_.result_int());
    const std::string body = BodyStart(response_.body());
    ConnectDone(MakeError(
        status == 401 || status == 403 ? ErrorCode::kPermissionDenied : ErrorCode::kUnavailable,
        "WebSocket upgrade with {}{}: the server answered HTTP {} {}{}{}", HostPort(),
        url_.target.substr(0, url_.target.find('?')),  // the query may hold a secret
        status, std::string(response_.reason()), body.empty() ? "" : ": ", body));
  }

  void StepFailed(error_code ec) {
    deadline_.cancel();
    if (timed_out_) {
      return ConnectDone(MakeError(ErrorCode::kUnavailable,
                                   "{} {}: timed out (connect_timeout {} ms)", stage_, HostPort(),
                                   options_.connect_timeout.count()));
    }
    ConnectDone(MakeError(ErrorCode::kUnavailable, "{} {}: {}", stage_, HostPort(), ec.message()));
  }

  void DoRead() {
    ws_.async_read(read_buffer_, [this](error_code ec, size_t) {
      if (done_) return;
      if (ec) return ReadFailed(ec);
      std::string data = beast::buffers_to_string(read_buffer_.data());
      read_buffer_.consume(read_buffer_.size());
      if (callbacks_.on_message && !silenced_)
        callbacks_.on_message(std::move(data), !ws_.got_text());
      if (!done_) DoRead();
    });
  }

  void ReadFailed(error_code ec) {
    if (ec == websocket::error::closed) {
      if (close_sent_) return;  // the answer to our close frame: SendClose's handler finishes
      const websocket::close_reason& r = ws_.reason();
      return Finish(fmt::format("closed by the server ({}{}{})", static_cast<int>(r.code),
                                r.reason.empty() ? "" : " ",
                                std::string(r.reason.data(), r.reason.size())));
    }
    if (ec == beast::error::timeout) {
      return Finish(
          fmt::format("no frame from the server for {} ms", options_.idle_timeout.count()));
    }
    if (ec == websocket::error::message_too_big) {
      return Finish(fmt::format("the server sent a message over {} bytes (max_message_bytes)",
                                options_.max_message_bytes));
    }
    Finish("read failed: " + ec.message());
  }

  void Pump() override {
    if (done_ || writing_ || close_sent_) return;
    Message next;
    if (!TakeNext(&next)) {
      if (close_requested_) SendClose();
      return;
    }
    writing_ = true;
    current_ = std::move(next.data);
    ws_.binary(next.binary);
    ws_.async_write(net::buffer(current_), [this](error_code ec, size_t) {
      writing_ = false;
      if (done_) return;
      Written(current_.size());
      current_.clear();
      if (ec) return Finish("write failed: " + ec.message());
      Pump();
    });
  }

  void BeginClose() override {
    if (done_ || close_requested_) return;
    close_requested_ = true;
    close_timer_.expires_after(kCloseTimeout);
    close_timer_.async_wait([this](error_code ec) {
      if (!ec) Finish("the close handshake did not complete within 2 s");
    });
    Pump();
  }

  void SendClose() {
    close_sent_ = true;
    ws_.async_close(websocket::close_code::normal, [this](error_code ec) {
      Finish(ec ? "close failed: " + ec.message() : "closed");
    });
  }

  void CutSocket() override {
    error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  std::unique_ptr<ssl::context> tls_;  // before ws_, which refers to it
  Ws ws_;
  tcp::resolver resolver_{io_};
  net::steady_timer deadline_{io_};
  bool is_ip_ = false;
  bool timed_out_ = false;
  const char* stage_ = "";
  websocket::response_type response_;
  beast::flat_buffer read_buffer_;
  std::string current_;  // the message being written
  bool writing_ = false;
  bool close_requested_ = false;
  bool close_sent_ = false;
};

Status CheckHeaders(const std::vector<std::pair<std::string, std::string>>& headers) {
  constexpr std::string_view kReserved[] = {"host",
                                            "upgrade",
                                            "connection",
                                            "sec-websocket-key",
                                            "sec-websocket-version",
                                            "sec-websocket-extensions"};
  auto token_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  };
  for (const auto& [name, value] : headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), token_char)) {
      return MakeError(ErrorCode::kInvalidArgument, "websocket header name '{}' is not a token",
                       name);
    }
    if (std::find(std::begin(kReserved), std::end(kReserved), Lower(name)) != std::end(kReserved)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "websocket header '{}' is set by the handshake itself", name);
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "websocket header '{}': the value holds CR, LF or NUL", name);
    }
  }
  return Ok();
}

Result<std::unique_ptr<ssl::context>> MakeTlsContext(const WsClientOptions& options) {
  try {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_verify_mode(ssl::verify_peer);
    error_code ec;
    if (!options.ca_file.empty()) {
      ctx->load_verify_file(options.ca_file, ec);
      if (ec) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "CA file {}: cannot load it ({}); give a PEM file of CA certificates",
                         options.ca_file, ec.message());
      }
    } else if (ctx->set_default_verify_paths(ec); ec) {
      return MakeError(ErrorCode::kUnavailable,
                       "the system's CA certificates cannot be loaded ({}); give a CA file",
                       ec.message());
    }
    return ctx;
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "TLS context: {}", e.what());
  }
}

}  // namespace

Result<WsUrl> ParseWsUrl(std::string_view url) {
  auto bad = [url](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "websocket url '{}': {}; expected ws://HOST[:PORT][/PATH] or wss://…", url,
                     why);
  };
  const size_t scheme_end = url.find("://");
  const std::string scheme = Lower(url.substr(0, scheme_end));
  if (scheme_end == std::string_view::npos || (scheme != "ws" && scheme != "wss")) {
    return bad("the scheme must be ws:// or wss://");
  }
  WsUrl u;
  u.tls = scheme == "wss";
  const std::string_view rest = url.substr(scheme_end + 3);
  if (std::any_of(rest.begin(), rest.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#';
      })) {
    return bad("a space, a control byte or a fragment (#)");
  }
  const size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) {
    return bad("user info is not allowed (send credentials in a header)");
  }
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("'[' without ']'");
    u.host = authority.substr(1, close - 1);
    authority.remove_prefix(close + 1);
    error_code ec;
    net::ip::make_address_v6(u.host, ec);
    if (ec || u.host.find('%') != std::string::npos) return bad("[…] must hold an IPv6 address");
  } else {
    u.host = authority.substr(0, authority.find(':'));
    authority.remove_prefix(u.host.size());
    if (u.host.empty() || !std::all_of(u.host.begin(), u.host.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
        })) {
      return bad("the host must be a name, an IPv4 address or an [IPv6] address");
    }
  }
  // What is left of the authority is "" or ":PORT".
  u.port = u.tls ? 443 : 80;
  if (!authority.empty()) {
    unsigned port = 0;
    const std::string_view digits = authority.substr(1);
    auto [ptr, err] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (authority[0] != ':' || digits.empty() || err != std::errc() ||
        ptr != digits.data() + digits.size() || port == 0 || port > 65535) {
      return bad("the port must be 1-65535");
    }
    u.port = static_cast<uint16_t>(port);
  }
  u.target = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (u.target.starts_with('?')) u.target.insert(0, "/");
  return u;
}

Result<std::unique_ptr<WsClient>> WsClient::Connect(const WsClientOptions& options,
                                                    WsClientCallbacks callbacks) {
  Result<WsUrl> url = ParseWsUrl(options.url);
  if (!url.ok()) return std::move(url).error();
  SBX_TRY(CheckHeaders(options.headers));
  if (options.connect_timeout.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "websocket connect_timeout must be positive");
  }
  std::shared_ptr<WsLink> link;
  if (url->tls) {
    Result<std::unique_ptr<ssl::context>> tls = MakeTlsContext(options);
    if (!tls.ok()) return std::move(tls).error();
    link = std::make_shared<Link<TlsWs>>(options, std::move(*url), std::move(callbacks),
                                         std::move(*tls));
  } else {
    link = std::make_shared<Link<PlainWs>>(options, std::move(*url), std::move(callbacks), nullptr);
  }
  SBX_TRY(link->Open());
  return std::unique_ptr<WsClient>(new WsClient(std::move(link)));
}

WsClient::WsClient(std::shared_ptr<internal::WsLink> link) : link_(std::move(link)) {}
WsClient::~WsClient() { link_->Shutdown(); }

bool WsClient::Send(std::string text) { return link_->Enqueue(std::move(text), false); }
bool WsClient::SendBinary(std::string bytes) { return link_->Enqueue(std::move(bytes), true); }
size_t WsClient::queued_bytes() const { return link_->queued_bytes(); }
void WsClient::Close() { link_->Close(); }
void WsClient::Abort() { link_->Abort(); }
bool WsClient::closed() const { return link_->closed(); }

}  // namespace sbx::api
