// The change feed (GET /v1/events/sandboxes), and the waits that follow it instead of polling.

import { ConnectionError, NotFoundError, SandboxdError } from './errors.js';
import type { Transport } from './transport.js';
import type { SandboxChange } from './types.js';
import { pause } from './util.js';
import type { WebSocketConnection } from './ws.js';

export const FEED_PATH = 'v1/events/sandboxes';

/** The change feed: every change of state of the caller's sandboxes and their processes (a
 * reviewer's or an admin's: everyone's) from the moment it opened, as an async iterator.
 * Nothing is replayed: `await feed.ready`, then list or refresh, then apply the changes.
 *
 * It connects at once. Iteration ends when the daemon closes the feed (`closeCode` then says
 * how: 1013 when this client fell behind — list again — or 1001 when the daemon stops), when
 * `signal` aborts, or after `close()`. */
export class SandboxChanges implements AsyncIterableIterator<SandboxChange> {
  /** Resolves once the feed is open (subscribed); rejects with the typed error of a refused
   * handshake (`NotFoundError` from a daemon without the feed). */
  readonly ready: Promise<void>;
  #ws: Promise<WebSocketConnection>;
  #conn: WebSocketConnection | undefined;
  #signal: AbortSignal | undefined;
  #closed = false;
  #onAbort = () => void this.close();

  /** @internal */
  constructor(t: Transport, opts: { signal?: AbortSignal } = {}) {
    this.#signal = opts.signal;
    this.#ws = t.websocket(FEED_PATH, undefined, opts.signal ? { signal: opts.signal } : {});
    this.#ws.then((ws) => {
      this.#conn = ws;
      if (this.#closed || this.#signal?.aborted) void ws.close();
    }, () => undefined);
    this.ready = this.#ws.then(() => undefined);
    this.ready.catch(() => undefined); // surfaced by next() and by whoever awaits ready
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The close code once the daemon closed the feed. */
  get closeCode(): number | undefined {
    return this.#conn?.closeCode;
  }

  async next(): Promise<IteratorResult<SandboxChange>> {
    const end = { value: undefined, done: true } as const;
    if (this.#closed) return end;
    let ws: WebSocketConnection;
    try {
      ws = await this.#ws;
    } catch (e) {
      if (this.#signal?.aborted) return end;
      throw e;
    }
    for (;;) {
      const r = await ws.next();
      if (r.done) {
        this.#signal?.removeEventListener('abort', this.#onAbort);
        return end;
      }
      if (r.value.binary) continue;
      let c: unknown;
      try {
        c = JSON.parse(r.value.data.toString('utf8'));
      } catch {
        continue;
      }
      if (c && typeof c === 'object' && typeof (c as SandboxChange).type === 'string') {
        return { value: c as SandboxChange, done: false };
      }
    }
  }

  async return(): Promise<IteratorResult<SandboxChange>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Closes the feed; iteration then ends. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    const ws = this.#conn ?? (await this.#ws.catch(() => undefined));
    await ws?.close();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<SandboxChange> {
    return this;
  }
}

export interface FeedWait<T> {
  /** Reads the record (one GET) and answers it. */
  refresh: () => Promise<T>;
  /** Whether the record still waits. */
  waiting: (record: T) => boolean;
  /** Whether a change moves the record out of the waiting state. */
  moved: (change: SandboxChange) => boolean;
  signal: AbortSignal;
  /** The error to throw once `signal` aborted. */
  stopped: () => SandboxdError;
}

/** Waits on the change feed until the record no longer waits, and answers it as read last.
 *
 * Opens the feed first, then reads the record (nothing is replayed, so a change in between is
 * in the record). While it still waits, reads the feed until a change for which `moved` is
 * true, then reads the record once more and answers it (the caller checks it again). A feed
 * that ends or breaks is opened again and the record read again. A daemon without the feed (an
 * older one: 404) is polled with backoff instead, for the rest of the client's life. */
export async function waitOnFeed<T>(t: Transport, w: FeedWait<T>): Promise<T> {
  for (let round = 0; ; round++) {
    if (w.signal.aborted) throw w.stopped();
    if (round > 0) {
      await pause(Math.min(1000, 50 * 2 ** Math.min(round - 1, 5)), w.signal);
      if (w.signal.aborted) throw w.stopped();
    }
    if (t.feedMissing) {
      const r = await w.refresh();
      if (!w.waiting(r)) return r;
      continue;
    }
    const feed = new SandboxChanges(t, { signal: w.signal });
    try {
      try {
        await feed.ready;
      } catch (e) {
        if (w.signal.aborted) throw w.stopped();
        if (e instanceof NotFoundError) {
          t.feedMissing = true;
          round = -1; // polling starts now, without a pause
          continue;
        }
        if (e instanceof ConnectionError) continue;
        throw e;
      }
      const r = await w.refresh();
      if (!w.waiting(r)) return r;
      try {
        for await (const c of feed) {
          if (w.moved(c)) return await w.refresh();
        }
      } catch (e) {
        if (!(e instanceof ConnectionError)) throw e;
      }
      // The feed ended (closed by the daemon, or broke): subscribe and read the record again.
    } finally {
      await feed.close();
    }
  }
}
