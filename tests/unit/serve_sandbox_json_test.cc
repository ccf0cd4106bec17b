// The wire forms of sandboxes and their processes (api/v1/sandbox_json.h) against hostile input:
// unknown fields, wrong types, out-of-range numbers, NUL bytes, tags that would read as ids,
// base64 that is not; and the encoders: env values redacted, bytes as text or base64, events
// with their bytes read from the stream files by range.
#include "api/v1/sandbox_json.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "api/testing/test_util.h"
#include "api/v1/run_routes.h"

namespace sbx::api {
namespace {

using nlohmann::json;

json Parse(const char* text) { return json::parse(text); }

std::string SandboxError(const json& body) {
  auto r = SandboxRequestFromJson(body);
  EXPECT_FALSE(r.ok()) << body.dump();
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  return r.error().message;
}

std::string ProcessError(const json& body) {
  auto r = ProcessRequestFromJson(body);
  EXPECT_FALSE(r.ok()) << body.dump();
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  return r.error().message;
}

TEST(SandboxRequestFromJson, EveryFieldDecodes) {
  auto r = SandboxRequestFromJson(Parse(R"({
      "limits": {"cpus": 1.5, "memory_bytes": "256m", "pids": 64, "timeout_s": 3600,
                 "output_bytes": 1048576},
      "idle_timeout_s": 600, "network": "none", "seccomp_profile": "default",
      "env": {"K": "V"}, "workspace": {"path": "/srv/work/x", "mode": "cow"},
      "labels": {"team": "a"}, "idempotency_key": "once", "backend": "native"})"));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->cpus, 1.5);
  EXPECT_EQ(r->memory_bytes, 256ll << 20);
  EXPECT_EQ(r->pids, 64);
  EXPECT_EQ(r->timeout_s, 3600);
  EXPECT_EQ(r->output_bytes, 1048576);
  EXPECT_EQ(r->idle_timeout_s, 600);
  EXPECT_EQ(r->network, "none");
  EXPECT_EQ(r->env.at("K"), "V");
  EXPECT_EQ(r->workspace_path, "/srv/work/x");
  EXPECT_EQ(r->workspace_mode, "cow");
  EXPECT_EQ(r->labels.at("team"), "a");
  EXPECT_EQ(r->idempotency_key, "once");
  EXPECT_EQ(r->backend, "native");

  auto empty = SandboxRequestFromJson(json::object());
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, store::SandboxRequest{});
  auto path_only = SandboxRequestFromJson(Parse(R"({"workspace": "/srv/w"})"));
  ASSERT_TRUE(path_only.ok());
  EXPECT_EQ(path_only->workspace_mode, "ro");
}

TEST(SandboxRequestFromJson, HostileInputIsRefusedNamingTheField) {
  EXPECT_NE(SandboxError(json::array()).find("body"), std::string::npos);
  EXPECT_NE(SandboxError(json("text")).find("body"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"argv": ["sh"]})")).find("argv: unknown field"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": []})")).find("limits"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"cpus": 0}})")).find("limits.cpus"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"cpus": "1"}})")).find("limits.cpus"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"pids": -1}})")).find("limits.pids"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"pids": 1.5}})")).find("limits.pids"),
            std::string::npos);
  // 2^64 - 1 and 2^63 would wrap to negative int64 values.
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"timeout_s": 18446744073709551615}})"))
                .find("limits.timeout_s"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"timeout_s": 9223372036854775808}})"))
                .find("limits.timeout_s"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"memory_bytes": "lots"}})"))
                .find("limits.memory_bytes"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"limits": {"disk": 1}})")).find("limits.disk"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"idle_timeout_s": -1})")).find("idle_timeout_s"),
            std::string::npos);
  EXPECT_EQ(SandboxRequestFromJson(Parse(R"({"idle_timeout_s": 0})"))->idle_timeout_s, 0);
  EXPECT_NE(SandboxError(Parse(R"({"idle_timeout_s": "10"})")).find("idle_timeout_s"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"network": 1})")).find("network"), std::string::npos);
  EXPECT_NE(SandboxError(json{{"seccomp_profile", std::string("a\0b", 3)}}).find("NUL"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"env": {"A=B": "x"}})")).find("env"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"env": {"A": 1}})")).find("env.A"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"env": ["A"]})")).find("env"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"labels": {"k": null}})")).find("labels.k"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"workspace": {"path": "/w", "mode": "rwx"}})"))
                .find("workspace.mode"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"workspace": {"path": "/w", "uid": 0}})"))
                .find("workspace.uid"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"workspace": {"mode": "ro"}})")).find("workspace.path"),
            std::string::npos);
  EXPECT_NE(SandboxError(json{{"workspace", std::string("/w\0/etc", 7)}}).find("workspace.path"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"workspace": 7})")).find("workspace"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"backend": "qemu"})")).find("backend"), std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"backend": "native", "image": "busybox"})")).find("image"),
            std::string::npos);
  EXPECT_NE(SandboxError(Parse(R"({"idempotency_key": ""})")).find("idempotency_key"),
            std::string::npos);
}

TEST(SandboxToJson, RedactsEnvAndShowsLiveFigures) {
  store::SandboxRecord s;
  s.id = "sbx_abc";
  s.submitter = "alice";
  s.state = store::SandboxState::kRunning;
  s.env = {{"TOKEN", "secret-value"}};
  s.timeout_s = 60;
  s.memory_bytes = 1 << 20;
  s.started_at_ms = 1000;
  s.created_at_ms = 900;
  s.workspace_path = "/srv/w";
  s.workspace_mode = "cow";
  s.approval = store::SandboxApproval{"policy", 950, "sandboxes"};
  json j = SandboxToJson(s);
  EXPECT_EQ(j["id"], "sbx_abc");
  EXPECT_EQ(j["state"], "RUNNING");
  EXPECT_EQ(j["env"]["TOKEN"], kRedacted);
  EXPECT_EQ(j.dump().find("secret-value"), std::string::npos);
  EXPECT_EQ(j["limits"]["memory_bytes"], 1 << 20);
  EXPECT_TRUE(j["limits"]["cpus"].is_null());
  EXPECT_EQ(j["workspace"]["mode"], "cow");
  EXPECT_EQ(j["approval"]["approved_by"], "policy");
  EXPECT_EQ(j["approval"]["approved_at"], 950);
  EXPECT_EQ(j["expires_at"], 61000);  // started_at + timeout_s
  EXPECT_TRUE(j["stats"].is_null());
  EXPECT_TRUE(j["ended_at"].is_null());

  supervisor::SandboxLiveInfo live;
  live.stats = isolate::SandboxStats{};
  live.stats->memory_current_bytes = 4096;
  live.stats->processes = 3;
  live.stats->paused = true;
  live.stats->unavailable = {"cpu"};
  live.expires_at_ms = 70000;
  live.idle_expires_at_ms = 5000;
  j = SandboxToJson(s, live);
  EXPECT_EQ(j["stats"]["memory_current_bytes"], 4096);
  EXPECT_TRUE(j["stats"]["cpu_usec"].is_null());
  EXPECT_EQ(j["stats"]["processes"], 3);
  EXPECT_EQ(j["stats"]["paused"], true);
  EXPECT_EQ(j["stats"]["unavailable"], json::array({"cpu"}));
  EXPECT_EQ(j["expires_at"], 70000);
  EXPECT_EQ(j["idle_expires_at"], 5000);

  s.state = store::SandboxState::kStopped;
  s.reason = {store::EndCode::kDeleted, ""};
  s.ended_at_ms = 2000;
  j = SandboxToJson(s);
  EXPECT_EQ(j["reason"], "deleted");
  EXPECT_EQ(j["ended_at"], 2000);
  EXPECT_TRUE(j["expires_at"].is_null());
}

TEST(ProcessRequestFromJson, EveryFieldDecodes) {
  auto r = ProcessRequestFromJson(Parse(R"({
      "argv": ["ls", "-l"], "env": {"A": "1"}, "cwd": "/workspace", "stdin": "text",
      "stdin_open": true, "tag": "build-1.x_y", "timeout_s": 60,
      "pty": {"cols": 100, "rows": 30}})"));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->argv, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(r->env.at("A"), "1");
  EXPECT_EQ(r->cwd, "/workspace");
  EXPECT_EQ(r->stdin_data, "text");
  EXPECT_TRUE(r->stdin_open);
  EXPECT_EQ(r->tag, "build-1.x_y");
  EXPECT_EQ(r->timeout_s, 60);
  ASSERT_TRUE(r->pty.has_value());
  EXPECT_EQ(r->pty->cols, 100);
  EXPECT_EQ(r->pty->rows, 30);

  auto b64 = ProcessRequestFromJson(Parse(R"({"argv": ["cat"], "stdin_b64": "AAEC/w=="})"));
  ASSERT_TRUE(b64.ok()) << b64.error().ToString();
  EXPECT_EQ(b64->stdin_data, std::string("\x00\x01\x02\xff", 4));
  auto pty_default = ProcessRequestFromJson(Parse(R"({"argv": ["sh"], "pty": {}})"));
  ASSERT_TRUE(pty_default.ok());
  EXPECT_EQ(pty_default->pty, (store::PtyRequest{80, 24}));
  auto nulls = ProcessRequestFromJson(Parse(R"({"argv": ["sh"], "pty": null, "tag": null})"));
  ASSERT_TRUE(nulls.ok());
  EXPECT_FALSE(nulls->pty.has_value());
  EXPECT_EQ(nulls->tag, "");
}

TEST(ProcessRequestFromJson, HostileInputIsRefusedNamingTheField) {
  EXPECT_NE(ProcessError(json::object()).find("argv"), std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": []})")).find("argv"), std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": "ls"})")).find("argv"), std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls", 1]})")).find("argv[1]"), std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": [""]})")).find("argv[0]"), std::string::npos);
  EXPECT_NE(ProcessError(json{{"argv", {std::string("l\0s", 3)}}}).find("argv[0]"),
            std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls"], "shell": true})")).find("shell"),
            std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls"], "cwd": "tmp"})")).find("cwd"),
            std::string::npos);
  EXPECT_NE(ProcessError(json{{"argv", {"ls"}}, {"cwd", std::string("/a\0b", 4)}}).find("cwd"),
            std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls"], "stdin": 5})")).find("stdin"),
            std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls"], "stdin": "a", "stdin_b64": "YQ=="})"))
                .find("stdin_b64"),
            std::string::npos);
  for (const char* bad : {"abc", "!!!!", "YQ= =", "Y Q==", "YQ==YQ==x", "YQ-_", "=YQ="}) {
    EXPECT_NE(ProcessError(json{{"argv", {"cat"}}, {"stdin_b64", bad}}).find("stdin_b64"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls"], "stdin_open": "yes"})")).find("stdin_open"),
            std::string::npos);
  for (const char* t : {"", "123", "0", "a/b", ".", "..", "tag with space", "ü"}) {
    EXPECT_NE(ProcessError(json{{"argv", {"ls"}}, {"tag", t}}).find("tag"), std::string::npos)
        << t;
  }
  EXPECT_NE(ProcessError(json{{"argv", {"ls"}}, {"tag", std::string(65, 'a')}}).find("tag"),
            std::string::npos);
  EXPECT_TRUE(ProcessRequestFromJson(json{{"argv", {"ls"}}, {"tag", std::string(64, 'a')}}).ok());
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["ls"], "tag": 7})")).find("tag"), std::string::npos);
  for (const char* t : {R"(0)", R"(-5)", R"(1.5)", R"("60")", R"(18446744073709551615)"}) {
    EXPECT_NE(ProcessError(json{{"argv", {"ls"}}, {"timeout_s", json::parse(t)}})
                  .find("timeout_s"),
              std::string::npos)
        << t;
  }
  for (const char* p : {R"({"cols": 0})", R"({"rows": 1001})", R"({"cols": 80.5})",
                        R"({"cols": "80"})", R"({"cols": -1})"}) {
    std::string msg = ProcessError(json{{"argv", {"sh"}}, {"pty", json::parse(p)}});
    EXPECT_NE(msg.find("pty."), std::string::npos) << p << ": " << msg;
  }
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["sh"], "pty": {"cols": 80, "x": 1}})")).find("pty.x"),
            std::string::npos);
  EXPECT_NE(ProcessError(Parse(R"({"argv": ["sh"], "pty": true})")).find("pty"),
            std::string::npos);
}

TEST(ProcessTags, NeverReadAsIds) {
  EXPECT_TRUE(IsValidProcessTag("build"));
  EXPECT_TRUE(IsValidProcessTag("v1.2"));
  EXPECT_TRUE(IsValidProcessTag("1a"));
  EXPECT_FALSE(IsValidProcessTag("12"));
  EXPECT_FALSE(IsValidProcessTag("a:b"));
  EXPECT_FALSE(IsValidProcessTag(std::string("a\0", 2)));
}

TEST(ProcessToJson, ShowsTheRecordWithoutSecrets) {
  store::ProcessRecord p;
  p.sandbox_id = "sbx_abc";
  p.id = 3;
  p.argv = {"make"};
  p.env = {{"TOKEN", "secret-value"}};
  p.stdin_data = std::string("\0\1", 2);
  p.state = store::ProcessState::kFinished;
  p.result = store::ProcessResult{};
  p.result->reason = {store::EndCode::kSignaled, ""};
  p.result->signal = 9;
  p.result->stdout_bytes = 12;
  json j = ProcessToJson(p);
  EXPECT_EQ(j["id"], 3);
  EXPECT_EQ(j["sandbox_id"], "sbx_abc");
  EXPECT_TRUE(j["tag"].is_null());
  EXPECT_EQ(j["state"], "FINISHED");
  EXPECT_EQ(j["env"]["TOKEN"], kRedacted);
  EXPECT_EQ(j.dump().find("secret-value"), std::string::npos);
  EXPECT_EQ(j["stdin_bytes"], 2);
  EXPECT_TRUE(j["pty"].is_null());
  EXPECT_EQ(j["result"]["reason"], "signaled");
  EXPECT_EQ(j["result"]["signal"], 9);
  EXPECT_EQ(j["result"]["signal_name"], "SIGKILL");
  EXPECT_TRUE(j["result"]["exit_code"].is_null());
  EXPECT_EQ(j["result"]["stdout_bytes"], 12);

  supervisor::ProcessOutcome o;
  o.process = p;
  o.stdout_head = "hello\n";
  o.stderr_head = std::string("\xff\xfe", 2);
  o.stderr_truncated = true;
  json w = ProcessOutcomeToJson(o);
  EXPECT_EQ(w["stdout"], "hello\n");
  EXPECT_FALSE(w.contains("stdout_b64"));
  EXPECT_FALSE(w.contains("stderr"));
  EXPECT_EQ(w["stderr_b64"], "//4=");
  EXPECT_EQ(w["stdout_truncated"], false);
  EXPECT_EQ(w["stderr_truncated"], true);
}

TEST(ParseSignal, NamesAndNumbers) {
  for (const char* s : {"SIGINT", "INT", "int", "sigint", "2"}) {
    auto r = ParseSignal(json(s));
    ASSERT_TRUE(r.ok()) << s;
    EXPECT_EQ(*r, 2) << s;
  }
  EXPECT_EQ(*ParseSignal(json(15)), 15);
  EXPECT_EQ(*ParseSignal(json("SIGKILL")), 9);
  EXPECT_EQ(*ParseSignal(json("64")), 64);
  for (json bad : {json(0), json(65), json(-9), json("SIGFOO"), json("SIG"), json(""),
                   json(true), json(2.5), json("2 "), json(" 2"), json("SIG64x"),
                   json(std::string(100, 'S')), json(nullptr), json::array({2})}) {
    auto r = ParseSignal(bad);
    EXPECT_FALSE(r.ok()) << bad.dump();
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("signal"), std::string::npos);
    }
  }
}

class ProcessEventJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    std::ofstream(supervisor::ProcessOutput::StreamPath(dir_.path(), 1), std::ios::binary)
        << "hello \"world\"\n";
    std::ofstream(supervisor::ProcessOutput::StreamPath(dir_.path(), 2), std::ios::binary)
        << std::string("ok\xff\x00", 4);
  }
  static supervisor::ProcessEvent Log(int stream, int64_t offset, int64_t length) {
    supervisor::ProcessEvent e;
    e.seq = 2;
    e.ts_ms = 1700000000123;
    e.type = supervisor::ProcessEventType::kLog;
    e.stream = stream;
    e.offset = offset;
    e.length = length;
    return e;
  }
  api::testing::TempDir dir_;
};

TEST_F(ProcessEventJsonTest, LogBytesComeFromTheStreamFiles) {
  ProcessStreams streams(dir_.path());
  json j = ProcessEventToJson(Log(1, 6, 7), "sbx_abc", 4, streams);
  EXPECT_EQ(j["type"], "process.log");
  EXPECT_EQ(j["seq"], 2);
  EXPECT_EQ(j["ts"], 1700000000123);
  EXPECT_EQ(j["sandbox_id"], "sbx_abc");
  EXPECT_EQ(j["process_id"], 4);
  EXPECT_EQ(j["stream"], "stdout");
  EXPECT_EQ(j["offset"], 6);
  EXPECT_EQ(j["length"], 7);
  EXPECT_EQ(j["data"], "\"world\"");

  json err = ProcessEventToJson(Log(2, 0, 4), "sbx_abc", 4, streams);
  EXPECT_EQ(err["stream"], "stderr");
  EXPECT_FALSE(err.contains("data"));
  EXPECT_EQ(err["data_b64"], "b2v/AA==");

  // A range past the end reads what there is; a negative one nothing.
  EXPECT_EQ(ProcessEventToJson(Log(1, 12, 100), "s", 1, streams)["data"], "\"\n");
  EXPECT_EQ(ProcessEventToJson(Log(1, -1, 3), "s", 1, streams)["data"], "");

  FileBytes range = streams.Range(1, 6, 7);
  ASSERT_TRUE(range.fd);
  EXPECT_EQ(range.offset, 6);
  EXPECT_EQ(range.length, 7u);
  EXPECT_FALSE(streams.Range(1, 6, 100).fd) << "a range past the end is not sent from the file";

  std::string head = ProcessEventBinaryHead(Log(1, 6, 7), "sbx_abc", 4);
  ASSERT_FALSE(head.empty());
  EXPECT_EQ(head.back(), '\n');
  EXPECT_EQ(head.find('\n'), head.size() - 1);
  json h = json::parse(head);
  EXPECT_FALSE(h.contains("data"));
  EXPECT_EQ(h["length"], 7);
}

TEST_F(ProcessEventJsonTest, MissingFilesReadEmptyAndOtherEventsCarryNoBytes) {
  ProcessStreams none(dir_.path() + "/missing");
  EXPECT_EQ(ProcessEventToJson(Log(1, 0, 5), "s", 1, none)["data"], "");
  EXPECT_FALSE(none.Range(1, 0, 5).fd);

  supervisor::ProcessEvent finished;
  finished.seq = 9;
  finished.type = supervisor::ProcessEventType::kFinished;
  finished.result = {{"reason", "exited"}, {"exit_code", 0}};
  json j = ProcessEventToJson(finished, "sbx_abc", 4, none);
  EXPECT_EQ(j["type"], "process.finished");
  EXPECT_EQ(j["result"]["exit_code"], 0);
  EXPECT_FALSE(j.contains("data"));
  EXPECT_FALSE(j.contains("stream"));

  supervisor::ProcessEvent started;
  started.seq = 1;
  started.type = supervisor::ProcessEventType::kStarted;
  EXPECT_EQ(ProcessEventToJson(started, "sbx_abc", 4, none)["type"], "process.started");
}

}  // namespace
}  // namespace sbx::api
