// Helpers the resource modules share.

import { DeadlineExceededError, SandboxdError, errorClassFor } from './errors.js';
import type { WebSocketMessage } from './ws.js';

/** One path segment, percent-encoded ("." and ".." too, so that they stay one segment). */
export function seg(s: string | number): string {
  const e = encodeURIComponent(String(s));
  return e === '.' || e === '..' ? e.replace(/\./g, '%2E') : e;
}

/** An event message of a WebSocket: a JSON text message, or with `format=binary` a binary one
 * (the event as one JSON line, a newline, then the log bytes, which become `data`). */
export function parseEventMessage(m: WebSocketMessage): Record<string, unknown> {
  if (!m.binary) {
    const ev = JSON.parse(m.data.toString('utf8')) as Record<string, unknown>;
    // A JSON log event carries its bytes as `data` (UTF-8) or `data_b64`: both become a Buffer.
    if (typeof ev['data_b64'] === 'string') {
      ev['data'] = Buffer.from(ev['data_b64'] as string, 'base64');
      delete ev['data_b64'];
    } else if (typeof ev['data'] === 'string') {
      ev['data'] = Buffer.from(ev['data'] as string, 'utf8');
    }
    return ev;
  }
  const nl = m.data.indexOf(0x0a);
  const head = nl < 0 ? m.data : m.data.subarray(0, nl);
  const ev = JSON.parse(head.toString('utf8')) as Record<string, unknown>;
  ev['data'] = nl < 0 ? Buffer.alloc(0) : Buffer.from(m.data.subarray(nl + 1));
  return ev;
}

/** The typed error for an error code reported inside a 2xx answer (e.g. `wait_error`). */
export function errorFromCode(code: string, message: string): SandboxdError {
  const Cls = errorClassFor(code);
  return new Cls(message, { code, status: 0 });
}

/** A signal that aborts after `timeoutMs` (none when undefined or 0) or when `outer` aborts.
 * `dispose` clears the timer; `timedOut` says which it was. */
export function deadline(timeoutMs: number | undefined, outer?: AbortSignal): {
  signal: AbortSignal;
  timedOut: () => boolean;
  dispose: () => void;
} {
  const ctl = new AbortController();
  let fired = false;
  const timer = timeoutMs ? setTimeout(() => { fired = true; ctl.abort(); }, timeoutMs) : undefined;
  const onOuter = () => ctl.abort();
  if (outer) {
    if (outer.aborted) ctl.abort();
    else outer.addEventListener('abort', onOuter, { once: true });
  }
  return {
    signal: ctl.signal,
    timedOut: () => fired,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

/** The error to throw when a wait stopped on its deadline or its caller's signal. */
export function stopped(what: string, timedOut: boolean, timeoutMs: number | undefined): SandboxdError {
  if (timedOut) return new DeadlineExceededError(`${what} took longer than ${timeoutMs} ms`, { code: 'deadline_exceeded' });
  return new SandboxdError(`${what}: aborted`, { code: 'aborted' });
}

/** Waits `ms`, or less when the signal aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Bytes from a string (UTF-8) or bytes. */
export function toBuffer(data: string | Uint8Array): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Everything an async iterable of bytes yields, as one Buffer. */
export async function collect(chunks: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(toBuffer(c));
  return Buffer.concat(parts);
}
