// What a command's words run, seen through the programs that only run another one (sudo, env,
// nice, timeout, xargs …). Internal to the policy library: protections and risk share it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sbx::policy::internal {

// "rm" for "/usr/bin/rm" and for "rm".
std::string_view Basename(std::string_view path);

struct ProgramView {
  // Basenames of the wrappers looked through, outermost first: {"sudo", "env"}.
  std::vector<std::string_view> wrappers;
  // Went through sudo, doas, pkexec, run0 or is su.
  bool privileged = false;
  // Index in words of the program finally run; words.size() when the words run no program
  // (`command -v x`, a bare `sudo -l`) or run a shell string instead (`env -S '…'`).
  size_t program = 0;
  // A command line the words hand to a shell: sh -c S, bash -lc S, su -c S, eval A B, flock F -c
  // S, env -S S, watch A B.
  std::optional<std::string> shell_string;
};

// Leading NAME=value words are looked through as well.
ProgramView Look(const std::vector<std::string>& words);

enum class Interpreter { kNone, kShell, kPython, kPerl, kRuby, kNode };

// sh, bash, dash, zsh, ksh, mksh, ash, yash, posh, busybox-style names; python, python3,
// python3.12, pypy3; perl; ruby; node, nodejs, deno, bun.
Interpreter InterpreterOf(std::string_view basename);

// True when words[program] is an interpreter that would read its program from standard input
// (no -c/-e/-m, no script file, or the script "-"), as in `curl … | sh`.
bool ReadsProgramFromStdin(const std::vector<std::string>& words, size_t program);

}  // namespace sbx::policy::internal
