// Processes in a sandbox: run (and wait), start, stream, reattach, signal, stdin, terminals.

import { waitOnFeed } from './changes.js';
import { ConnectionError, DeadlineExceededError } from './errors.js';
import type { Transport } from './transport.js';
import type {
  OutputChunk,
  ProcessEvent,
  ProcessInfo,
  ProcessOptions,
  ProcessOutcome,
  ProcessState,
  PtySize,
} from './types.js';
import { deadline, errorFromCode, parseEventMessage, pause, seg, stopped, toBuffer } from './util.js';
import type { WebSocketConnection } from './ws.js';

const ENDED: ReadonlySet<ProcessState> = new Set(['FINISHED', 'REJECTED', 'CANCELLED']);

export interface ProcessListOptions {
  tag?: string;
  state?: ProcessState | ProcessState[];
  /** Only ids above this. */
  after?: number;
  limit?: number;
}

export interface RunOptions extends ProcessOptions {
  /** How long this call may wait for the answer (default: the process's timeout and a margin,
   * else 11 minutes). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface StreamOptions {
  /** Only events with a greater seq (default: where this handle's last stream stopped). */
  after?: number;
  /** Ends the stream when aborted. */
  signal?: AbortSignal;
}

export interface ProcessWaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The request body for a process. */
function processBody(argv: string[], o: ProcessOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { argv };
  if (o.env) body['env'] = o.env;
  if (o.cwd) body['cwd'] = o.cwd;
  if (o.stdin !== undefined) {
    if (typeof o.stdin === 'string') body['stdin'] = o.stdin;
    else body['stdin_b64'] = toBuffer(o.stdin).toString('base64');
  }
  if (o.stdinOpen) body['stdin_open'] = true;
  if (o.tag) body['tag'] = o.tag;
  if (o.timeoutS !== undefined) body['timeout_s'] = o.timeoutS;
  if (o.pty) body['pty'] = { cols: o.pty.cols, rows: o.pty.rows };
  return body;
}

function decodeOutput(text: unknown, b64: unknown): Buffer {
  if (typeof b64 === 'string') return Buffer.from(b64, 'base64');
  if (typeof text === 'string') return Buffer.from(text, 'utf8');
  return Buffer.alloc(0);
}

/** The processes of one sandbox. */
export class Processes {
  #t: Transport;
  readonly sandboxId: string;

  /** @internal */
  constructor(t: Transport, sandboxId: string) {
    this.#t = t;
    this.sandboxId = sandboxId;
  }

  #base(): string {
    return `v1/sandboxes/${seg(this.sandboxId)}/processes`;
  }

  /** A handle on a process already known (no request). */
  handle(info: ProcessInfo): Process {
    return new Process(this.#t, info);
  }

  /** Runs a command to its end and answers its result and output (up to 1 MiB of each stream).
   * A command the policy sends to review is waited for until a reviewer decides. */
  async run(argv: string[], opts: RunOptions = {}): Promise<ProcessOutcome> {
    const timeoutMs = opts.timeoutMs ?? (opts.timeoutS !== undefined ? (opts.timeoutS + 30) * 1000 : 11 * 60 * 1000);
    const r = await this.#t.json<ProcessInfo & Record<string, unknown>>('POST', this.#base(), {
      query: { wait: true },
      body: processBody(argv, opts),
      timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const waitError = r['wait_error'] as { code?: string; message?: string } | undefined;
    if (waitError) throw errorFromCode(waitError.code ?? 'unknown', waitError.message ?? 'the wait failed');
    if (!ENDED.has(r.state)) {
      // Waiting for review: wait for it on its events, then read its output.
      const p = new Process(this.#t, r);
      const info = await p.wait({ timeoutMs, ...(opts.signal ? { signal: opts.signal } : {}) });
      const [stdout, stderr] = await Promise.all([p.logs({ stream: 'stdout' }), p.logs({ stream: 'stderr' })]);
      return { process: info, exitCode: info.result?.exit_code ?? null, stdout, stderr, stdoutTruncated: false, stderrTruncated: false };
    }
    const info = { ...r };
    for (const k of ['stdout', 'stdout_b64', 'stderr', 'stderr_b64', 'stdout_truncated', 'stderr_truncated']) delete info[k];
    return {
      process: info,
      exitCode: r.result?.exit_code ?? null,
      stdout: decodeOutput(r['stdout'], r['stdout_b64']),
      stderr: decodeOutput(r['stderr'], r['stderr_b64']),
      stdoutTruncated: r['stdout_truncated'] === true,
      stderrTruncated: r['stderr_truncated'] === true,
    };
  }

  /** Starts a command and answers at once (RUNNING, or AWAITING_REVIEW). */
  async start(argv: string[], opts: ProcessOptions = {}): Promise<Process> {
    const info = await this.#t.json<ProcessInfo>('POST', this.#base(), { body: processBody(argv, opts) });
    return new Process(this.#t, info);
  }

  /** A process by its id or its tag (the newest with it). */
  async get(idOrTag: number | string): Promise<Process> {
    return new Process(this.#t, await this.#t.json<ProcessInfo>('GET', `${this.#base()}/${seg(idOrTag)}`));
  }

  /** Takes a process up again (after a disconnect, in another program): its stream goes on
   * from `after`, the last seq seen (0: from the start). */
  async reattach(idOrTag: number | string, opts: { after?: number } = {}): Promise<Process> {
    const p = await this.get(idOrTag);
    p.lastSeq = opts.after ?? 0;
    return p;
  }

  /** The sandbox's processes, oldest first. */
  async list(opts: ProcessListOptions = {}): Promise<Process[]> {
    const r = await this.#t.json<{ processes: ProcessInfo[] }>('GET', this.#base(), {
      query: { tag: opts.tag, state: opts.state, after: opts.after, limit: opts.limit },
    });
    return r.processes.map((p) => new Process(this.#t, p));
  }

  /** A reviewer's approval of a process waiting for review. */
  async approve(idOrTag: number | string): Promise<Process> {
    return new Process(this.#t, await this.#t.json<ProcessInfo>('POST', `${this.#base()}/${seg(idOrTag)}:approve`));
  }

  async reject(idOrTag: number | string, reason?: string): Promise<Process> {
    return new Process(this.#t, await this.#t.json<ProcessInfo>('POST', `${this.#base()}/${seg(idOrTag)}:reject`, {
      body: reason === undefined ? {} : { reason },
    }));
  }

  /** Starts a shell (or `argv`) with a terminal and opens it. */
  async terminal(opts: { argv?: string[]; cols?: number; rows?: number; env?: Record<string, string>; cwd?: string; tag?: string; timeoutS?: number } = {}): Promise<Terminal> {
    const p = await this.start(opts.argv ?? ['sh'], {
      pty: { cols: opts.cols ?? 80, rows: opts.rows ?? 24 },
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      ...(opts.tag ? { tag: opts.tag } : {}),
      ...(opts.timeoutS !== undefined ? { timeoutS: opts.timeoutS } : {}),
    });
    return p.terminal();
  }
}

/** A process of a sandbox. `info` is what the daemon said last. */
export class Process {
  #t: Transport;
  info: ProcessInfo;
  /** The seq of the last event a stream of this handle gave out. */
  lastSeq = 0;

  /** @internal */
  constructor(t: Transport, info: ProcessInfo) {
    this.#t = t;
    this.info = info;
  }

  get id(): number {
    return this.info.id;
  }
  get sandboxId(): string {
    return this.info.sandbox_id;
  }
  get state(): ProcessState {
    return this.info.state;
  }
  /** The exit code once it has finished (null when signaled or not started). */
  get exitCode(): number | null {
    return this.info.result?.exit_code ?? null;
  }

  #path(suffix = ''): string {
    return `v1/sandboxes/${seg(this.sandboxId)}/processes/${seg(this.id)}${suffix}`;
  }

  async refresh(): Promise<ProcessInfo> {
    this.info = await this.#t.json<ProcessInfo>('GET', this.#path());
    return this.info;
  }

  /** The process's events (`process.started`, `process.log` with its bytes in `data`,
   * `process.finished`), from history and then live; it ends after `process.finished` (or at
   * once for a process that has not started). Resumes after the last event this handle gave. */
  async *stream(opts: StreamOptions = {}): AsyncGenerator<ProcessEvent> {
    let after = opts.after ?? this.lastSeq;
    // One event earlier than needed (dropped below): a finished process asked for the events
    // after its last one would otherwise keep the stream open with nothing more to come.
    const ask = Math.max(0, after - 1);
    const ws = await this.#t.websocket(this.#path('/events'), { after: ask, format: 'binary' },
      opts.signal ? { signal: opts.signal } : {});
    const onAbort = () => void ws.close();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const m of ws) {
        const ev = parseEventMessage(m) as unknown as ProcessEvent | { type: 'error'; message: string };
        if (ev.type === 'error') continue; // the answer to a bad stdin message
        if (ev.seq <= after) {
          if (ev.type === 'process.finished') return;
          continue;
        }
        after = ev.seq;
        this.lastSeq = Math.max(this.lastSeq, ev.seq);
        if (ev.type === 'process.finished') {
          this.info = { ...this.info, state: 'FINISHED', result: ev.result, finished_at: ev.ts };
        }
        yield ev;
        if (ev.type === 'process.finished') return;
      }
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      await ws.close();
    }
  }

  /** Its output as it comes: stdout and stderr pieces in the order written. */
  async *output(opts: StreamOptions & { stream?: 'stdout' | 'stderr' } = {}): AsyncGenerator<OutputChunk> {
    for await (const ev of this.stream(opts)) {
      if (ev.type !== 'process.log') continue;
      if (opts.stream && ev.stream !== opts.stream) continue;
      yield { stream: ev.stream, data: ev.data, seq: ev.seq };
    }
  }

  /** Waits until the process has ended and answers it: a running one on its events, one
   * awaiting review on the change feed until a reviewer decided (polled from a daemon without
   * the feed). */
  async wait(opts: ProcessWaitOptions = {}): Promise<ProcessInfo> {
    const d = deadline(opts.timeoutMs, opts.signal);
    const what = `waiting for process ${this.id}`;
    try {
      for (let round = 0; ; round++) {
        if (ENDED.has(this.info.state)) return this.info;
        if (d.signal.aborted) throw stopped(what, d.timedOut(), opts.timeoutMs);
        if (this.info.state === 'RUNNING') {
          let finished: ProcessInfo | undefined;
          try {
            for await (const ev of this.stream({ after: this.lastSeq, signal: d.signal })) {
              if (ev.type === 'process.finished') finished = this.info;
            }
          } catch (e) {
            if (!(e instanceof ConnectionError)) throw e;
            await pause(Math.min(2000, 100 * 2 ** Math.min(round, 5)), d.signal);
          }
          if (finished) {
            // The record as stored; the event's result when the store is a moment behind.
            const info = await this.refresh().catch(() => finished!);
            if (!ENDED.has(info.state)) this.info = finished;
            return this.info;
          }
        } else if (this.info.state === 'AWAITING_REVIEW') {
          // No event of its own says when a reviewer decides: the change feed does.
          const sid = this.sandboxId;
          await waitOnFeed(this.#t, {
            refresh: () => this.refresh(),
            waiting: (p) => p.state === 'AWAITING_REVIEW',
            moved: (c) => c.sandbox_id === sid && (c.type === 'sandbox.state'
              ? c.state === 'STOPPED' || c.state === 'FAILED'
              : c.process_id === this.id && c.state !== 'AWAITING_REVIEW'),
            signal: d.signal,
            stopped: () => stopped(what, d.timedOut(), opts.timeoutMs),
          });
          continue;
        }
        if (d.signal.aborted) throw stopped(what, d.timedOut(), opts.timeoutMs);
        await this.refresh();
      }
    } finally {
      d.dispose();
    }
  }

  /** Sends a signal ("SIGINT", "TERM", 15, …) to its process group. */
  async signal(sig: string | number): Promise<ProcessInfo> {
    this.info = await this.#t.json<ProcessInfo>('POST', this.#path(':signal'), { body: { signal: sig } });
    return this.info;
  }

  /** SIGKILL to its whole tree. */
  async kill(): Promise<ProcessInfo> {
    this.info = await this.#t.json<ProcessInfo>('POST', this.#path(':kill'));
    return this.info;
  }

  /** Writes to its stdin (started with `stdinOpen`); `close` ends its input after. */
  async write(data: string | Uint8Array, opts: { close?: boolean } = {}): Promise<{ written: number; closed: boolean }> {
    return this.#t.json('POST', this.#path(':stdin'), {
      body: toBuffer(data),
      query: { close: opts.close ? true : undefined },
    });
  }

  /** Ends its stdin. */
  async closeStdin(): Promise<void> {
    await this.write(Buffer.alloc(0), { close: true });
  }

  /** Its terminal's window size. */
  async resize(cols: number, rows: number): Promise<PtySize> {
    return this.#t.json<PtySize>('POST', this.#path(':resize'), { body: { cols, rows } });
  }

  async approve(): Promise<ProcessInfo> {
    this.info = await this.#t.json<ProcessInfo>('POST', this.#path(':approve'));
    return this.info;
  }

  async reject(reason?: string): Promise<ProcessInfo> {
    this.info = await this.#t.json<ProcessInfo>('POST', this.#path(':reject'), { body: reason === undefined ? {} : { reason } });
    return this.info;
  }

  /** The stored bytes of one stream from byte `offset` (also after it ended). */
  async logs(opts: { stream?: 'stdout' | 'stderr'; offset?: number } = {}): Promise<Buffer> {
    const r = await this.#t.bytes('GET', this.#path('/logs'), { query: { stream: opts.stream ?? 'stdout', offset: opts.offset } });
    return r.data;
  }

  /** Opens its terminal (a process started with `pty`). */
  async terminal(): Promise<Terminal> {
    const ws = await this.#t.websocket(this.#path('/pty'));
    return new Terminal(ws, this);
  }
}

/** A process's terminal over a WebSocket: output as an async iterator of Buffers (the last 64 KiB
 * first, then live), input with `write`, the window size with `resize`. */
export class Terminal implements AsyncIterable<Buffer> {
  readonly process: Process;
  #ws: WebSocketConnection;
  #text = '';

  /** @internal */
  constructor(ws: WebSocketConnection, process: Process) {
    this.#ws = ws;
    this.process = process;
  }

  /** Keystrokes (or any bytes) for the terminal. */
  write(data: string | Uint8Array): Promise<void> {
    return this.#ws.send(toBuffer(data));
  }

  /** Sets the window size. */
  resize(cols: number, rows: number): Promise<void> {
    return this.#ws.send(JSON.stringify({ type: 'resize', cols, rows }));
  }

  /** The next piece of output; undefined once the terminal has closed. */
  async read(): Promise<Buffer | undefined> {
    for (;;) {
      const r = await this.#ws.next();
      if (r.done) return undefined;
      if (r.value.binary) return r.value.data;
      // A text message is a notice ({"type": "error", …} for a bad resize): not output.
    }
  }

  /** Reads until the output seen since the last readUntil matches, and answers that text (up
   * to the end of the match; the rest is kept for the next read). */
  async readUntil(pattern: string | RegExp, opts: { timeoutMs?: number } = {}): Promise<string> {
    const d = deadline(opts.timeoutMs ?? 30_000);
    const onAbort = () => void this.#ws.close();
    d.signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const m = typeof pattern === 'string'
          ? (() => { const i = this.#text.indexOf(pattern); return i < 0 ? -1 : i + pattern.length; })()
          : (() => { const r = pattern.exec(this.#text); return r ? r.index + r[0].length : -1; })();
        if (m >= 0) {
          const out = this.#text.slice(0, m);
          this.#text = this.#text.slice(m);
          return out;
        }
        const chunk = await this.read();
        if (chunk === undefined) {
          if (d.timedOut()) {
            throw new DeadlineExceededError(`${String(pattern)} did not appear within ${opts.timeoutMs ?? 30_000} ms; the terminal showed: ${JSON.stringify(this.#text.slice(-200))}`, { code: 'deadline_exceeded' });
          }
          throw new ConnectionError(`the terminal closed before ${String(pattern)} appeared; it showed: ${JSON.stringify(this.#text.slice(-200))}`, { code: 'unavailable' });
        }
        this.#text += chunk.toString('utf8');
      }
    } finally {
      d.signal.removeEventListener('abort', onAbort);
      d.dispose();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    if (this.#text) {
      const t = this.#text;
      this.#text = '';
      yield Buffer.from(t, 'utf8');
    }
    for (;;) {
      const c = await this.read();
      if (c === undefined) return;
      yield c;
    }
  }

  /** The close code once closed (1000 when the process ended). */
  get closeCode(): number | undefined {
    return this.#ws.closeCode;
  }

  /** Closes the terminal's connection (the process goes on). */
  close(): Promise<void> {
    return this.#ws.close();
  }

  /** Waits for the process to end. */
  wait(opts: ProcessWaitOptions = {}): Promise<ProcessInfo> {
    return this.process.wait(opts);
  }
}
