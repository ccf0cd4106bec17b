// A deliberately small HTTP/1.1 and WebSocket client over blocking POSIX sockets, for the api
// tests. It sends exactly the bytes a test gives it (so tests can send garbage) and parses
// replies strictly enough to check framing. Every read has a timeout, so a hung server fails a
// test instead of hanging it. Header-only; no Boost.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/unique_fd.h"

namespace sbx::api::testing {

class RawConn {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{5000};

  // `rcvbuf` > 0 sets SO_RCVBUF before connecting, so that a client that does not read stalls
  // the server after little data.
  // `ipv4`: the server's address (dotted quad), loopback by default.
  static std::optional<RawConn> Tcp(uint16_t port, int rcvbuf = 0,
                                    const char* ipv4 = "127.0.0.1") {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd && rcvbuf > 0) setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    if (inet_pton(AF_INET, ipv4, &sin.sin_addr) != 1) return std::nullopt;
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
      return std::nullopt;
    }
    return RawConn(std::move(fd));
  }

  static std::optional<RawConn> Unix(const std::string& path, int rcvbuf = 0) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd && rcvbuf > 0) setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (!fd || path.size() >= sizeof(sun.sun_path)) return std::nullopt;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
      return std::nullopt;
    }
    return RawConn(std::move(fd));
  }

  void SetTimeout(std::chrono::milliseconds t) {
    timeval tv{};
    tv.tv_sec = t.count() / 1000;
    tv.tv_usec = (t.count() % 1000) * 1000;
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads more into the buffer; false on EOF, error or timeout.
  bool Fill() {
    char tmp[16384];
    while (true) {
      ssize_t n = ::recv(fd_.get(), tmp, sizeof(tmp), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = n == 0;
        return false;
      }
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
  }

  bool ReadLine(std::string* line) {
    size_t pos;
    while ((pos = buf_.find("\r\n")) == std::string::npos) {
      if (buf_.size() > (1 << 20) || !Fill()) return false;
    }
    *line = buf_.substr(0, pos);
    buf_.erase(0, pos + 2);
    return true;
  }

  // Reads exactly n bytes into *out; what is not buffered yet goes straight from the socket
  // into *out (a large message costs one copy, not three, and no memmove of the rest).
  bool ReadExact(size_t n, std::string* out) {
    const size_t take = std::min(n, buf_.size());
    // Not out->assign(buf_, 0, take): inlined into a caller's fresh string, GCC 12 at -O3
    // reports a bogus -Wmaybe-uninitialized on it.
    *out = buf_.substr(0, take);
    buf_.erase(0, take);
    if (take == n) return true;
    out->resize(n);
    for (size_t have = take; have < n;) {
      ssize_t r = ::recv(fd_.get(), out->data() + have, n - have, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        eof_ = r == 0;
        buf_.assign(*out, 0, have);  // nothing read is lost
        out->clear();
        return false;
      }
      have += static_cast<size_t>(r);
    }
    return true;
  }

  // Everything until EOF (or the timeout).
  std::string ReadToEof() {
    while (Fill()) {
    }
    return std::exchange(buf_, std::string());
  }

  // True when the server closed the connection: EOF or reset, with nothing (more) buffered.
  bool WaitClosed() {
    while (Fill()) {
    }
    return eof_ || errno == ECONNRESET;
  }

  bool eof() const { return eof_; }
  size_t buffered() const { return buf_.size(); }
  int fd() const { return fd_.get(); }
  void ShutdownWrite() { shutdown(fd_.get(), SHUT_WR); }
  void Close() { fd_.reset(); }

 private:
  explicit RawConn(UniqueFd fd) : fd_(std::move(fd)) { SetTimeout(kDefaultTimeout); }

  UniqueFd fd_;
  std::string buf_;
  bool eof_ = false;
};

struct HttpReply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::vector<std::string> chunks;  // for chunked bodies, in order

  std::string Header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
    }
    return "";
  }
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
  // The "code" of a JSON error body, or "" when the body is not one.
  std::string ErrorCode() const {
    nlohmann::json j = Json();
    if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "";
    return j["error"].value("code", "");
  }
};

inline std::string MakeRequest(std::string_view method, std::string_view target,
                               const std::vector<std::pair<std::string, std::string>>& headers = {},
                               std::string_view body = "") {
  std::string r = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n";
  for (const auto& [n, v] : headers) r += n + ": " + v + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  r += "\r\n";
  r += body;
  return r;
}

// The status line and header fields.
inline std::optional<HttpReply> ReadHead(RawConn& c) {
  HttpReply reply;
  std::string line;
  if (!c.ReadLine(&line)) return std::nullopt;
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) return std::nullopt;
  reply.status = std::atoi(line.substr(9, 3).c_str());
  while (true) {
    if (!c.ReadLine(&line)) return std::nullopt;
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    reply.headers.emplace_back(line.substr(0, colon), value);
  }
  return reply;
}

// One chunk of a chunked body; "" is the last chunk (its empty trailer is consumed too).
inline std::optional<std::string> ReadChunk(RawConn& c) {
  std::string line;
  if (!c.ReadLine(&line)) return std::nullopt;
  size_t size = std::stoul(line.substr(0, line.find(';')), nullptr, 16);
  std::string data;
  if (!c.ReadExact(size, &data)) return std::nullopt;
  if (!c.ReadLine(&line) || !line.empty()) return std::nullopt;
  return data;
}

// A whole response: Content-Length, chunked, or (HTTP/1.0 style) until EOF.
inline std::optional<HttpReply> ReadReply(RawConn& c, bool head_request = false) {
  std::optional<HttpReply> reply = ReadHead(c);
  if (!reply) return std::nullopt;
  if (head_request || reply->status == 101 || reply->status == 204 || reply->status == 304) {
    return reply;
  }
  std::string te = reply->Header("Transfer-Encoding");
  std::string cl = reply->Header("Content-Length");
  if (te == "chunked") {
    while (true) {
      std::optional<std::string> chunk = ReadChunk(c);
      if (!chunk) return std::nullopt;
      if (chunk->empty()) break;
      reply->body += *chunk;
      reply->chunks.push_back(std::move(*chunk));
    }
  } else if (!cl.empty()) {
    if (!c.ReadExact(std::stoul(cl), &reply->body)) return std::nullopt;
  } else {
    reply->body = c.ReadToEof();
  }
  return reply;
}

inline std::optional<HttpReply> RoundTrip(RawConn& c, const std::string& request) {
  if (!c.Send(request)) return std::nullopt;
  return ReadReply(c);
}

// ---- WebSocket (RFC 6455), client side ----

struct WsFrame {
  int opcode = 0;  // 1 text, 2 binary, 8 close, 9 ping, 10 pong
  std::string payload;
  uint16_t CloseCode() const {
    if (opcode != 8 || payload.size() < 2) return 0;
    return static_cast<uint16_t>(static_cast<uint8_t>(payload[0]) << 8 |
                                 static_cast<uint8_t>(payload[1]));
  }
};

// The key and accept value of RFC 6455 §1.3.
inline constexpr std::string_view kWsKey = "dGhlIHNhbXBsZSBub25jZQ==";
inline constexpr std::string_view kWsAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

inline std::string MakeWsUpgrade(
    std::string_view target, const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  std::vector<std::pair<std::string, std::string>> all = {
      {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},
      {"Sec-WebSocket-Key", std::string(kWsKey)},
      {"Sec-WebSocket-Version", "13"}};
  all.insert(all.end(), headers.begin(), headers.end());
  return MakeRequest("GET", target, all);
}

// One frame as sent (servers do not mask); `fin` says whether it ends its message.
inline std::optional<WsFrame> WsReadRawFrame(RawConn& c, bool* fin) {
  std::string h;
  if (!c.ReadExact(2, &h)) return std::nullopt;
  WsFrame f;
  *fin = static_cast<uint8_t>(h[0]) & 0x80;
  f.opcode = static_cast<uint8_t>(h[0]) & 0x0f;
  bool masked = static_cast<uint8_t>(h[1]) & 0x80;
  uint64_t len = static_cast<uint8_t>(h[1]) & 0x7f;
  std::string ext;
  if (len == 126) {
    if (!c.ReadExact(2, &ext)) return std::nullopt;
    len = static_cast<uint64_t>(static_cast<uint8_t>(ext[0])) << 8 | static_cast<uint8_t>(ext[1]);
  } else if (len == 127) {
    if (!c.ReadExact(8, &ext)) return std::nullopt;
    len = 0;
    for (char b : ext) len = len << 8 | static_cast<uint8_t>(b);
  }
  if (masked || len > (64u << 20)) return std::nullopt;  // servers do not mask
  if (!c.ReadExact(static_cast<size_t>(len), &f.payload)) return std::nullopt;
  return f;
}

// One message from the server: continuation frames are joined (a control frame in between is
// returned as it comes).
inline std::optional<WsFrame> WsReadFrame(RawConn& c) {
  bool fin = false;
  std::optional<WsFrame> first = WsReadRawFrame(c, &fin);
  while (first && !fin) {
    std::optional<WsFrame> next = WsReadRawFrame(c, &fin);
    if (!next) return std::nullopt;
    if (next->opcode >= 8) return next;
    if (next->opcode != 0) return std::nullopt;
    first->payload += next->payload;
  }
  return first;
}

// Sends one final frame, masked as clients must.
inline bool WsSendFrame(RawConn& c, int opcode, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(0x80 | payload.size()));
  } else if (payload.size() < 65536) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(mask, 4);
  for (size_t i = 0; i < payload.size(); ++i) f.push_back(payload[i] ^ mask[i % 4]);
  return c.Send(f);
}

inline std::string WsClosePayload(uint16_t code) {
  return std::string{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
}

}  // namespace sbx::api::testing
