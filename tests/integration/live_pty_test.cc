// A live process on a pseudo-terminal (isolate/live.h): the size it is given, the new one after
// Resize (with SIGWINCH), its controlling terminal from the sandbox's own devpts, and a
// full-screen program's output. Real sandboxes; every wait is on an fd.
#include <signal.h>
#include <unistd.h>

#include "integration/live_support.h"
#include "integration/sandbox_harness.h"

namespace sbx::testing {
namespace {

using isolate::LiveEndReason;
using isolate::LiveProcessSpec;

class LivePtyTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    sb_ = Create(DefaultSpec());
    ASSERT_TRUE(sb_);
  }
  void TearDown() override {
    if (sb_) {
      EXPECT_TRUE(sb_->Destroy().ok());
    }
  }
  std::unique_ptr<isolate::Sandbox> sb_;
};

TEST_F(LivePtyTest, SizeResizeAndControllingTerminal) {
  LiveProcessSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "tty; stty size; echo first-done; read x; stty size; "
               "trap 'echo got-winch; exit 7' WINCH; echo armed; "
               "while :; do sleep 0.05; done"};
  spec.pty = isolate::PtySize{100, 30};
  auto p = sb_->Start(spec);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  ASSERT_TRUE(p->pty);
  EXPECT_FALSE(p->out);

  std::string out = ReadUntil(p->pty.get(), "first-done");
  // The terminal is the sandbox's own devpts instance, and the shell's controlling terminal
  // (`tty` names it; `stty` on /dev/tty would fail without one).
  EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
  EXPECT_NE(out.find("30 100"), std::string::npos) << out;

  Status st = sb_->Resize(p->id, {120, 40});
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  ASSERT_EQ(::write(p->pty.get(), "x\n", 2), 2);
  out = ReadUntil(p->pty.get(), "armed");
  EXPECT_NE(out.find("40 120"), std::string::npos) << out;

  // The foreground group (the shell's) gets SIGWINCH.
  ASSERT_TRUE(sb_->Resize(p->id, {90, 20}).ok());
  out = ReadUntil(p->pty.get(), "got-winch");
  EXPECT_NE(out.find("got-winch"), std::string::npos) << out;
  ASSERT_TRUE(Readable(p->done.get(), 20'000));
  auto r = sb_->ResultOf(p->id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, LiveEndReason::kExited);
  EXPECT_EQ(r->exit_code, 7);
}

TEST_F(LivePtyTest, FullScreenProgramOutputArrives) {
  // tput reads the terminal's size from the pty and writes terminfo escapes: clear screen,
  // cursor addressing, reverse video.
  LiveProcessSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "tput clear; tput cup 5 10; tput rev; printf HELLO; tput sgr0; "
               "echo; tput lines; tput cols; echo $TERM"};
  spec.pty = isolate::PtySize{132, 43};
  auto p = sb_->Start(spec);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  std::string out = ReadAll(p->pty.get());
  EXPECT_NE(out.find("\x1b[H\x1b[2J"), std::string::npos) << out;  // clear
  EXPECT_NE(out.find("\x1b[6;11H"), std::string::npos) << out;     // cup 5 10
  EXPECT_NE(out.find("\x1b[7mHELLO"), std::string::npos) << out;   // rev
  EXPECT_NE(out.find("43\r\n132\r\n"), std::string::npos) << out;  // lines, cols (onlcr)
  EXPECT_NE(out.find("xterm-256color"), std::string::npos) << out;
  ASSERT_TRUE(Readable(p->done.get(), 20'000));
  EXPECT_EQ(sb_->ResultOf(p->id)->exit_code, 0);
}

TEST_F(LivePtyTest, InputAndInterruptThroughTheTerminal) {
  // ^C typed on the terminal reaches the foreground group through the line discipline. (Short
  // sleeps: a SIGINT that reaches the shell between two commands runs its trap only after the
  // next one ends.)
  LiveProcessSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "trap 'echo interrupted; exit 3' INT; echo ready; read x; echo got-$x; "
               "while :; do sleep 0.05; done"};
  spec.pty = isolate::PtySize{80, 24};
  auto p = sb_->Start(spec);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  ASSERT_NE(ReadUntil(p->pty.get(), "ready").find("ready"), std::string::npos);
  ASSERT_EQ(::write(p->pty.get(), "typed\n", 6), 6);
  ASSERT_NE(ReadUntil(p->pty.get(), "got-typed").find("got-typed"), std::string::npos);
  ASSERT_EQ(::write(p->pty.get(), "\x03", 1), 1);
  std::string out = ReadUntil(p->pty.get(), "interrupted");
  EXPECT_NE(out.find("interrupted"), std::string::npos) << out;
  ASSERT_TRUE(Readable(p->done.get(), 20'000));
  EXPECT_EQ(sb_->ResultOf(p->id)->exit_code, 3);
  // Resize once ended is refused.
  EXPECT_EQ(sb_->Resize(p->id, {80, 24}).error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sbx::testing
