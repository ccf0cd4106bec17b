#include "api/daemon/runner_mode.h"

#include <sys/random.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "api/ws_client/ws_client.h"
#include "base/fs.h"
#include "supervisor/observability/log.h"
#include "supervisor/runner/backoff.h"
#include "supervisor/runner/protocol.h"

namespace sbx::api {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Result<RunnerFlags> TakeRunnerFlags(std::vector<std::string>& flags) {
  RunnerFlags out;
  std::string token_file;
  std::vector<std::string> rest;
  for (size_t i = 0; i < flags.size(); ++i) {
    auto value = [&](const std::string& name) -> std::optional<std::string> {
      if (flags[i] == name && i + 1 < flags.size()) return flags[++i];
      if (flags[i].rfind(name + "=", 0) == 0) return flags[i].substr(name.size() + 1);
      return std::nullopt;
    };
    if (auto v = value("--connect")) {
      out.connect = *v;
    } else if (auto v = value("--token-file")) {
      token_file = *v;
    } else if (auto v = value("--ca-file")) {
      out.ca_file = *v;
    } else {
      rest.push_back(flags[i]);
    }
  }
  flags = std::move(rest);
  if (out.connect.empty()) out.connect = Env("SANDBOXD_RUNNER_CONNECT");
  if (out.ca_file.empty()) out.ca_file = Env("SANDBOXD_RUNNER_CA_FILE");
  if (token_file.empty()) token_file = Env("SANDBOXD_RUNNER_TOKEN_FILE");
  if (!token_file.empty()) {
    auto t = ReadFile(token_file, 4096);
    if (!t.ok()) return WithContext(std::move(t).error(), "the runner's token file");
    out.token = Trim(*t);
  } else {
    out.token = Env("SANDBOXD_RUNNER_TOKEN");
  }
  if (out.connect.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no coordinator: give --connect wss://COORDINATOR/v1/runners (or "
                     "SANDBOXD_RUNNER_CONNECT)");
  }
  if (out.token.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no token: give --token-file PATH, SANDBOXD_RUNNER_TOKEN or "
                     "SANDBOXD_RUNNER_TOKEN_FILE (an admin issues it: sandboxctl runner add "
                     "NAME)");
  }
  return out;
}

int RunRunnerLink(const RunnerFlags& flags, supervisor::runner::Uplink& uplink,
                  const sigset_t& stop_signals) {
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread link([&] {
    uint64_t seed = 0;
    (void)::getrandom(&seed, sizeof seed, 0);
    supervisor::runner::Backoff backoff(std::chrono::milliseconds(200),
                                        std::chrono::milliseconds(30'000), seed);
    supervisor::runner::CircuitBreaker breaker({});
    auto wait = [&](auto until) {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait_until(lk, until, [&] { return stopping; });
      return !stopping;
    };
    while (true) {
      {
        std::lock_guard<std::mutex> lk(mu);
        if (stopping) return;
      }
      const auto now = std::chrono::steady_clock::now();
      if (!breaker.Allow(now)) {
        log::Warning({}, "runner: the coordinator kept failing; next try in {} s",
                     std::chrono::duration_cast<std::chrono::seconds>(breaker.open_until() - now)
                         .count());
        if (!wait(breaker.open_until())) return;
        continue;
      }
      WsClientOptions o;
      o.url = flags.connect;
      o.headers = {{"Authorization", "Bearer " + flags.token}};
      o.ca_file = flags.ca_file;
      o.max_message_bytes = supervisor::runner::kMaxMessageBytes;
      auto client = WsClient::Connect(
          o, {.on_message = [&](std::string data, bool binary) {
                if (!binary) uplink.OnMessage(data);
              },
              .on_close = [&](std::string why) { uplink.LinkClosed(std::move(why)); }});
      bool welcomed = false;
      if (!client.ok()) {
        log::Warning({}, "runner: connecting to {}: {}", flags.connect, client.error().ToString());
      } else {
        WsClient* c = client->get();
        Status session = uplink.Session(
            {.send_text = [c](std::string t) { return c->Send(std::move(t)); },
             .send_binary = [c](std::string b) { return c->SendBinary(std::move(b)); },
             .queued_bytes = [c] { return c->queued_bytes(); }},
            std::chrono::milliseconds(10'000));
        welcomed = session.ok();
        if (!welcomed) log::Warning({}, "runner: {}", session.error().ToString());
        (*client)->Close();
        client->reset();
      }
      if (welcomed) {
        breaker.RecordSuccess();
        backoff.Reset();
      } else {
        breaker.RecordFailure(std::chrono::steady_clock::now());
      }
      if (!wait(std::chrono::steady_clock::now() + backoff.Next())) return;
    }
  });
  int sig = 0;
  ::sigwait(&stop_signals, &sig);
  {
    std::lock_guard<std::mutex> lk(mu);
    stopping = true;
  }
  cv.notify_all();
  uplink.Stop();
  link.join();
  return sig;
}

}  // namespace sbx::api
