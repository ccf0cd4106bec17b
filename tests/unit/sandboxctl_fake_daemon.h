// A stand-in for sandboxd's sandbox routes (docs/sandboxes.md), for sandboxctl_*_test.cc: the
// generic HTTP server's router (api/http) with handlers that answer from memory and log every
// request for the assertions. What each argv[0] of a process makes the stand-in do is written
// at the processes route.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api/http/server.h"

namespace sbx::api::testing {

struct FakeProcess {
  nlohmann::json record;  // as GET …/processes/{pid} shows it
  std::string out, err;   // what the logs hold
};

struct Fake {
  std::mutex mu;
  std::map<std::string, nlohmann::json> sandboxes;
  std::vector<std::string> order;  // creation order
  std::map<std::string, std::vector<FakeProcess>> processes;
  std::map<std::string, std::string> files;      // "ID:PATH" -> bytes
  std::map<std::string, std::string> modes;      // "ID:PATH" -> mode= of the PUT
  std::map<std::string, std::string> tars;       // "ID:PATH" -> the archive PUT there
  std::vector<std::string> dirs;                 // "ID:PATH"
  std::vector<nlohmann::json> requests;          // {method, target, chunked, length, body}
  std::vector<std::shared_ptr<WebSocket>> held;  // pty streams left open
  int next_id = 1;
};

inline nlohmann::json ResultOf(int exit_code, std::optional<int> signal = std::nullopt) {
  nlohmann::json r = {{"reason", signal ? "signaled" : "exited"},
                      {"exit_code", signal ? nlohmann::json() : nlohmann::json(exit_code)},
                      {"signal", signal ? nlohmann::json(*signal) : nlohmann::json()},
                      {"wall_ms", 3},
                      {"cpu_ms", 1}};
  return r;
}

inline Response NotFound(const std::string& what) { return ErrorResponse(404, "not_found", what); }

inline std::string Key(const Request& r, std::string_view path) {
  return std::string(r.PathParam("id")) + ":" + std::string(path);
}

inline Router FakeRoutes(Fake* f) {
  Router router;
  // Every request is logged for the assertions; a GET route whose pattern names a stream
  // (events, pty, files:watch) is a WebSocket route.
  auto add = [&](Method m, const char* pattern, Handler h) {
    Handler logged = [f, h = std::move(h)](const Request& r) -> Reply {
      {
        std::lock_guard lock(f->mu);
        auto te = r.headers.Get("transfer-encoding");
        auto cl = r.headers.Get("content-length");
        f->requests.push_back({{"method", r.method_name},
                               {"target", r.target},
                               {"chunked", te && te->find("chunked") != std::string_view::npos},
                               {"length", cl ? std::string(*cl) : ""},
                               {"body", r.body.size() < 4096 ? r.body : std::string("(large)")}});
      }
      return h(r);
    };
    const std::string_view p = pattern;
    const bool ws = m == Method::kGet &&
                    (p.ends_with("/events") || p.ends_with("/pty") || p.ends_with("files:watch"));
    Status st = ws ? router.AddWebSocket(p, Access::kSubmitter, std::move(logged))
                   : router.Add(m, p, Access::kSubmitter, std::move(logged));
    EXPECT_TRUE(st.ok()) << pattern << ": " << st.error().message;
  };

  add(Method::kPost, "/v1/sandboxes", [f](const Request& r) -> Reply {
    auto body = nlohmann::json::parse(r.body);
    std::lock_guard lock(f->mu);
    const std::string id = fmt::format("sbx_fake{}", f->next_id++);
    nlohmann::json s = {{"id", id},
                        {"state", "RUNNING"},
                        {"reason", ""},
                        {"submitter", r.principal->key_name},
                        {"limits", body.value("limits", nlohmann::json::object())},
                        {"labels", body.value("labels", nlohmann::json::object())},
                        {"backend", "native"},
                        {"created_at", 1700000000000},
                        {"request", body},
                        {"policy", {{"decision", "allow"}, {"reasons", nlohmann::json::array()}}},
                        {"stats",
                         {{"cpu_usec", 1500000},
                          {"memory_current_bytes", 1048576},
                          {"memory_peak_bytes", 2097152},
                          {"pids_current", 1},
                          {"processes", 1},
                          {"paused", false},
                          {"unavailable", nlohmann::json::array()}}}};
    if (s["limits"].value("memory_bytes", int64_t{0}) > (int64_t{512} << 20)) {
      s["state"] = "AWAITING_REVIEW";
      s["policy"] = {{"decision", "review"},
                     {"reasons",
                      {{{"code", "sandbox_bound"},
                        {"message", "memory 1 GiB above allow_within.memory 512 MiB"}}}}};
    }
    f->sandboxes[id] = s;
    f->order.push_back(id);
    return JsonResponse(201, s);
  });
  add(Method::kGet, "/v1/sandboxes", [f](const Request& r) -> Reply {
    // Two a page, newest first, whatever limit asks: the client must follow next_cursor.
    std::lock_guard lock(f->mu);
    size_t start = r.query.Get("cursor") ? std::stoul(std::string(*r.query.Get("cursor"))) : 0;
    nlohmann::json page = nlohmann::json::array();
    for (size_t i = start; i < f->order.size() && i < start + 2; ++i) {
      page.push_back(f->sandboxes[f->order[f->order.size() - 1 - i]]);
    }
    nlohmann::json out = {{"sandboxes", page}, {"next_cursor", nullptr}};
    if (start + 2 < f->order.size()) out["next_cursor"] = std::to_string(start + 2);
    return JsonResponse(200, out);
  });
  add(Method::kGet, "/v1/sandboxes/{id}", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    auto it = f->sandboxes.find(std::string(r.PathParam("id")));
    if (it == f->sandboxes.end()) return NotFound("no such sandbox");
    return JsonResponse(200, it->second);
  });
  add(Method::kDelete, "/v1/sandboxes/{id}", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    auto it = f->sandboxes.find(std::string(r.PathParam("id")));
    if (it == f->sandboxes.end()) return NotFound("no such sandbox");
    it->second["state"] = "STOPPED";
    it->second["reason"] = "deleted";
    return JsonResponse(200, it->second);
  });
  for (auto [verb, state] : {std::pair{"pause", "PAUSED"}, std::pair{"resume", "RUNNING"}}) {
    add(Method::kPost,
        verb == std::string("pause") ? "/v1/sandboxes/{id}:pause" : "/v1/sandboxes/{id}:resume",
        [f, state = std::string(state)](const Request& r) -> Reply {
          std::lock_guard lock(f->mu);
          auto it = f->sandboxes.find(std::string(r.PathParam("id")));
          if (it == f->sandboxes.end()) return NotFound("no such sandbox");
          it->second["state"] = state;
          return JsonResponse(200, it->second);
        });
  }

  // The review verbs: approve starts a sandbox waiting for review, reject ends it FAILED with
  // "rejected: REASON"; anything else waiting is a conflict, as in the daemon.
  for (auto [verb, state] : {std::pair{"approve", "RUNNING"}, std::pair{"reject", "FAILED"}}) {
    add(Method::kPost,
        verb == std::string("approve") ? "/v1/sandboxes/{id}:approve" : "/v1/sandboxes/{id}:reject",
        [f, state = std::string(state)](const Request& r) -> Reply {
          std::lock_guard lock(f->mu);
          auto it = f->sandboxes.find(std::string(r.PathParam("id")));
          if (it == f->sandboxes.end()) return NotFound("no such sandbox");
          if (it->second["state"] != "AWAITING_REVIEW") {
            return ErrorResponse(409, "failed_precondition",
                                 "the sandbox is not waiting for review");
          }
          it->second["state"] = state;
          if (state == "FAILED") {
            auto body = nlohmann::json::parse(r.body.empty() ? "{}" : r.body);
            it->second["reason"] = "rejected: " + body.value("reason", "");
          }
          return JsonResponse(200, it->second);
        });
  }

  // Processes: argv[0] says what the stand-in does.
  add(Method::kPost, "/v1/sandboxes/{id}/processes", [f](const Request& r) -> Reply {
    auto body = nlohmann::json::parse(r.body);
    const auto argv = body["argv"].get<std::vector<std::string>>();
    std::lock_guard lock(f->mu);
    if (!f->sandboxes.count(std::string(r.PathParam("id")))) return NotFound("no such sandbox");
    auto& list = f->processes[std::string(r.PathParam("id"))];
    FakeProcess p;
    p.record = {{"id", list.size() + 1},
                {"sandbox_id", r.PathParam("id")},
                {"tag", body.value("tag", "")},
                {"argv", argv},
                {"request", body},
                {"state", "FINISHED"}};
    std::optional<int> signal;
    int code = 0;
    if (argv[0] == "echo-exit") {  // echo-exit CODE WORDS…: WORDS on stdout, "err" on stderr
      code = std::stoi(argv[1]);
      for (size_t i = 2; i < argv.size(); ++i)
        p.out += argv[i] + (i + 1 < argv.size() ? " " : "\n");
      p.err = "err\n";
    } else if (argv[0] == "binary") {  // every byte value
      for (int i = 0; i < 256; ++i) p.out.push_back(static_cast<char>(i));
    } else if (argv[0] == "big") {  // more than the answer carries: the rest is in the log
      p.out = std::string(3000, 'a') + std::string(3000, 'b');
    } else if (argv[0] == "killed") {
      signal = 9;
    } else if (argv[0] == "stdin") {  // its stdin back on stdout
      p.out = body.contains("stdin_b64") ? "b64:" + body["stdin_b64"].get<std::string>()
                                         : body.value("stdin", "");
    } else if (argv[0] == "review" || argv[0] == "/bin/sh") {
      // Waits for review (review) or runs on a pty (the shell): GET shows it FINISHED; the
      // events and the pty stream carry the rest.
      p.out = argv[0] == "review" ? "approved output\n" : "";
      code = argv[0] == "review" ? 0 : 7;
    }
    p.record["result"] = ResultOf(code, signal);
    nlohmann::json answer = p.record;
    int status = 201;
    if (argv[0] == "review") {
      answer["state"] = "AWAITING_REVIEW";
      answer.erase("result");
      answer["policy"] = {{"decision", "review"},
                          {"reasons", {{{"code", "unknown_program"}, {"message", "who knows"}}}}};
    } else if (argv[0] == "/bin/sh" || argv[0] == "hold") {
      answer["state"] = "RUNNING";
      answer.erase("result");
    } else if (r.query.Get("wait") == "true") {
      status = 200;
      const size_t cap = argv[0] == "big" ? 4000 : 1 << 20;
      const std::string out = p.out.substr(0, cap);
      bool utf8 = true;
      for (unsigned char c : out) utf8 = utf8 && c < 0x80;
      if (utf8) {
        answer["stdout"] = out;
      } else {
        static constexpr char kTable[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        std::string b64;
        for (size_t i = 0; i < out.size(); i += 3) {
          uint32_t v = static_cast<uint8_t>(out[i]) << 16;
          if (i + 1 < out.size()) v |= static_cast<uint8_t>(out[i + 1]) << 8;
          if (i + 2 < out.size()) v |= static_cast<uint8_t>(out[i + 2]);
          b64 += kTable[v >> 18];
          b64 += kTable[(v >> 12) & 63];
          b64 += i + 1 < out.size() ? kTable[(v >> 6) & 63] : '=';
          b64 += i + 2 < out.size() ? kTable[v & 63] : '=';
        }
        answer["stdout_b64"] = b64;
      }
      answer["stdout_truncated"] = p.out.size() > cap;
      answer["stderr"] = p.err;
      answer["stderr_truncated"] = false;
    } else {
      answer["state"] = "RUNNING";
      answer.erase("result");
    }
    list.push_back(std::move(p));
    return JsonResponse(status, answer);
  });
  auto find = [f](const Request& r) -> FakeProcess* {
    auto it = f->processes.find(std::string(r.PathParam("id")));
    if (it == f->processes.end()) return nullptr;
    const std::string pid(r.PathParam("pid"));
    for (auto p = it->second.rbegin(); p != it->second.rend(); ++p) {
      if (p->record["id"].dump() == pid || p->record.value("tag", "") == pid) return &*p;
    }
    return nullptr;
  };
  add(Method::kGet, "/v1/sandboxes/{id}/processes/{pid}", [f, find](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    FakeProcess* p = find(r);
    if (p == nullptr) return NotFound("no such process");
    return JsonResponse(200, p->record);
  });
  // A process that waits for review (argv[0] "review") is AWAITING_REVIEW until approved
  // (RUNNING) or rejected (REJECTED); its GET record stays as the processes route wrote it.
  for (auto [verb, state] : {std::pair{"approve", "RUNNING"}, std::pair{"reject", "REJECTED"}}) {
    add(Method::kPost,
        verb == std::string("approve") ? "/v1/sandboxes/{id}/processes/{pid}:approve"
                                       : "/v1/sandboxes/{id}/processes/{pid}:reject",
        [f, find, state = std::string(state)](const Request& r) -> Reply {
          std::lock_guard lock(f->mu);
          FakeProcess* p = find(r);
          if (p == nullptr) return NotFound("no such process");
          if (p->record["argv"][0] != "review") {
            return ErrorResponse(409, "failed_precondition",
                                 "the process is not waiting for review");
          }
          nlohmann::json answer = p->record;
          answer["state"] = state;
          answer.erase("result");
          return JsonResponse(200, answer);
        });
  }
  add(Method::kGet, "/v1/sandboxes/{id}/processes/{pid}/logs",
      [f, find](const Request& r) -> Reply {
        std::lock_guard lock(f->mu);
        FakeProcess* p = find(r);
        if (p == nullptr) return NotFound("no such process");
        const std::string& all = r.query.Get("stream") == "stderr" ? p->err : p->out;
        const size_t offset = std::stoul(std::string(r.query.Get("offset").value_or("0")));
        Response resp;
        resp.content_type = "application/octet-stream";
        resp.body = offset < all.size() ? all.substr(offset) : "";
        return resp;
      });
  add(Method::kGet, "/v1/sandboxes/{id}/processes/{pid}/events",
      [f, find](const Request& r) -> Reply {
        std::vector<std::string> events;
        {
          std::lock_guard lock(f->mu);
          FakeProcess* p = find(r);
          if (p == nullptr) return NotFound("no such process");
          // started, stdout in two pieces, stderr, finished.
          const std::string out = p->out;
          const size_t half = out.size() / 2;
          events.push_back(DumpJson({{"type", "process.started"}, {"seq", 1}}));
          events.push_back(DumpJson({{"type", "process.log"},
                                     {"seq", 2},
                                     {"stream", "stdout"},
                                     {"offset", 0},
                                     {"length", half},
                                     {"data", out.substr(0, half)}}));
          events.push_back(DumpJson({{"type", "process.log"},
                                     {"seq", 3},
                                     {"stream", "stdout"},
                                     {"offset", half},
                                     {"length", out.size() - half},
                                     {"data", out.substr(half)}}));
          events.push_back(DumpJson({{"type", "process.log"},
                                     {"seq", 4},
                                     {"stream", "stderr"},
                                     {"offset", 0},
                                     {"length", p->err.size()},
                                     {"data", p->err}}));
          events.push_back(DumpJson(
              {{"type", "process.finished"}, {"seq", 5}, {"result", p->record["result"]}}));
        }
        const int64_t after = std::stoll(std::string(r.query.Get("after").value_or("0")));
        WebSocketAccept a;
        a.on_open = [events, after](std::shared_ptr<WebSocket> ws) {
          for (size_t i = static_cast<size_t>(after); i < events.size(); ++i) {
            ws->Send(events[i], static_cast<int64_t>(i + 1));
          }
          ws->Close();
        };
        return a;
      });
  add(Method::kGet, "/v1/sandboxes/{id}/processes/{pid}/pty", [f, find](const Request& r) -> Reply {
    bool hold = false;
    {
      std::lock_guard lock(f->mu);
      FakeProcess* p = find(r);
      if (p == nullptr) return NotFound("no such process");
      hold = p->record["argv"][0] == "hold";
    }
    WebSocketAccept a;
    if (hold) {
      // Says it is ready and stays open (the server's stop closes it).
      a.on_open = [f](std::shared_ptr<WebSocket> ws) {
        ws->SendBinary("ready\r\n", std::nullopt);
        std::lock_guard lock(f->mu);
        f->held.push_back(std::move(ws));
      };
      return a;
    }
    a.on_open = [](std::shared_ptr<WebSocket> ws) {
      ws->SendBinary("pty says hi\r\n", std::nullopt);
      ws->Send(R"({"type":"notice"})");
      ws->SendBinary(std::string("\x1b[0m\xff", 5), std::nullopt);
      ws->Close();
    };
    return a;
  });

  // Files.
  add(Method::kGet, "/v1/sandboxes/{id}/files:stat", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    if (!f->sandboxes.count(std::string(r.PathParam("id")))) return NotFound("no such sandbox");
    const std::string key = Key(r, r.query.Get("path").value_or(""));
    if (std::find(f->dirs.begin(), f->dirs.end(), key) != f->dirs.end()) {
      return JsonResponse(200, {{"name", "d"}, {"type", "directory"}, {"mode", 0755}});
    }
    auto it = f->files.find(key);
    if (it == f->files.end()) return NotFound("no such file");
    return JsonResponse(
        200, {{"name", "f"}, {"type", "file"}, {"size", it->second.size()}, {"mode", "0640"}});
  });
  add(Method::kPut, "/v1/sandboxes/{id}/files", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    const std::string key = Key(r, r.query.Get("path").value_or(""));
    f->files[key] = r.body;
    f->modes[key] = std::string(r.query.Get("mode").value_or(""));
    return JsonResponse(200, {{"size", r.body.size()}});
  });
  add(Method::kGet, "/v1/sandboxes/{id}/files", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    auto it = f->files.find(Key(r, r.query.Get("path").value_or("")));
    if (it == f->files.end()) return NotFound("no such file");
    Response resp;
    resp.content_type = "application/octet-stream";
    resp.body = it->second;
    return resp;
  });
  add(Method::kPost, "/v1/sandboxes/{id}/files:mkdir", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    f->dirs.push_back(Key(r, r.query.Get("path").value_or("")));
    return JsonResponse(200, nlohmann::json::object());
  });
  add(Method::kPut, "/v1/sandboxes/{id}/files:tar", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    f->tars[Key(r, r.query.Get("path").value_or(""))] = r.body;
    return JsonResponse(200, nlohmann::json::object());
  });
  add(Method::kGet, "/v1/sandboxes/{id}/files:tar", [f](const Request& r) -> Reply {
    std::lock_guard lock(f->mu);
    auto it = f->tars.find(Key(r, r.query.Get("path").value_or("")));
    if (it == f->tars.end()) return NotFound("no such directory");
    Response resp;
    resp.content_type = "application/x-tar";
    resp.body = it->second;
    return resp;
  });
  add(Method::kGet, "/v1/sandboxes/{id}/files:watch", [](const Request& r) -> Reply {
    const std::string path(r.query.Get("path").value_or(""));
    WebSocketAccept a;
    a.on_open = [path](std::shared_ptr<WebSocket> ws) {
      ws->Send(DumpJson({{"type", "created"}, {"path", path + "/a.txt"}}));
      ws->Send(DumpJson({{"type", "moved"}, {"path", path + "/a.txt"}, {"to", path + "/b.txt"}}));
      ws->Close();
    };
    return a;
  });
  return router;
}

}  // namespace sbx::api::testing
