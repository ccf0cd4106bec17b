// supervisor/observability/log.h: the journal's native datagram format, the JOURNAL_STREAM check,
// levels, and a real datagram socket standing in for journald.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>

#include "base/unique_fd.h"
#include "supervisor/observability/log.h"

namespace sbx::log {
namespace {

// Decodes a native-protocol datagram into its fields (both the "K=V\n" and the binary form).
std::map<std::string, std::string> DecodeEntry(std::string_view d) {
  std::map<std::string, std::string> out;
  while (!d.empty()) {
    size_t nl = d.find('\n');
    size_t eq = d.find('=');
    if (eq != std::string_view::npos && eq < nl) {
      out[std::string(d.substr(0, eq))] = std::string(d.substr(eq + 1, nl - eq - 1));
      d.remove_prefix(nl + 1);
      continue;
    }
    std::string key(d.substr(0, nl));
    d.remove_prefix(nl + 1);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(d[i])) << (8 * i);
    d.remove_prefix(8);
    out[key] = std::string(d.substr(0, n));
    d.remove_prefix(n + 1);
  }
  return out;
}

TEST(Logging, EncodesTheJournalsNativeFormat) {
  std::string e = EncodeJournalEntry(Level::kWarning, {"run_1", "run_1"}, "run run_1: hello",
                                     "sandboxd");
  EXPECT_EQ(e,
            "PRIORITY=4\nSYSLOG_IDENTIFIER=sandboxd\nRUN_ID=run_1\nSANDBOX_ID=run_1\n"
            "MESSAGE=run run_1: hello\n");
  // A value with a newline takes the binary form: KEY\n, a 64-bit little-endian length, value.
  std::string multi = EncodeJournalEntry(Level::kError, {}, "a\nb", "x");
  std::string expected_tail = std::string("MESSAGE\n") + std::string("\x03\0\0\0\0\0\0\0", 8) +
                              "a\nb\n";
  EXPECT_TRUE(multi.ends_with(expected_tail));
  EXPECT_EQ(multi.find("RUN_ID"), std::string::npos);
  EXPECT_EQ(DecodeEntry(multi)["MESSAGE"], "a\nb");
}

TEST(Logging, JournalStreamMustNameThisFile) {
  char path[] = "/tmp/sbx-logtest-XXXXXX";
  UniqueFd fd(::mkstemp(path));
  ASSERT_TRUE(fd);
  ::unlink(path);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  std::string good = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  EXPECT_TRUE(JournalStreamMatches(fd.get(), good.c_str()));
  EXPECT_FALSE(JournalStreamMatches(fd.get(), other.c_str()));
  EXPECT_FALSE(JournalStreamMatches(fd.get(), nullptr));
  EXPECT_FALSE(JournalStreamMatches(fd.get(), "garbage"));
}

TEST(Logging, ParsesLevels) {
  EXPECT_EQ(*ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(*ParseLevel("warn"), Level::kWarning);
  EXPECT_EQ(*ParseLevel("error"), Level::kError);
  EXPECT_FALSE(ParseLevel("loud").ok());
}

TEST(Logging, SendsEntriesToTheJournalSocketAboveTheLevel) {
  char dir[] = "/tmp/sbx-logtest-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/journal.sock";
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);

  Options o;
  o.level = Level::kInfo;
  o.sink = Sink::kJournal;
  o.journal_socket = path;
  Configure(o);
  EXPECT_TRUE(ToJournal());
  Debug({}, "not sent: {}", 1);
  Warning({"run_9", "run_9"}, "run {}: sandbox cleanup failed", "run_9");
  pollfd p{sock.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  char buf[4096];
  ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  auto fields = DecodeEntry(std::string_view(buf, static_cast<size_t>(n)));
  EXPECT_EQ(fields["PRIORITY"], "4");
  EXPECT_EQ(fields["RUN_ID"], "run_9");
  EXPECT_EQ(fields["SANDBOX_ID"], "run_9");
  EXPECT_EQ(fields["MESSAGE"], "run run_9: sandbox cleanup failed");
  EXPECT_EQ(fields["SYSLOG_IDENTIFIER"], "sandboxd");
  // The debug line was filtered: nothing else is queued.
  EXPECT_EQ(::poll(&p, 1, 0), 0);

  // Lines written through spdlog take the same way, with the run named in the line as RUN_ID.
  InstallSpdlogSink();
  Error({}, "plain");
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  n = ::recv(sock.get(), buf, sizeof buf, 0);
  EXPECT_EQ(DecodeEntry(std::string_view(buf, static_cast<size_t>(n)))["PRIORITY"], "3");

  Configure(Options{});  // back to text on stderr
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace sbx::log
