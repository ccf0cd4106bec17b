// Sandboxes and snapshots.

import { inspect } from 'node:util';

import { SandboxChanges, waitOnFeed } from './changes.js';
import { Files } from './files.js';
import { type Process, Processes, type RunOptions, type Terminal } from './processes.js';
import type { Transport } from './transport.js';
import type { ProcessOptions, ProcessOutcome, SandboxInfo, SandboxRequest, SandboxState, Snapshot } from './types.js';
import { deadline, seg, stopped } from './util.js';

const STARTING: ReadonlySet<string> = new Set(['PENDING', 'STARTING', 'AWAITING_REVIEW']);

export interface SandboxListOptions {
  state?: SandboxState | SandboxState[];
  /** "KEY=VALUE", or several: every one must match. */
  label?: string | string[];
  limit?: number;
  cursor?: string;
}

export interface SandboxPage {
  sandboxes: Sandbox[];
  nextCursor: string | null;
}

export class Sandboxes {
  #t: Transport;

  /** @internal */
  constructor(t: Transport) {
    this.#t = t;
  }

  /** Creates a sandbox (RUNNING when the policy allows it, else AWAITING_REVIEW). */
  async create(request: SandboxRequest = {}, opts: { idempotencyKey?: string } = {}): Promise<Sandbox> {
    const info = await this.#t.json<SandboxInfo>('POST', 'v1/sandboxes', {
      body: request as Record<string, unknown>,
      ...(opts.idempotencyKey ? { headers: { 'Idempotency-Key': opts.idempotencyKey } } : {}),
    });
    return new Sandbox(this.#t, info);
  }

  /** One sandbox, with live stats while it runs. */
  async get(id: string): Promise<Sandbox> {
    return new Sandbox(this.#t, await this.#t.json<SandboxInfo>('GET', `v1/sandboxes/${seg(id)}`));
  }

  /** A handle on a sandbox by its id, without asking the daemon (`info` holds the id alone
   * until `refresh()`). */
  attach(id: string): Sandbox {
    return new Sandbox(this.#t, { id } as SandboxInfo);
  }

  /** One page of sandboxes, newest first (a submitter sees its own). */
  async list(opts: SandboxListOptions = {}): Promise<SandboxPage> {
    const r = await this.#t.json<{ sandboxes: SandboxInfo[]; next_cursor?: string | null }>('GET', 'v1/sandboxes', {
      query: { state: opts.state, label: opts.label, limit: opts.limit, cursor: opts.cursor },
    });
    return { sandboxes: r.sandboxes.map((s) => new Sandbox(this.#t, s)), nextCursor: r.next_cursor ?? null };
  }

  /** Every sandbox the filter matches, page after page. */
  async *iterate(opts: Omit<SandboxListOptions, 'cursor'> = {}): AsyncGenerator<Sandbox> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...opts, ...(cursor ? { cursor } : {}) });
      yield* page.sandboxes;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  /** The change feed (GET /v1/events/sandboxes): every change of state of the caller's
   * sandboxes and their processes from now on, as an async iterator that connects at once.
   * Nothing is replayed: `await feed.ready`, then list or refresh, then apply the changes.
   *
   * ```ts
   * const feed = sbx.sandboxes.changes({ signal });
   * await feed.ready;                     // subscribed
   * await box.refresh();                  // the state now; the feed has what follows
   * for await (const c of feed) console.log(c.type, c.sandbox_id, c.process_id, c.state);
   * ```
   */
  changes(opts: { signal?: AbortSignal } = {}): SandboxChanges {
    return new SandboxChanges(this.#t, opts);
  }

  /** Ends a sandbox (idempotent); its record, process results and logs stay. */
  async delete(id: string): Promise<SandboxInfo> {
    return this.#t.json<SandboxInfo>('DELETE', `v1/sandboxes/${seg(id)}`);
  }
}

export class Snapshots {
  #t: Transport;

  /** @internal */
  constructor(t: Transport) {
    this.#t = t;
  }

  /** The caller's snapshots, newest first (an admin's: everyone's). */
  async list(): Promise<Snapshot[]> {
    return (await this.#t.json<{ snapshots: Snapshot[] }>('GET', 'v1/snapshots')).snapshots;
  }

  /** One snapshot, by name or id. */
  get(nameOrId: string): Promise<Snapshot> {
    return this.#t.json<Snapshot>('GET', `v1/snapshots/${seg(nameOrId)}`);
  }

  async delete(nameOrId: string): Promise<void> {
    await this.#t.json('DELETE', `v1/snapshots/${seg(nameOrId)}`);
  }
}

/** A sandbox. `info` is what the daemon said last (`refresh()` asks again). */
export class Sandbox {
  #t: Transport;
  info: SandboxInfo;
  readonly processes: Processes;
  readonly files: Files;

  /** @internal */
  constructor(t: Transport, info: SandboxInfo) {
    this.#t = t;
    this.info = info;
    this.processes = new Processes(t, info.id);
    this.files = new Files(t, info.id);
  }

  get id(): string {
    return this.info.id;
  }
  get state(): SandboxState {
    return this.info.state;
  }

  #path(suffix = ''): string {
    return `v1/sandboxes/${seg(this.id)}${suffix}`;
  }

  async #post(suffix: string, body?: Record<string, unknown>): Promise<SandboxInfo> {
    this.info = await this.#t.json<SandboxInfo>('POST', this.#path(suffix), body ? { body } : {});
    return this.info;
  }

  async refresh(): Promise<SandboxInfo> {
    this.info = await this.#t.json<SandboxInfo>('GET', this.#path());
    return this.info;
  }

  /** Waits until it left PENDING, STARTING and AWAITING_REVIEW (a reviewer decided), on the
   * change feed, and answers it: RUNNING, or the state it ended in (a rejected one is FAILED,
   * its reason "rejected: …"). Polls a daemon without the feed. */
  async waitRunning(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<SandboxInfo> {
    if (this.info.state !== undefined && !STARTING.has(this.info.state)) return this.info;
    const d = deadline(opts.timeoutMs, opts.signal);
    const what = `waiting for sandbox ${this.id} to run`;
    try {
      for (;;) {
        const info = await waitOnFeed(this.#t, {
          refresh: () => this.refresh(),
          waiting: (s) => STARTING.has(s.state),
          moved: (c) => c.type === 'sandbox.state' && c.sandbox_id === this.id && !STARTING.has(c.state),
          signal: d.signal,
          stopped: () => stopped(what, d.timedOut(), opts.timeoutMs),
        });
        if (!STARTING.has(info.state)) return info;
      }
    } finally {
      d.dispose();
    }
  }

  /** Ends it (the whole tree killed); idempotent. */
  async delete(): Promise<SandboxInfo> {
    this.info = await this.#t.json<SandboxInfo>('DELETE', this.#path());
    return this.info;
  }

  /** Freezes every process. */
  pause(): Promise<SandboxInfo> {
    return this.#post(':pause');
  }

  /** Thaws a paused sandbox. */
  resume(): Promise<SandboxInfo> {
    return this.#post(':resume');
  }

  /** Resets the idle timer. */
  touch(): Promise<SandboxInfo> {
    return this.#post(':touch');
  }

  /** A reviewer's approval of a sandbox awaiting review. */
  approve(): Promise<SandboxInfo> {
    return this.#post(':approve');
  }

  reject(reason?: string): Promise<SandboxInfo> {
    return this.#post(':reject', reason === undefined ? {} : { reason });
  }

  /** Saves /tmp, /artifacts and a copy-on-write /workspace as a snapshot of the caller's. */
  snapshot(name: string): Promise<Snapshot> {
    return this.#t.json<Snapshot>('POST', this.#path(':snapshot'), { body: { name } });
  }

  /** Runs a command to its end: `processes.run()`. */
  run(argv: string[], opts: RunOptions = {}): Promise<ProcessOutcome> {
    return this.processes.run(argv, opts);
  }

  /** Starts a command: `processes.start()`. */
  start(argv: string[], opts: ProcessOptions = {}): Promise<Process> {
    return this.processes.start(argv, opts);
  }

  /** Starts a shell (or `argv`) with a terminal and opens it. */
  terminal(opts: Parameters<Processes['terminal']>[0] = {}): Promise<Terminal> {
    return this.processes.terminal(opts);
  }

  [inspect.custom](): string {
    return `Sandbox { id: '${this.id}', state: '${this.state}' }`;
  }
}
