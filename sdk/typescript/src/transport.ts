// HTTP over Node's global fetch, and WebSockets over ws.ts, with the API key, typed errors and
// retries. Only idempotent requests (GET, HEAD) are retried: after a connection error, and on 503
// and 429 (waiting what Retry-After says, else an exponential backoff with jitter). The API key
// lives in a private field and is cut out of every error message.

import { inspect } from 'node:util';

import {
  ConnectionError,
  DeadlineExceededError,
  SandboxdError,
  errorFromResponse,
} from './errors.js';
import { WebSocketConnection, rebuildError, sanitizedCause } from './ws.js';

export type QueryValue = string | number | boolean | undefined | null | (string | number)[];
export type Query = Record<string, QueryValue>;

/** What `onRetry` is told before each retry. No headers, no key. */
export interface RetryInfo {
  method: string;
  path: string;
  /** 1 for the first retry. */
  attempt: number;
  delayMs: number;
  /** "connection", or the status that made it retry ("503", "429"). */
  reason: string;
  error: SandboxdError;
}

export interface TransportOptions {
  url: string;
  apiKey: string | undefined;
  timeoutMs: number;
  maxRetries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  onRetry: ((info: RetryInfo) => void) | undefined;
  userAgent: string;
}

export type Body = string | Uint8Array | Record<string, unknown> | unknown[] | undefined;

export interface RequestOptions {
  query?: Query;
  /** A string or bytes go as they are (application/octet-stream unless contentType says);
   * anything else as JSON. */
  body?: Body;
  contentType?: string;
  headers?: Record<string, string>;
  /** This call's timeout until the whole answer is read (until its head for `stream`); 0 for none. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface Sent {
  res: Response;
  /** Clears the timer; called once the body is read (at once for streams). */
  finish: () => void;
  timedOut: () => boolean;
}

const IDEMPOTENT = new Set(['GET', 'HEAD']);

export class Transport {
  readonly baseUrl: URL;
  #apiKey: string | undefined;
  #opts: TransportOptions;
  /** @internal The daemon answered 404 to the change feed: waits poll instead. */
  feedMissing = false;

  constructor(opts: TransportOptions) {
    this.#opts = opts;
    this.#apiKey = opts.apiKey;
    const u = new URL(opts.url);
    if (u.username || u.password) {
      throw new SandboxdError('the URL must not carry credentials; pass apiKey', { code: 'invalid_argument' });
    }
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    this.baseUrl = u;
  }

  /** Cuts the API key out of a string. */
  redact = (s: string): string => {
    const k = this.#apiKey;
    if (!k || !s) return s;
    return s.split(k).join('[redacted]');
  };

  url(path: string, query?: Query): URL {
    const u = new URL(path.replace(/^\//, ''), this.baseUrl);
    if (query) {
      for (const [k, v] of Object.entries(query)) {
        if (v === undefined || v === null) continue;
        if (Array.isArray(v)) {
          for (const item of v) u.searchParams.append(k, String(item));
        } else {
          u.searchParams.append(k, String(v));
        }
      }
    }
    return u;
  }

  #headers(extra?: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { 'User-Agent': this.#opts.userAgent, ...extra };
    if (this.#apiKey) h['Authorization'] = `Bearer ${this.#apiKey}`;
    return h;
  }

  /** A JSON answer. */
  async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const sent = await this.#send(method, path, opts, false);
    const res = sent.res;
    const text = (await this.#readBytes(sent)).toString('utf8');
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new SandboxdError(`the answer to ${method} ${path} is not JSON`, { code: 'internal', status: res.status, cause: sanitizedCause(e, this.redact) });
    }
  }

  /** The answer's bytes. */
  async bytes(method: string, path: string, opts: RequestOptions = {}): Promise<{ data: Buffer; headers: Headers; status: number }> {
    const sent = await this.#send(method, path, opts, false);
    const data = await this.#readBytes(sent);
    return { data, headers: sent.res.headers, status: sent.res.status };
  }

  /** The answer as it comes: its head is checked, its body is read by the caller. The timeout
   * covers the head only. */
  async stream(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    return (await this.#send(method, path, opts, true)).res;
  }

  /** Opens a WebSocket on a route. */
  async websocket(path: string, query?: Query, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<WebSocketConnection> {
    const url = this.url(path, query);
    return WebSocketConnection.connect(url, {
      headers: this.#headers(),
      timeoutMs: opts.timeoutMs ?? this.#opts.timeoutMs,
      redact: this.redact,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  // ---- internals ----

  async #send(method: string, path: string, opts: RequestOptions, headOnly: boolean): Promise<Sent> {
    const idempotent = IDEMPOTENT.has(method);
    const url = this.url(path, opts.query);
    let body: string | Uint8Array | undefined;
    const headers = this.#headers(opts.headers);
    if (opts.body !== undefined) {
      if (typeof opts.body === 'string' || opts.body instanceof Uint8Array) {
        body = opts.body;
        headers['Content-Type'] = opts.contentType ?? 'application/octet-stream';
      } else {
        body = JSON.stringify(opts.body);
        headers['Content-Type'] = opts.contentType ?? 'application/json';
      }
    }
    const timeoutMs = opts.timeoutMs ?? this.#opts.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const ctl = new AbortController();
      let timedOut = false;
      const timer = timeoutMs > 0 ? setTimeout(() => { timedOut = true; ctl.abort(); }, timeoutMs) : undefined;
      const onAbort = () => ctl.abort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) ctl.abort();
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers,
          ...(body !== undefined ? { body } : {}),
          signal: ctl.signal,
          redirect: 'manual',
        });
      } catch (e) {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (opts.signal?.aborted) throw new SandboxdError(`${method} ${path}: aborted`, { code: 'aborted', cause: sanitizedCause(e, this.redact) });
        if (timedOut) throw new DeadlineExceededError(`${method} ${path}: no answer within ${timeoutMs} ms`, { code: 'deadline_exceeded' });
        const err = new ConnectionError(this.redact(`${method} ${path}: cannot reach ${url.host}: ${describe(e)}`), {
          code: 'unavailable',
          cause: sanitizedCause(causeOf(e), this.redact),
        });
        if (idempotent && attempt < this.#opts.maxRetries) {
          await this.#pause(method, path, attempt, 'connection', err, undefined);
          continue;
        }
        throw err;
      }
      const done = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      if (res.status >= 200 && res.status < 300) {
        // The body is read under the same timer (a stream's is not).
        if (headOnly) done();
        return { res, finish: done, timedOut: () => timedOut };
      }
      let text = '';
      try {
        text = await res.text();
      } catch {
        // the body broke off: the status still says what happened
      }
      done();
      const retryAfterS = parseRetryAfter(res.headers.get('retry-after'));
      const err = rebuildError(errorFromResponse(res.status, text, retryAfterS), this.redact);
      if (idempotent && (res.status === 503 || res.status === 429) && attempt < this.#opts.maxRetries) {
        await this.#pause(method, path, attempt, String(res.status), err, retryAfterS);
        continue;
      }
      throw err;
    }
  }

  async #pause(method: string, path: string, attempt: number, reason: string, error: SandboxdError, retryAfterS: number | undefined): Promise<void> {
    let delayMs: number;
    if (retryAfterS !== undefined) {
      delayMs = Math.min(retryAfterS * 1000, 60_000);
    } else {
      const ceiling = Math.min(this.#opts.retryMaxMs, this.#opts.retryBaseMs * 2 ** attempt);
      delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    }
    this.#opts.onRetry?.({ method, path, attempt: attempt + 1, delayMs, reason, error });
    await new Promise((r) => setTimeout(r, delayMs));
  }

  async #readBytes(sent: Sent): Promise<Buffer> {
    try {
      return Buffer.from(await sent.res.arrayBuffer());
    } catch (e) {
      if (sent.timedOut()) throw new DeadlineExceededError('the answer did not arrive in time', { code: 'deadline_exceeded' });
      throw new ConnectionError(this.redact(`the answer broke off: ${describe(e)}`), { code: 'unavailable', cause: sanitizedCause(causeOf(e), this.redact) });
    } finally {
      sent.finish();
    }
  }

  [inspect.custom](): string {
    return `Transport { url: '${this.baseUrl.href}', apiKey: ${this.#apiKey ? "'[redacted]'" : 'undefined'} }`;
  }

  toJSON(): object {
    return { url: this.baseUrl.href };
  }
}

function causeOf(e: unknown): unknown {
  const c = (e as { cause?: unknown })?.cause;
  return c ?? e;
}

function describe(e: unknown): string {
  const c = causeOf(e) as { code?: unknown; message?: unknown };
  if (typeof c?.code === 'string') return c.code;
  return String(c?.message ?? e);
}

function parseRetryAfter(v: string | null): number | undefined {
  if (v === null || v.trim() === '') return undefined;
  const n = Number(v);
  if (Number.isFinite(n) && n >= 0) return n;
  const t = Date.parse(v);
  if (!Number.isNaN(t)) return Math.max(0, (t - Date.now()) / 1000);
  return undefined;
}

/** Reads a fetch body as an async iterator of Buffers, with the error typed. */
export async function* bodyChunks(res: Response, redact: (s: string) => string): AsyncGenerator<Buffer> {
  if (!res.body) return;
  const reader = res.body.getReader();
  try {
    for (;;) {
      let r: { done: boolean; value?: Uint8Array };
      try {
        r = await reader.read();
      } catch (e) {
        throw new ConnectionError(redact(`the stream broke off: ${describe(e)}`), { code: 'unavailable', cause: sanitizedCause(causeOf(e), redact) });
      }
      if (r.done) return;
      if (r.value) yield Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}
