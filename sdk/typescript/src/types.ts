// The API's objects as JSON (api/v1/openapi.yaml). Fields the daemon may add later are allowed
// through the index signatures; times are milliseconds since the epoch.

export type StringMap = Record<string, string>;
/** A positive number of bytes, or a size such as "256m". */
export type ByteSize = number | string;

// ---- Runs ---------------------------------------------------------------------------------

export type RunState =
  | 'PENDING'
  | 'PLANNED'
  | 'AWAITING_REVIEW'
  | 'QUEUED'
  | 'RUNNING'
  | 'SUCCEEDED'
  | 'FAILED'
  | 'CANCELLED';

export interface RunLimitsRequest {
  cpus?: number;
  memory?: ByteSize;
  pids?: number;
  timeout_s?: number;
  output_bytes?: ByteSize;
}

export type Workspace = string | { path: string; mode?: 'ro' | 'cow' };

export interface RunRequest {
  argv?: string[];
  steps?: { name?: string; argv: string[] }[];
  limits?: RunLimitsRequest;
  network?: 'none';
  seccomp_profile?: string;
  env?: StringMap;
  stdin?: string;
  labels?: StringMap;
  workspace?: Workspace;
  idempotency_key?: string;
  backend?: 'native' | 'docker' | 'auto';
  image?: string;
  /** A project (its id or name): the run inherits its limits, workspace and labels where the
   * request leaves them out. */
  project?: string;
}

export interface PolicyRule {
  file: string;
  line: number;
  pattern: string;
}

export interface PolicyDecision {
  decision: 'allow' | 'review' | 'deny';
  risk: 'low' | 'medium' | 'high';
  reasons: { code: string; message: string }[];
  rule: PolicyRule | null;
  rule_set: string | null;
  protection: string | null;
  command: string;
  step: number | null;
  [k: string]: unknown;
}

export interface StepResult {
  name: string;
  reason: string;
  exit_code: number | null;
  signal: string | null;
  wall_ms: number;
  cpu_ms: number;
  memory_peak_bytes: number;
  seccomp_denials?: { syscall: string; count: number }[];
  [k: string]: unknown;
}

export interface RunResult extends StepResult {
  steps: StepResult[];
  output_truncated: boolean;
}

export interface Run {
  id: string;
  state: RunState;
  submitter: string;
  argv?: string[];
  steps?: { name: string; argv: string[] }[];
  labels: StringMap;
  env: StringMap;
  policy: PolicyDecision | null;
  approval: { approved_by: string; approved_at_ms: number; rule: string } | null;
  node: string | null;
  backend: string;
  created_at_ms: number;
  queued_at_ms: number | null;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  result: RunResult | null;
  /** The run's project, or null. */
  project_id?: string | null;
  [k: string]: unknown;
}

export interface RunList {
  runs: Run[];
  next_cursor: string | null;
}

/** An event of a run (`run.status`, `step.started`, `step.log`, `step.finished`,
 * `artifact.created`, `run.completed`). A `step.log` event's bytes are in `data` (a Buffer). */
export interface RunEvent {
  type: string;
  run_id: string;
  seq: number;
  ts: number;
  cursor: number;
  state?: RunState;
  reason?: string;
  exit_code?: number | null;
  step?: string;
  stream?: 'stdout' | 'stderr';
  offset?: number;
  length?: number;
  data?: Buffer;
  [k: string]: unknown;
}

export interface Artifact {
  name: string;
  size: number;
  sha256: string;
}

export interface ArtifactList {
  run_id: string;
  state: RunState;
  artifacts: Artifact[];
}

/** One path a copy-on-write run made, replaced or removed. */
export interface ChangeEntry {
  path: string;
  op: 'make_dir' | 'write' | 'delete' | 'remove_dir';
  /** What the run found at the path on the host. */
  host: 'absent' | 'file' | 'symlink' | 'dir';
  /** Octal permission bits, e.g. "0644" (make_dir, write). */
  mode?: string;
  /** Bytes (write). */
  size?: number;
  /** The host entry changed while the run ran: applying is refused. */
  changed_on_host_during_run?: boolean;
  [k: string]: unknown;
}

/** The counts of an applied change set. */
export interface ApplyCounts {
  files_written: number;
  files_deleted: number;
  dirs_made: number;
  dirs_removed: number;
}

/** What `runs.apply` answers: the counts, the hash of the diff and of the set written. */
export interface ApplyResult extends ApplyCounts {
  run_id: string;
  diff_sha256: string;
  changes_sha256: string;
}

/** GET /v1/runs/{id}/changes: the change set a copy-on-write run kept when it ended. */
export interface RunChanges {
  run_id: string;
  /** The sha256 of the run's diff.patch artifact, which shows these changes. */
  diff_sha256: string;
  /** A succeeded run whose set has no refusals and was not applied yet. */
  applicable: boolean;
  /** Who applied the set, when, where and the counts (the audit record's details); null until then. */
  applied: (ApplyCounts & { by: string; at_ms: number; workspace: string; diff_sha256: string; changes_sha256: string; [k: string]: unknown }) | null;
  entries: ChangeEntry[];
  /** What keeps the set from being applied. */
  refused: { path: string; why: string }[];
  total_bytes: number;
}

// ---- Sandboxes ----------------------------------------------------------------------------

export type SandboxState =
  | 'PENDING'
  | 'AWAITING_REVIEW'
  | 'STARTING'
  | 'RUNNING'
  | 'PAUSED'
  | 'STOPPED'
  | 'FAILED';

export interface SandboxRequest {
  from_snapshot?: string;
  limits?: {
    cpus?: number;
    memory_bytes?: ByteSize;
    pids?: number;
    timeout_s?: number;
    output_bytes?: ByteSize;
  };
  idle_timeout_s?: number;
  network?: string;
  seccomp_profile?: string;
  env?: StringMap;
  workspace?: string | { path: string; mode?: 'ro' | 'cow' | 'rw' };
  labels?: StringMap;
  idempotency_key?: string;
  backend?: 'native' | 'docker' | 'auto';
  image?: string;
}

export interface SandboxStats {
  cpu_usec: number;
  memory_current_bytes: number;
  memory_peak_bytes: number;
  pids_current: number;
  io_read_bytes: number | null;
  io_write_bytes: number | null;
  processes: number;
  paused: boolean;
  unavailable: string[];
  [k: string]: unknown;
}

export interface SandboxInfo {
  id: string;
  state: SandboxState;
  reason: string;
  submitter: string;
  limits: Record<string, number>;
  idle_timeout_s: number | null;
  network: string;
  seccomp_profile: string;
  env: StringMap;
  workspace: Record<string, unknown> | null;
  labels: StringMap;
  backend: string;
  policy: PolicyDecision | null;
  approval: Record<string, unknown> | null;
  node: string | null;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  last_activity_at: number;
  expires_at: number | null;
  isolation: Record<string, unknown> | null;
  stats?: SandboxStats | null;
  from_snapshot?: Record<string, unknown> | null;
  [k: string]: unknown;
}

export interface Snapshot {
  id: string;
  name: string;
  owner: string;
  source_sandbox: string;
  created_at: number;
  bytes: number;
  dirs: string[];
  skipped: string[];
  [k: string]: unknown;
}

/** One message of the change feed (GET /v1/events/sandboxes). */
export interface SandboxChange {
  type: 'sandbox.state' | 'process.state';
  sandbox_id: string;
  /** For `process.state`. */
  process_id?: number;
  submitter: string;
  /** The sandbox's or the process's state after the change. */
  state: SandboxState | ProcessState;
  /** How it ended, once it has. */
  reason?: string;
  /** Milliseconds since the epoch. */
  ts: number;
}

// ---- Processes ----------------------------------------------------------------------------

export type ProcessState = 'AWAITING_REVIEW' | 'RUNNING' | 'FINISHED' | 'REJECTED' | 'CANCELLED';

export interface PtySize {
  cols: number;
  rows: number;
}

export interface ProcessOptions {
  env?: StringMap;
  /** An absolute path; /workspace when there is one, else /. */
  cwd?: string;
  /** Bytes for its stdin (a string as UTF-8). */
  stdin?: string | Uint8Array;
  /** Keep stdin open for `Process.write()` / `closeStdin()`. */
  stdinOpen?: boolean;
  tag?: string;
  timeoutS?: number;
  pty?: PtySize;
}

export interface ProcessResult {
  reason: string;
  exit_code: number | null;
  signal: number | null;
  signal_name?: string | null;
  wall_ms: number;
  cpu_ms: number;
  stdout_bytes: number;
  stderr_bytes: number;
  output_truncated: boolean;
  [k: string]: unknown;
}

export interface ProcessInfo {
  id: number;
  sandbox_id: string;
  tag: string | null;
  state: ProcessState;
  argv: string[];
  cwd: string;
  pty: PtySize | null;
  submitter: string;
  policy: PolicyDecision | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  result: ProcessResult | null;
  [k: string]: unknown;
}

/** What `processes.run()` gives back: the finished process and its output. */
export interface ProcessOutcome {
  process: ProcessInfo;
  /** The result's exit code (null when it was signaled or did not start). */
  exitCode: number | null;
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface ProcessEventBase {
  seq: number;
  ts: number;
  sandbox_id: string;
  process_id: number;
}
export interface ProcessStartedEvent extends ProcessEventBase {
  type: 'process.started';
}
export interface ProcessLogEvent extends ProcessEventBase {
  type: 'process.log';
  stream: 'stdout' | 'stderr';
  offset: number;
  length: number;
  /** The bytes, exactly as the process wrote them. */
  data: Buffer;
}
export interface ProcessFinishedEvent extends ProcessEventBase {
  type: 'process.finished';
  result: ProcessResult;
}
export type ProcessEvent = ProcessStartedEvent | ProcessLogEvent | ProcessFinishedEvent;

/** A piece of a process's output. */
export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
  seq: number;
}

// ---- Files --------------------------------------------------------------------------------

export type FileType = 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'char_device' | 'block_device';

export interface FileInfo {
  name: string;
  type: FileType;
  size: number;
  mode: string;
  mtime: number;
  link_target?: string | null;
}

export interface DirListing {
  entries: FileInfo[];
  truncated: boolean;
}

export interface FileWritten {
  path: string;
  size: number;
}

export interface TarStats {
  path: string;
  entries: number;
  bytes: number;
  skipped: string[];
}

export interface WatchEvent {
  type: 'created' | 'modified' | 'deleted' | 'moved' | 'overflow' | 'ended' | 'error';
  path?: string;
  from?: string;
  to?: string;
  is_dir?: boolean;
  [k: string]: unknown;
}

// ---- Projects and plans ---------------------------------------------------------------------

/** What an admin sets on a project (POST /v1/projects; PATCH takes any of it). */
export interface ProjectInput {
  /** [a-z0-9][a-z0-9_.-]{0,63}, unique. */
  name?: string;
  /** A directory under the daemon's workspace roots. */
  root_path?: string;
  /** An absolute path or a URL of a repository. */
  repo?: string;
  default_limits?: RunLimitsRequest;
  default_workspace_mode?: 'ro' | 'cow';
  labels?: StringMap;
  /** API key names that may use it (each a configured key). */
  members?: string[];
}

export interface Project {
  id: string;
  name: string;
  /** 1 when created, one more with each change. */
  version: number;
  root_path: string | null;
  repo: string | null;
  default_limits: Record<string, number>;
  default_workspace_mode: 'ro' | 'cow';
  labels: StringMap;
  members: string[];
  created_by: string;
  created_at_ms: number;
  updated_at_ms: number;
  [k: string]: unknown;
}

export interface ProjectList {
  projects: Project[];
  next_cursor: string | null;
}

export type PlanGoal = 'test' | 'lint' | 'build' | 'typecheck' | 'report';

export interface PlanStep {
  name: string;
  argv: string[];
  /** Why the planner chose it, e.g. 'Makefile defines a "test" target'. */
  why: string;
  /** The command policy's decision on this step. */
  decision: PolicyDecision;
}

/** A plan made from an intent: immutable; `sha256` is over all but its record fields. */
export interface Plan {
  id: string;
  project_id: string;
  sha256: string;
  created_by: string;
  created_at_ms: number;
  /** The project when planned. */
  project: { id: string; name: string; version: number };
  intent_text: string;
  planner: string;
  goals: PlanGoal[];
  /** A report was asked for: the run's report.md artifact is it. */
  report: boolean;
  summary: string;
  steps: PlanStep[];
  /** The policy's decision on the whole plan, as the review gate will decide. */
  decision: PolicyDecision;
  limits: Record<string, number>;
  workspace: { path: string; mode: 'ro' | 'cow' } | null;
  labels: StringMap;
  /** What the planner found in the project's directory. */
  project_summary: Record<string, unknown>;
  [k: string]: unknown;
}

// ---- Misc ---------------------------------------------------------------------------------

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
