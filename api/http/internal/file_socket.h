// A stream socket that sends part of a write straight from a file (sendfile), for the layer under
// Beast's websocket::stream.
//
// Beast frames a binary message as a header followed by the caller's buffers, and as a server
// (unmasked, uncompressed, one frame per message) it passes those buffers to the layer below
// untouched. A buffer pointing into the file window (reserved address space with no memory
// behind it, PROT_NONE) stands for bytes of the file range set with SetFile(): byte i of the
// window is byte offset + i of the file. Beast keeps doing everything else (the frame header,
// the order of data and control frames, pings, close, timeouts) and never reads the payload.
// Nothing else may point into the window: its pages fault when touched, so a slip shows at once.
//
// The daemon then never copies a log's bytes on their way to a WebSocket client: sendfile takes
// them from the page cache, and over TCP the kernel sends those pages as they are.
#pragma once

#include <sys/mman.h>
#include <sys/sendfile.h>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "api/http/internal/server_core.h"

namespace sbx::api::internal {

class FileSocket {
 public:
  using executor_type = Socket::executor_type;
  using next_layer_type = Socket;
  using error_code = boost::system::error_code;

  // The window's size: the largest file range one message can carry.
  static constexpr size_t kWindowBytes = size_t{256} << 20;

  explicit FileSocket(Socket socket) : socket_(std::move(socket)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  Socket& next_layer() noexcept { return socket_; }
  const Socket& next_layer() const noexcept { return socket_; }

  // Where the window starts; the first call reserves it (nullptr if that failed).
  static const char* Window() {
    static const char* base = [] {
      void* p = ::mmap(nullptr, kWindowBytes, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      return p == MAP_FAILED ? nullptr : static_cast<const char*>(p);
    }();
    return base;
  }

  // Until ClearFile(): the window's first `length` bytes stand for `fd`'s bytes from `offset`.
  // Returns the buffer to hand to Beast, or an empty one when the range does not fit the window.
  boost::asio::const_buffer SetFile(int fd, int64_t offset, size_t length) {
    if (Window() == nullptr || length > kWindowBytes || offset < 0) return {};
    // sendfile must answer EAGAIN on a full socket, never block the session's thread.
    error_code ec;
    if (!socket_.native_non_blocking()) socket_.native_non_blocking(true, ec);
    if (ec) return {};
    fd_ = fd;
    offset_ = offset;
    length_ = length;
    return {Window(), length};
  }
  void ClearFile() {
    fd_ = -1;
    length_ = 0;
  }

  template <class MutableBufferSequence, class ReadHandler>
  auto async_read_some(const MutableBufferSequence& buffers, ReadHandler&& handler) {
    return socket_.async_read_some(buffers, std::forward<ReadHandler>(handler));
  }

  template <class ConstBufferSequence, class WriteHandler>
  auto async_write_some(const ConstBufferSequence& buffers, WriteHandler&& handler) {
    return boost::asio::async_initiate<WriteHandler, void(error_code, size_t)>(
        [this](auto h, const ConstBufferSequence& b) { StartWrite(std::move(h), b); }, handler,
        buffers);
  }

 private:
  bool InWindow(const boost::asio::const_buffer& b) const {
    const char* p = static_cast<const char*>(b.data());
    return fd_ >= 0 && b.size() > 0 && p >= Window() && p < Window() + length_;
  }

  // Writes the buffers before the first one in the window as usual; a write that starts in the
  // window goes through sendfile. Either way it may write less than asked, as write_some does.
  template <class Handler, class ConstBufferSequence>
  void StartWrite(Handler handler, const ConstBufferSequence& buffers) {
    namespace net = boost::asio;
    auto first = net::buffer_sequence_begin(buffers);
    auto last = net::buffer_sequence_end(buffers);
    auto window = first;
    while (window != last && !InWindow(net::const_buffer(*window))) ++window;
    if (window == last) return socket_.async_write_some(buffers, std::move(handler));
    std::vector<net::const_buffer> before;
    for (auto it = first; it != window; ++it) {
      if (net::const_buffer(*it).size() > 0) before.push_back(net::const_buffer(*it));
    }
    if (!before.empty()) return socket_.async_write_some(before, std::move(handler));
    net::const_buffer b(*window);
    const char* p = static_cast<const char*>(b.data());
    const size_t left = length_ - static_cast<size_t>(p - Window());
    SendfileOp<Handler>{this, std::move(handler), offset_ + (p - Window()),
                        b.size() < left ? b.size() : left}(error_code{});
  }

  template <class Handler>
  struct SendfileOp {
    FileSocket* self;
    Handler handler;
    int64_t offset;
    size_t length;

    void operator()(error_code ec) {
      if (!ec) {
        for (;;) {
          off_t off = static_cast<off_t>(offset);
          ssize_t n = ::sendfile(self->socket_.native_handle(), self->fd_, &off, length);
          if (n > 0) return Complete(error_code{}, static_cast<size_t>(n));
          if (n == 0) {
            // The file ends before the range does: the frame can no longer be completed.
            return Complete(boost::asio::error::eof, 0);
          }
          if (errno == EINTR) continue;
          if (errno == EAGAIN) {
            // The socket is full: go on when it takes more.
            auto& socket = self->socket_;
            socket.async_wait(Socket::wait_write, std::move(*this));
            return;
          }
          return Complete(error_code(errno, boost::system::system_category()), 0);
        }
      }
      Complete(ec, 0);
    }

    void Complete(error_code ec, size_t n) {
      // Never from inside the initiating call (write_some's contract): through a post then.
      auto ex = boost::asio::get_associated_executor(handler, self->get_executor());
      boost::asio::post(ex, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
    }
  };

  Socket socket_;
  int fd_ = -1;
  int64_t offset_ = 0;
  size_t length_ = 0;
};

// The WebSocket closing handshake's teardown is the socket's.
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, FileSocket& s, TeardownHandler&& handler) {
  boost::beast::websocket::async_teardown(role, s.next_layer(),
                                          std::forward<TeardownHandler>(handler));
}
inline void teardown(boost::beast::role_type role, FileSocket& s, boost::system::error_code& ec) {
  boost::beast::websocket::teardown(role, s.next_layer(), ec);
}

}  // namespace sbx::api::internal
