// sandboxctl: the command-line client of the sandboxd API (HTTP/1.1 and WebSocket over a Unix
// socket or TCP). Global options, the command table and the help texts live here; the
// commands are in commands.cc, run_command.cc and sandbox_*.cc, the protocol in client.cc.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "api/sandboxctl/args.h"
#include "api/sandboxctl/client.h"
#include "api/sandboxctl/commands.h"
#include "api/sandboxctl/sandbox_args.h"

#ifndef SBX_CTL_VERSION
#define SBX_CTL_VERSION "0"
#endif

namespace sbx::ctl {
namespace {

constexpr char kUsage[] = R"(Usage: sandboxctl [--host ADDR] [--api-key KEY] [--json] COMMAND [ARGS]

The client of sandboxd: submit commands to run in sandboxes, review them, follow their output.

Commands:
  run [OPTIONS] -- ARGV…      submit a run, wait for review, stream its output, exit with its status
  ps                          list runs (active ones; --all for every state)
  inspect ID                  show one run
  logs [-f] ID                print a run's output (-f: follow it until the run ends)
  approve ID…                 approve runs waiting for review (reviewer role)
  reject ID… [--reason R]     reject runs waiting for review (reviewer role)
  cancel ID…                  cancel runs (a running sandbox is killed)
  project ls|show|create|rm   projects: a directory, its defaults, the keys that may use it
  plan PROJECT INTENT…        plan an intent ("run the tests") for a project; run --plan runs it
  job ls                      the allowlisted jobs this key may start; run --job starts one
  node ls|drain|resume        the daemons sharing the database (reviewer, admin role)
  runner add|show|revoke      outbound runners' tokens (admin role)
  changes ID                  what a copy-on-write run would write into its host directory
  apply ID                    write those changes into the host directory (reviewer role)
  artifacts ls|get …          list or download a run's artifacts
  audit [--run ID]            show the audit trail (reviewer role)
  policy test "CMD"           ask the command policy what it would decide
  info                        the daemon's limits and isolation
  sandbox create|ls|inspect|rm|pause|resume|approve|reject|exec|shell|cp|logs|watch …
                              long-lived sandboxes: start processes, open a shell, copy files
  version                     sandboxctl's version
  help [COMMAND [SUBCOMMAND]] this text, or a command's

Global options (before or after the command):
  --host ADDR      unix:/PATH or HOST:PORT (default: $SANDBOXD_HOST, else unix:/run/sandboxd/api.sock)
  --api-key KEY    the API key (default: $SANDBOXD_API_KEY)
  --json           print the API's JSON instead of text
  -h, --help       help

Exit status: 0 success, 1 the operation failed, 2 usage error; `run` exits with the run's status.
)";

constexpr char kRunUsage[] = R"(Usage: sandboxctl run [OPTIONS] -- ARGV…
       sandboxctl run [OPTIONS] --step NAME=CMD [--step NAME=CMD]…
       sandboxctl run --plan PLAN_ID [--idempotency-key K] [--no-follow]
       sandboxctl run --job NAME [--param K=V]… [--idempotency-key K] [--no-follow]

Submits a run, says on stderr when it waits for review (and how a reviewer approves it), then
streams its stdout and stderr to ours, byte for byte, until it ends.

Options:
  --step NAME=CMD         a named step (repeatable; the steps run in order, in one sandbox). CMD is
                          split into words like a shell would (quotes, backslashes), nothing is
                          expanded: use sh -c '…' for shell features
  --cpus N                CPU limit (e.g. 0.5, 2)
  --memory SIZE           memory limit (e.g. 256m, 1g)
  --pids N                process limit
  --timeout DURATION      wall-clock limit: seconds, or 30s, 5m, 1h
  --env K=V               an environment variable (repeatable); --env K passes this shell's value
  --label K=V             a label (repeatable; `ps --label K=V` filters on it)
  --workspace PATH[:ro|:cow]
                          a workspace directory, if the daemon allows it
  --project NAME          run as a run of this project (its directory and defaults)
  --plan PLAN_ID          run a plan as it is (see 'sandboxctl plan')
  --job NAME              start an allowlisted job (see 'sandboxctl job ls')
  --param K=V             a job's parameter (repeatable)
  --stdin FILE|-          bytes for the run's stdin (text: the API takes UTF-8)
  --idempotency-key K     submitting again with the same key returns the same run
  --node-selector K=V     run only on a node with this label (repeatable: all of them; see
                          'sandboxctl node ls')
  --retry-on-node-loss    when its node is lost mid-run, queue it again (needs
                          --idempotency-key) instead of failing it
  --no-follow             print the run's ID (or its JSON with --json) and return at once
  --cancel-on-interrupt   Ctrl-C cancels the run (a second Ctrl-C detaches); without it, Ctrl-C
                          only detaches and the run goes on
  -q, --quiet             no notices of our own on stderr (waiting for review, approved)
  --json                  print each event as one line of JSON instead of the output

Exit status: the run's exit code; 128+N when it was killed by signal N; 125 when it did not run
to a status of its own (setup failed, rejected, cancelled) or could not be submitted or
followed; 2 for a usage error; 130 when Ctrl-C detached from it.
)";

constexpr char kPsUsage[] = R"(Usage: sandboxctl ps [--state S]… [--label K=V]… [--limit N] [--all]

Lists runs, newest first: ID, STATE, SUBMITTER, AGE, COMMAND, EXIT. Without --state, only runs
that have not ended (PENDING, PLANNED, AWAITING_REVIEW, QUEUED, RUNNING).
  --state S     SUCCEEDED, FAILED, CANCELLED, RUNNING, … (repeatable: any of them)
  --label K=V   only runs with this label (repeatable: all of them)
  --limit N     at most N runs (default 50; with --all, no limit)
  --all         runs in every state
)";

constexpr char kInspectUsage[] = R"(Usage: sandboxctl inspect [--json] ID

Shows a run: command, limits, review, timestamps, result of each step.
)";

constexpr char kLogsUsage[] =
    R"(Usage: sandboxctl logs [-f] [--tail N] [--stream stdout|stderr|all] ID

Prints a run's output. With --stream all (the default), stdout and stderr are interleaved in the
order they were produced, all on our stdout.
  -f, --follow   keep printing as the run writes, until it ends
  --tail N       only the last N lines
  --stream S     stdout, stderr or all
)";

constexpr char kApproveUsage[] = R"(Usage: sandboxctl approve ID…

Approves runs waiting for review (needs the reviewer or admin role; nobody approves their own run).
)";

constexpr char kRejectUsage[] = R"(Usage: sandboxctl reject [--reason R] ID…

Rejects runs waiting for review (reviewer or admin role); they end CANCELLED.
)";

constexpr char kChangesUsage[] = R"(Usage: sandboxctl changes ID

Shows what a copy-on-write run would write into its host directory: each path it made, replaced
or removed, and what keeps the set from being applied.
)";

constexpr char kApplyUsage[] = R"(Usage: sandboxctl apply [--diff-sha256 HASH] [-q] ID

Writes a succeeded copy-on-write run's changes into the host directory it ran on (reviewer or
admin role; not the run's submitter; once). Without --diff-sha256 it shows the changes first and
applies only the diff it showed. When a host file changed since the run started, nothing is
written: each conflict is listed and the exit status is 1.
  --diff-sha256 HASH   apply only if the run's diff.patch has this sha256 (the one you read)
  -q, --quiet          do not list the changes first
)";

constexpr char kProjectUsage[] = R"(Usage: sandboxctl project ls
       sandboxctl project show NAME
       sandboxctl project create NAME --root DIR [--member KEY]… [--mode ro|cow] [--memory SIZE]
                                      [--timeout DURATION] [--label K=V]…   (admin role)
       sandboxctl project rm NAME                                           (admin role)

A project is a directory under the daemon's workspace roots with the defaults its runs inherit
and the API keys that may use it.
)";

constexpr char kProjectLsUsage[] = R"(Usage: sandboxctl project ls

The projects this key may use (every project for reviewers and admins).
)";

constexpr char kProjectShowUsage[] = R"(Usage: sandboxctl project show NAME
)";

constexpr char kProjectCreateUsage[] = R"(Usage: sandboxctl project create NAME --root DIR [OPTIONS]

Creates a project (admin role).
  --root DIR          its directory (under the daemon's workspace roots)
  --repo URL|PATH     a repository instead of, or besides, a directory
  --member KEY        an API key name that may use it (repeatable)
  --mode ro|cow       how its runs see the directory (default ro)
  --memory SIZE       its runs' default memory limit
  --timeout DURATION  its runs' default wall-clock limit
  --label K=V         a label its runs get (repeatable)
)";

constexpr char kProjectRmUsage[] = R"(Usage: sandboxctl project rm NAME

Deletes a project and its plans (admin role); its runs stay.
)";

constexpr char kPlanUsage[] = R"(Usage: sandboxctl plan PROJECT INTENT…

Plans an intent, in English or Chinese ("run the tests and give me a report", "运行测试并生成报告"),
for a project: the steps its own tooling takes, each with the command policy's decision. Run the
plan with: sandboxctl run --plan PLAN_ID
)";

constexpr char kJobUsage[] = R"(Usage: sandboxctl job ls

The allowlisted jobs this key may start, with their parameters. Start one with:
  sandboxctl run --job NAME --param K=V…
)";

constexpr char kNodeUsage[] = R"(Usage: sandboxctl node ls                (reviewer or admin role)
       sandboxctl node drain NAME        (admin role)
       sandboxctl node resume NAME       (admin role)

The daemons sharing the database. A drained node finishes what it runs and takes nothing new
until it is resumed; a lost one stopped beating, and its runs were ended or queued again.
)";

constexpr char kNodeLsUsage[] = R"(Usage: sandboxctl node ls

Every node: its state (ready, draining, lost), what it runs of its capacity, its last beat, its
version and labels.
)";

constexpr char kNodeDrainUsage[] = R"(Usage: sandboxctl node drain NAME

The node finishes the runs it has and claims no new one until 'sandboxctl node resume NAME'.
)";

constexpr char kNodeResumeUsage[] = R"(Usage: sandboxctl node resume NAME

A drained node takes work again.
)";

constexpr char kRunnerUsage[] = R"(Usage: sandboxctl runner add NAME       (admin role)
       sandboxctl runner show NAME      (admin role)
       sandboxctl runner revoke NAME    (admin role)

Outbound runners: daemons with no listener that dial a serve node
(sandboxd runner --connect wss://HOST/v1/runners --token-file FILE) and run the runs routed to
them (node_selector runner=true, or node=NAME). 'add' issues a runner its token, shown once (a
runner that has one gets a new one, and the old one stops working); 'revoke' ends its link and
refuses its token from then on. While connected, a runner is listed by 'sandboxctl node ls'.
)";

constexpr char kRunnerAddUsage[] = R"(Usage: sandboxctl runner add NAME

Issues runner NAME a token (printed once; the daemon keeps its SHA-256 only).
)";

constexpr char kRunnerShowUsage[] = R"(Usage: sandboxctl runner show NAME

Whether the runner's token is active, who issued it, and how many of its records were committed.
)";

constexpr char kRunnerRevokeUsage[] = R"(Usage: sandboxctl runner revoke NAME

Refuses the runner's token from now on and ends its link; the runs it had are ended or queued
again once it has been away for node_timeout_ms, like those of a lost node.
)";

constexpr char kCancelUsage[] = R"(Usage: sandboxctl cancel ID…

Cancels runs that have not ended; a running sandbox and everything in it is killed.
)";

constexpr char kArtifactsUsage[] = R"(Usage: sandboxctl artifacts ls ID
       sandboxctl artifacts get ID NAME [-o FILE|-]

ls lists a run's artifacts (name, size, SHA-256). get downloads one: to FILE, to stdout with
-o -, else to NAME below the current directory (to its last path segment when NAME is absolute
or has a '..' segment; nothing is written outside the current directory).
)";

constexpr char kAuditUsage[] = R"(Usage: sandboxctl audit [--run ID]

Shows the audit trail, oldest first (reviewer or admin role).
)";

constexpr char kPolicyUsage[] = R"(Usage: sandboxctl policy test "COMMAND"
       sandboxctl policy test -- ARGV…

Asks the daemon's command policy what it would decide for a command (allow, review or deny),
with the risk, the rule that matched and the reasons. Nothing is run.
)";

constexpr char kInfoUsage[] = R"(Usage: sandboxctl info

Shows the daemon's node name, backends, default and maximum limits and how runs are isolated.
)";

constexpr char kSandboxUsage[] = R"(Usage: sandboxctl sandbox SUBCOMMAND [ARGS]

Long-lived sandboxes: created once, then processes started in them, files copied in and out and
terminals opened, until they are removed or time out. Creating one passes the command policy's
sandboxes section (larger than it allows: a reviewer approves it).

Subcommands:
  create [OPTIONS]               create a sandbox; prints its ID
  ls [--state S] [--label K=V]   list sandboxes
  inspect ID                     show a sandbox and its live figures
  rm ID…                         end sandboxes (everything in them is killed)
  pause ID… / resume ID…         freeze and thaw every process in sandboxes
  approve ID… [--process PID]    approve sandboxes (or a process) waiting for review
  reject ID… [--process PID]     reject them, with --reason TEXT
  exec ID [OPTIONS] -- ARGV…     run a command, print its output, exit with its status
  shell ID [--cmd CMD]           an interactive terminal in a sandbox
  cp [-r] SRC DST                copy files in (LOCAL ID:PATH) or out (ID:PATH LOCAL)
  logs ID PID|TAG [-f]           print a process's output
  watch ID PATH                  print changes below a path as they happen
  snapshot ID NAME               save a sandbox's files as a snapshot (create --from-snapshot)
  snapshots / snapshot-rm NAME…  list and delete your snapshots

See 'sandboxctl help sandbox SUBCOMMAND'.
)";

constexpr char kSandboxCreateUsage[] = R"(Usage: sandboxctl sandbox create [OPTIONS]

Creates a sandbox and prints its ID (with --json, the sandbox). When the policy sends it to
review, or it did not start, its state and the policy's reasons follow on stderr.

Options:
  --cpus N                  CPU limit (e.g. 0.5, 2)
  -m, --memory SIZE         memory limit: bytes, or 512m, 1g, 512MiB, 1GiB
  --pids N                  process limit
  --timeout DURATION        the sandbox's lifetime: seconds, or 30s, 5m, 1h
  --idle-timeout DURATION   it ends after this long with no process running and no API call
  -w, --workspace PATH[:ro|:cow|:rw]
                            a host directory at /workspace (read-only unless :cow or :rw)
  -l, --label K=V           a label (repeatable; `sandbox ls --label K=V` filters on it)
  -e, --env K=V             an environment variable of every process (repeatable); --env K
                            passes this shell's value
  --backend NAME            native, docker or auto
  --image IMAGE             the image (docker backend)
  --idempotency-key K       creating again with the same key returns the same sandbox
  --from-snapshot NAME      start with the files of one of your snapshots (sandbox snapshot)
  -q, --quiet               no notices on stderr
)";

constexpr char kSandboxSnapshotUsage[] = R"(Usage: sandboxctl sandbox snapshot ID NAME

Saves the sandbox's /tmp, /artifacts and copy-on-write /workspace (files, not memory or
processes) as snapshot NAME: 1 to 64 letters, digits, '.', '_' or '-'. `sandbox create
--from-snapshot NAME` starts a new sandbox with those files.
)";

constexpr char kSandboxSnapshotsUsage[] = R"(Usage: sandboxctl sandbox snapshots

Lists your snapshots, newest first: NAME, ID, FROM (the sandbox), AGE, BYTES.
)";

constexpr char kSandboxSnapshotRmUsage[] = R"(Usage: sandboxctl sandbox snapshot-rm NAME…

Deletes snapshots (by name or id).
)";

constexpr char kSandboxLsUsage[] =
    R"(Usage: sandboxctl sandbox ls [--state S]… [--label K=V]… [--limit N]

Lists sandboxes, newest first: ID, STATE, AGE, LABELS (every page of the answer).
  --state S     RUNNING, PAUSED, AWAITING_REVIEW, STOPPED, FAILED, … (repeatable: any of them)
  -l, --label K=V   only sandboxes with this label (repeatable: all of them)
  -n, --limit N     at most N sandboxes
)";

constexpr char kSandboxInspectUsage[] = R"(Usage: sandboxctl sandbox inspect ID

Shows a sandbox: state, limits, workspace, labels, policy decision, times, and while it runs its
live figures (CPU time, memory, pids, processes).
)";

constexpr char kSandboxRmUsage[] = R"(Usage: sandboxctl sandbox rm ID…

Ends sandboxes from any state; every process in them is killed. Their records, the processes'
results and logs stay.
)";

constexpr char kSandboxPauseUsage[] = R"(Usage: sandboxctl sandbox pause ID…

Freezes every process in sandboxes (cgroup freezer); `sandbox resume` thaws them.
)";

constexpr char kSandboxResumeUsage[] = R"(Usage: sandboxctl sandbox resume ID…

Thaws the processes of paused sandboxes.
)";

constexpr char kSandboxApproveUsage[] = R"(Usage: sandboxctl sandbox approve ID…
       sandboxctl sandbox approve ID --process PID|TAG

Approves sandboxes waiting for review, which then start; with --process, a process of sandbox ID
waiting for review, which then runs. Needs the reviewer or admin role; nobody approves their own.

Options:
  -p, --process PID|TAG   the process to approve (an id or a tag) instead of the sandbox
)";

constexpr char kSandboxRejectUsage[] =
    R"(Usage: sandboxctl sandbox reject [--reason TEXT] ID…
       sandboxctl sandbox reject [--reason TEXT] ID --process PID|TAG

Rejects sandboxes waiting for review (they end FAILED) or, with --process, a process of sandbox ID
waiting for review (it ends REJECTED). Reviewer or admin role.

Options:
  -p, --process PID|TAG   the process to reject (an id or a tag) instead of the sandbox
  --reason TEXT           why; it ends up in the reason the submitter sees
)";

constexpr char kSandboxExecUsage[] =
    R"(Usage: sandboxctl sandbox exec ID [OPTIONS] -- ARGV…

Runs ARGV in the sandbox and waits for it: its stdout and stderr go to ours, byte for byte, and
sandboxctl exits with its status. When the command policy sends it to review, that is said on
stderr and its output follows once a reviewer approved it.

Options:
  -t, --tag T           a name for the process (`sandbox logs ID T` finds the newest with it)
  --timeout DURATION    its wall-clock limit: seconds, or 30s, 5m, 1h
  -e, --env K=V         an environment variable (repeatable); --env K passes this shell's value
  --cwd DIR             its working directory (default /workspace when there is one, else /)
  --stdin FILE|-        bytes for its stdin
  -d, --detach          start it and print its process id instead of waiting
  -q, --quiet           no notices of our own on stderr
  --json                print the process (with its output) as JSON instead

Exit status: the process's exit code; 128+N when signal N ended it; 125 when it has no status
of its own (rejected, setup failed) or sandboxctl could not start or follow it; 2 for a usage
error. Ctrl-C leaves the process running.
)";

constexpr char kSandboxShellUsage[] =
    R"(Usage: sandboxctl sandbox shell ID [--cmd CMD] [--cwd DIR] [-e K=V]…

Opens a terminal in the sandbox: CMD (default /bin/sh, split into words like a shell would) runs
on a pty of our terminal's size, and our terminal is joined to it in raw mode (Ctrl-C, Ctrl-Z go
to the program) until it exits; window size changes follow. Without a terminal, our stdin is
sent as it is and its end ends the session. The terminal's settings are restored however
sandboxctl ends. Exits with the program's status.
)";

constexpr char kSandboxCpUsage[] = R"(Usage: sandboxctl sandbox cp [-r] LOCAL ID:PATH
       sandboxctl sandbox cp [-r] ID:PATH LOCAL

Copies a file into a sandbox or out of it, byte for byte (its permission bits too); into an
existing directory it keeps its name. With -r, a directory: as a tar stream, its files,
directories and symbolic links (never followed). LOCAL "-" is our stdin or stdout (a directory
then comes out as a tar stream). An operand is local when it starts with / or ., or has a /
before its first ':'.
  -r, --recursive   copy directories
)";

constexpr char kSandboxLogsUsage[] =
    R"(Usage: sandboxctl sandbox logs [-f] [--stream stdout|stderr] ID PID|TAG

Prints a process's stored output, also after it ended: its stdout to ours and its stderr to
ours; with --stream, that one stream to our stdout. PID is the process's id or its tag.
  -f, --follow   keep printing as it writes, until it ends
  --json         the output as JSON (with -f, its events, one a line)
)";

constexpr char kSandboxWatchUsage[] = R"(Usage: sandboxctl sandbox watch ID PATH

Prints a line for each change below PATH in the sandbox (created, modified, deleted, moved)
until interrupted; with --json, each event as JSON.
)";

constexpr char kVersionUsage[] = R"(Usage: sandboxctl version

Prints sandboxctl's version.
)";

int CmdVersion(Context& ctx, const ParsedArgs&) {
  if (ctx.json) {
    PrintJson({{"version", SBX_CTL_VERSION}});
  } else {
    (void)WriteOut(1, std::string("sandboxctl ") + SBX_CTL_VERSION + "\n");
  }
  return 0;
}

struct Command {
  const char* name;
  const char* usage;
  std::vector<OptionSpec> options;
  bool stop_at_positional;  // `run`: the first non-option starts ARGV
  int (*fn)(Context&, const ParsedArgs&);
  // What follows "--" stays ParsedArgs::rest (an ARGV) instead of joining the positionals.
  bool keeps_rest = false;
  // A command of subcommands (`sandbox`): its first argument names one, fn is unused.
  std::vector<Command> subcommands = {};
};

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"run",
       kRunUsage,
       {{"step", 0, true},
        {"cpus", 0, true},
        {"memory", 0, true},
        {"pids", 0, true},
        {"timeout", 0, true},
        {"env", 'e', true},
        {"label", 'l', true},
        {"workspace", 0, true},
        {"stdin", 0, true},
        {"idempotency-key", 0, true},
        {"node-selector", 0, true},
        {"retry-on-node-loss", 0, false},
        {"project", 0, true},
        {"plan", 0, true},
        {"job", 0, true},
        {"param", 0, true},
        {"no-follow", 0, false},
        {"cancel-on-interrupt", 0, false},
        {"quiet", 'q', false}},
       true,
       CmdRun},
      {"ps",
       kPsUsage,
       {{"state", 0, true}, {"label", 'l', true}, {"limit", 'n', true}, {"all", 'a', false}},
       false,
       CmdPs},
      {"inspect", kInspectUsage, {}, false, CmdInspect},
      {"logs",
       kLogsUsage,
       {{"follow", 'f', false}, {"tail", 0, true}, {"stream", 0, true}},
       false,
       CmdLogs},
      {"approve", kApproveUsage, {}, false, CmdApprove},
      {"reject", kRejectUsage, {{"reason", 0, true}}, false, CmdReject},
      {"cancel", kCancelUsage, {}, false, CmdCancel},
      {"changes", kChangesUsage, {}, false, CmdChanges},
      {"project",
       kProjectUsage,
       {},
       false,
       nullptr,
       false,
       {
           {"ls", kProjectLsUsage, {}, false, CmdProjectLs},
           {"show", kProjectShowUsage, {}, false, CmdProjectShow},
           {"create",
            kProjectCreateUsage,
            {{"root", 0, true},
             {"repo", 0, true},
             {"member", 'm', true},
             {"mode", 0, true},
             {"memory", 0, true},
             {"timeout", 0, true},
             {"label", 'l', true}},
            false,
            CmdProjectCreate},
           {"rm", kProjectRmUsage, {}, false, CmdProjectRm},
       }},
      {"plan", kPlanUsage, {}, false, CmdPlan},
      {"job", kJobUsage, {}, false, nullptr, false, {{"ls", kJobUsage, {}, false, CmdJobLs}}},
      {"node",
       kNodeUsage,
       {},
       false,
       nullptr,
       false,
       {{"ls", kNodeLsUsage, {}, false, CmdNodeLs},
        {"drain", kNodeDrainUsage, {}, false, CmdNodeDrain},
        {"resume", kNodeResumeUsage, {}, false, CmdNodeResume}}},
      {"runner",
       kRunnerUsage,
       {},
       false,
       nullptr,
       false,
       {{"add", kRunnerAddUsage, {}, false, CmdRunnerAdd},
        {"show", kRunnerShowUsage, {}, false, CmdRunnerShow},
        {"revoke", kRunnerRevokeUsage, {}, false, CmdRunnerRevoke}}},
      {"apply", kApplyUsage, {{"diff-sha256", 0, true}, {"quiet", 'q', false}}, false, CmdApply},
      {"artifacts", kArtifactsUsage, {{"output", 'o', true}}, false, CmdArtifacts},
      {"audit", kAuditUsage, {{"run", 0, true}}, false, CmdAudit},
      {"policy", kPolicyUsage, {}, false, CmdPolicy, true},
      {"info", kInfoUsage, {}, false, CmdInfo},
      {"sandbox",
       kSandboxUsage,
       {},
       false,
       nullptr,
       false,
       {
           {"create", kSandboxCreateUsage, SandboxCreateOptions(), false, CmdSandboxCreate},
           {"ls", kSandboxLsUsage, SandboxLsOptions(), false, CmdSandboxLs},
           {"inspect", kSandboxInspectUsage, {}, false, CmdSandboxInspect},
           {"rm", kSandboxRmUsage, {}, false, CmdSandboxRm},
           {"pause", kSandboxPauseUsage, {}, false, CmdSandboxPause},
           {"resume", kSandboxResumeUsage, {}, false, CmdSandboxResume},
           {"approve", kSandboxApproveUsage, {{"process", 'p', true}}, false, CmdSandboxApprove},
           {"reject",
            kSandboxRejectUsage,
            {{"process", 'p', true}, {"reason", 0, true}},
            false,
            CmdSandboxReject},
           {"exec", kSandboxExecUsage, SandboxExecOptions(), false, CmdSandboxExec, true},
           {"shell", kSandboxShellUsage, SandboxShellOptions(), false, CmdSandboxShell},
           {"cp", kSandboxCpUsage, SandboxCpOptions(), false, CmdSandboxCp},
           {"logs", kSandboxLogsUsage, SandboxLogsOptions(), false, CmdSandboxLogs},
           {"watch", kSandboxWatchUsage, {}, false, CmdSandboxWatch},
           {"snapshot", kSandboxSnapshotUsage, {}, false, CmdSandboxSnapshot},
           {"snapshots", kSandboxSnapshotsUsage, {}, false, CmdSandboxSnapshots},
           {"snapshot-rm", kSandboxSnapshotRmUsage, {}, false, CmdSandboxSnapshotRm},
       }},
      {"version", kVersionUsage, {}, false, CmdVersion},
  };
  return kCommands;
}

const Command* FindCommand(const std::vector<Command>& commands, std::string_view name) {
  for (const auto& c : commands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

const Command* FindCommand(std::string_view name) { return FindCommand(Commands(), name); }

const std::vector<OptionSpec> kGlobalOptions = {
    {"host", 0, true}, {"api-key", 0, true}, {"json", 0, false}, {"help", 'h', false}};

int UsageError(const std::string& message) {
  std::fprintf(stderr, "sandboxctl: %s\nsee 'sandboxctl help'\n", message.c_str());
  return kExitUsage;
}

bool ValidHeaderValue(std::string_view v) {
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7F) return false;
  }
  return true;
}

int Main(std::vector<std::string> args) {
  std::string host, api_key;
  bool host_given = false, key_given = false;
  if (const char* h = std::getenv("SANDBOXD_HOST"); h != nullptr && *h != '\0') {
    host = h;
    host_given = true;
  }
  if (const char* k = std::getenv("SANDBOXD_API_KEY"); k != nullptr && *k != '\0') {
    api_key = k;
    key_given = true;
  }
  // Global options before the command.
  size_t i = 0;
  std::vector<std::string> leading;
  while (i < args.size() && args[i].size() > 1 && args[i][0] == '-' && args[i] != "--") {
    leading.push_back(args[i]);
    bool needs_value = args[i] == "--host" || args[i] == "--api-key";
    if (needs_value && i + 1 < args.size()) leading.push_back(args[++i]);
    ++i;
  }
  auto globals = ParseArgs(leading, kGlobalOptions, false);
  if (!globals.ok()) return UsageError(globals.error().message);
  if (i >= args.size()) {
    if (globals->Has("help")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string name = args[i];
  std::vector<std::string> rest(args.begin() + static_cast<ptrdiff_t>(i) + 1, args.end());
  if (name == "help") {
    if (rest.empty()) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    const Command* c = FindCommand(rest[0]);
    if (c == nullptr) return UsageError("unknown command '" + rest[0] + "'");
    if (rest.size() > 1 && !c->subcommands.empty()) {
      const Command* sub = FindCommand(c->subcommands, rest[1]);
      if (sub == nullptr) return UsageError("unknown command '" + rest[0] + " " + rest[1] + "'");
      c = sub;
    }
    std::fputs(c->usage, stdout);
    return 0;
  }
  const Command* cmd = FindCommand(name);
  if (cmd == nullptr) return UsageError("unknown command '" + name + "'");
  Context ctx;
  ctx.command = name;
  if (!cmd->subcommands.empty()) {
    // Global options may come before the subcommand too: `sandbox --json ls`.
    size_t k = 0;
    std::vector<std::string> before;
    while (k < rest.size() && rest[k].size() > 1 && rest[k][0] == '-' && rest[k] != "--") {
      before.push_back(rest[k]);
      if ((rest[k] == "--host" || rest[k] == "--api-key") && k + 1 < rest.size()) {
        before.push_back(rest[++k]);
      }
      ++k;
    }
    auto more = ParseArgs(before, kGlobalOptions, false);
    if (!more.ok()) return ReportUsage(ctx, more.error().message);
    if (k >= rest.size()) {
      if (more->Has("help") || globals->Has("help")) {
        std::fputs(cmd->usage, stdout);
        return 0;
      }
      std::fputs(cmd->usage, stderr);
      return kExitUsage;
    }
    const Command* sub = FindCommand(cmd->subcommands, rest[k]);
    if (sub == nullptr) {
      return ReportUsage(ctx, "unknown subcommand '" + rest[k] + "'");
    }
    for (const auto& [opt, values] : more->options) {
      for (const auto& v : values) globals->options[opt].push_back(v);
    }
    ctx.command = name + " " + sub->name;
    rest.erase(rest.begin(), rest.begin() + static_cast<ptrdiff_t>(k) + 1);
    cmd = sub;
  }

  std::vector<OptionSpec> specs = cmd->options;
  specs.insert(specs.end(), kGlobalOptions.begin(), kGlobalOptions.end());
  auto parsed = ParseArgs(rest, specs, cmd->stop_at_positional);
  if (!parsed.ok()) return ReportUsage(ctx, parsed.error().message);
  if (globals->Has("help") || parsed->Has("help")) {
    std::fputs(cmd->usage, stdout);
    return 0;
  }
  for (const ParsedArgs* p : {&*globals, &*parsed}) {
    if (auto h = p->Last("host")) {
      host = *h;
      host_given = true;
    }
    if (auto k = p->Last("api-key")) {
      api_key = *k;
      key_given = !k->empty();
    }
    ctx.json = ctx.json || p->Has("json");
  }
  if (!cmd->stop_at_positional && parsed->has_rest && !cmd->keeps_rest) {
    // `--` only matters to commands that take an ARGV.
    parsed->positional.insert(parsed->positional.end(), parsed->rest.begin(), parsed->rest.end());
    parsed->rest.clear();
  }
  auto endpoint = ParseEndpoint(host_given ? host : kDefaultEndpoint);
  if (!endpoint.ok()) return ReportUsage(ctx, "--host " + endpoint.error().message);
  if (!ValidHeaderValue(api_key)) return ReportUsage(ctx, "the API key has control characters");
  Client client(std::move(*endpoint), api_key);
  ctx.client = &client;
  ctx.api_key_given = key_given;
  try {
    return cmd->fn(ctx, *parsed);
  } catch (const std::exception& e) {
    // The renderers read the API's JSON with nlohmann::json, which throws on a shape it did not
    // expect (a newer or broken server); say so instead of aborting.
    std::fprintf(stderr, "sandboxctl: unexpected answer from the server: %s\n", e.what());
    return kExitError;
  }
}

}  // namespace
}  // namespace sbx::ctl

int main(int argc, char** argv) {
  return sbx::ctl::Main(std::vector<std::string>(argv + 1, argv + argc));
}
