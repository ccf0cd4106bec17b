// Runs: submit, read, wait, review, cancel, logs, events and artifacts.

import { ConnectionError } from './errors.js';
import { type Transport, bodyChunks } from './transport.js';
import type { ApplyResult, Artifact, ArtifactList, Run, RunChanges, RunEvent, RunList, RunRequest, RunState } from './types.js';
import { collect, deadline, parseEventMessage, pause, seg, stopped } from './util.js';

const ENDED: ReadonlySet<RunState> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

export interface RunListOptions {
  state?: RunState | RunState[];
  /** "KEY=VALUE", or several: every one must match. */
  label?: string | string[];
  /** Only this project's runs (its id or name); NotFoundError for one the key may not see. */
  project?: string;
  limit?: number;
  cursor?: string;
}

export interface LogOptions {
  stream?: 'stdout' | 'stderr' | 'all';
  /** Only the last N lines (not with `follow`). */
  tail?: number;
  timestamps?: boolean;
  signal?: AbortSignal;
}

export interface WaitOptions {
  /** Give up after this long (DeadlineExceededError); no limit by default. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class Runs {
  #t: Transport;

  /** @internal */
  constructor(t: Transport) {
    this.#t = t;
  }

  /** Submits a run: `argv`, or a whole request. */
  submit(request: RunRequest | string[], opts: { idempotencyKey?: string } = {}): Promise<Run> {
    const body = Array.isArray(request) ? { argv: request } : request;
    return this.#t.json<Run>('POST', 'v1/runs', {
      body: body as Record<string, unknown>,
      ...(opts.idempotencyKey ? { headers: { 'Idempotency-Key': opts.idempotencyKey } } : {}),
    });
  }

  get(id: string): Promise<Run> {
    return this.#t.json<Run>('GET', `v1/runs/${seg(id)}`);
  }

  /** One page of runs, newest first. */
  list(opts: RunListOptions = {}): Promise<RunList> {
    return this.#t.json<RunList>('GET', 'v1/runs', {
      query: { state: opts.state, label: opts.label, project: opts.project, limit: opts.limit, cursor: opts.cursor },
    });
  }

  /** Every run the filter matches, page after page. */
  async *iterate(opts: Omit<RunListOptions, 'cursor'> = {}): AsyncGenerator<Run> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...opts, ...(cursor ? { cursor } : {}) });
      yield* page.runs;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** A reviewer's approval (not the submitter's own). */
  approve(id: string): Promise<Run> {
    return this.#t.json<Run>('POST', `v1/runs/${seg(id)}:approve`);
  }

  reject(id: string, reason?: string): Promise<Run> {
    return this.#t.json<Run>('POST', `v1/runs/${seg(id)}:reject`, { body: reason === undefined ? {} : { reason } });
  }

  /** Cancels a run that has not ended; a running one ends CANCELLED shortly after. */
  cancel(id: string): Promise<Run> {
    return this.#t.json<Run>('POST', `v1/runs/${seg(id)}:cancel`);
  }

  /** What a copy-on-write run that has ended would write into the host directory: its entries,
   * refusals, whether it may be applied and whether it was. NotFoundError for a run without a
   * copy-on-write workspace, or one that has not ended. */
  changes(id: string): Promise<RunChanges> {
    return this.#t.json<RunChanges>('GET', `v1/runs/${seg(id)}/changes`);
  }

  /** Writes a succeeded copy-on-write run's changes into the host directory, once: a reviewer's
   * or an admin's key, never the run's submitter's (PermissionDeniedError). With `diffSha256`,
   * only if the run's diff.patch is that one (the diff that was read). ConflictError, with
   * `conflicts`, when the host directory is no longer what the run found (nothing written);
   * FailedPreconditionError or AlreadyExistsError when the run did not succeed, its set holds
   * refusals, its diff is another, or it was applied already. Never retried. */
  apply(id: string, diffSha256?: string): Promise<ApplyResult> {
    return this.#t.json<ApplyResult>('POST', `v1/runs/${seg(id)}:apply`, { body: diffSha256 ? { diff_sha256: diffSha256 } : {} });
  }

  /** The run's events from `after` on (history, then live), ending after `run.completed`. A
   * `step.log` event's bytes are in `data`. Reconnects after an overflow notice. */
  async *events(id: string, opts: { after?: number; signal?: AbortSignal } = {}): AsyncGenerator<RunEvent> {
    let after = opts.after ?? 0;
    for (;;) {
      // One event earlier than needed (dropped below): a completed run asked for the events
      // after its last one would otherwise keep the stream open with nothing more to come.
      const ws = await this.#t.websocket(`v1/runs/${seg(id)}/events`, { after: Math.max(0, after - 1), format: 'binary' },
        opts.signal ? { signal: opts.signal } : {});
      const onAbort = () => void ws.close();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      let resume: number | undefined;
      try {
        for await (const m of ws) {
          const ev = parseEventMessage(m) as RunEvent;
          if (ev.type === 'overflow') {
            resume = typeof ev['resume_after'] === 'number' ? (ev['resume_after'] as number) : after;
            continue;
          }
          if (typeof ev.seq === 'number') {
            if (ev.seq <= after) {
              if (ev.type === 'run.completed') return;
              continue;
            }
            after = ev.seq;
          }
          yield ev;
          if (ev.type === 'run.completed') return;
        }
      } finally {
        opts.signal?.removeEventListener('abort', onAbort);
        await ws.close();
      }
      if (opts.signal?.aborted) return;
      if (ws.closeCode === 1013) {
        after = resume ?? after;
        continue;
      }
      return;
    }
  }

  /** Waits until the run has ended (on its events, not by polling) and answers it. */
  async wait(id: string, opts: WaitOptions = {}): Promise<Run> {
    const d = deadline(opts.timeoutMs, opts.signal);
    try {
      let after = 0;
      for (let round = 0; ; round++) {
        const run = await this.get(id);
        if (ENDED.has(run.state)) return run;
        if (d.signal.aborted) throw stopped(`waiting for run ${id}`, d.timedOut(), opts.timeoutMs);
        try {
          for await (const ev of this.events(id, { after, signal: d.signal })) {
            after = ev.seq;
            if (ev.type === 'run.completed') break;
          }
        } catch (e) {
          // The stream broke (a daemon restarting): the run is read again, retried as a GET is.
          if (!(e instanceof ConnectionError)) throw e;
          await pause(Math.min(2000, 100 * 2 ** Math.min(round, 5)), d.signal);
        }
        if (d.signal.aborted) throw stopped(`waiting for run ${id}`, d.timedOut(), opts.timeoutMs);
      }
    } finally {
      d.dispose();
    }
  }

  /** The output as it comes: everything so far, then live until the run completes. */
  async *streamLogs(id: string, opts: Omit<LogOptions, 'tail'> = {}): AsyncGenerator<Buffer> {
    const res = await this.#t.stream('GET', `v1/runs/${seg(id)}/logs`, {
      query: { follow: true, stream: opts.stream, timestamps: opts.timestamps || undefined },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    yield* bodyChunks(res, this.#t.redact);
  }

  /** The output recorded so far, as one Buffer. */
  async logs(id: string, opts: LogOptions = {}): Promise<Buffer> {
    const r = await this.#t.bytes('GET', `v1/runs/${seg(id)}/logs`, {
      query: { stream: opts.stream, tail: opts.tail, timestamps: opts.timestamps || undefined },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return r.data;
  }

  /** The whole output once the run has completed (follows it until then). */
  async output(id: string, opts: Omit<LogOptions, 'tail'> = {}): Promise<Buffer> {
    return collect(this.streamLogs(id, opts));
  }

  /** The artifacts the run produced (empty until it has ended). */
  async artifacts(id: string): Promise<Artifact[]> {
    return (await this.#t.json<ArtifactList>('GET', `v1/runs/${seg(id)}/artifacts`)).artifacts;
  }

  /** One artifact's bytes, by its listed name (e.g. "report.md", "files/out/a.txt"). */
  async artifact(id: string, name: string): Promise<Buffer> {
    const path = name.split('/').map(seg).join('/');
    return (await this.#t.bytes('GET', `v1/runs/${seg(id)}/artifacts/${path}`)).data;
  }
}
