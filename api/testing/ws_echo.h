// A close reason's name, and a server-side WebSocket echo for the tests of the server and of the client: each incoming
// message goes back as it came (text or binary), paced by the outbound queue (HasRoomFor,
// OnWritable) as a handler must, so that a client that sends everything before reading never
// overflows it. `seen` (may be null) is told of each message first.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "api/http/http.h"

namespace sbx::api::testing {

// A close reason as the tests record it.
inline const char* ReasonName(WebSocket::CloseReason r) {
  switch (r) {
    case WebSocket::CloseReason::kClientClosed:
      return "client_closed";
    case WebSocket::CloseReason::kServerClosed:
      return "server_closed";
    case WebSocket::CloseReason::kOverflow:
      return "overflow";
    case WebSocket::CloseReason::kServerStopping:
      return "server_stopping";
    case WebSocket::CloseReason::kError:
      return "error";
  }
  return "?";
}


inline void PacedEcho(const std::shared_ptr<WebSocket>& ws,
                      std::function<void(std::string_view data, bool binary)> seen = nullptr) {
  struct State {
    std::mutex mu;
    std::deque<std::pair<std::string, bool>> pending;
  };
  auto state = std::make_shared<State>();
  auto pump = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak_pump = pump;
  *pump = [state, ws, weak_pump] {
    std::lock_guard lock(state->mu);
    while (!state->pending.empty()) {
      auto& [data, binary] = state->pending.front();
      if (!ws->HasRoomFor(data.size())) {
        if (auto p = weak_pump.lock()) ws->OnWritable([p] { (*p)(); });
        return;
      }
      if (binary) {
        ws->SendBinary(std::move(data), std::nullopt);
      } else {
        ws->Send(std::move(data));
      }
      state->pending.pop_front();
    }
  };
  ws->OnMessage([seen = std::move(seen), state, pump](std::string_view data, bool binary) {
    if (seen) seen(data, binary);
    {
      std::lock_guard lock(state->mu);
      state->pending.emplace_back(std::string(data), binary);
    }
    (*pump)();
  });
}

}  // namespace sbx::api::testing
