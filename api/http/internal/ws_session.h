// Hand-over from an HTTP session to a WebSocket session after the handler accepted an upgrade.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <string>

#include "api/http/http.h"
#include "api/http/internal/server_core.h"

namespace sbx::api::internal {

// Completes the handshake on `socket` for `upgrade` and runs the session; `accept.on_open` is
// called on the worker pool once the handshake is done.
void StartWebSocketSession(std::shared_ptr<ServerCore> core, Socket socket,
                           boost::beast::http::request<boost::beast::http::string_body> upgrade,
                           WebSocketAccept accept, std::unique_ptr<ConnectionSlot> slot);

}  // namespace sbx::api::internal
