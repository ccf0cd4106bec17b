// A small WebSocket client (RFC 6455) over node:http's upgrade, for Node 18 and 20, which have no
// stable global WebSocket. Client frames are masked; fragmented messages are reassembled; pings
// are answered; messages are read as an async iterator, with the socket paused while too many
// wait unread (the server then slows down instead of the client buffering without bound).

import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';

import { ConflictError, ConnectionError, DeadlineExceededError, SandboxdError, errorFromResponse } from './errors.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP_CONT = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

const HIGH_WATER_BYTES = 8 << 20;
const MAX_MESSAGE_BYTES = 256 << 20;

/** One message: text (`binary` false, `data` its UTF-8 bytes) or binary. */
export interface WebSocketMessage {
  binary: boolean;
  data: Buffer;
}

export interface ConnectOptions {
  headers?: Record<string, string>;
  /** How long the handshake may take. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Applied to every message that goes into an error. */
  redact?: (s: string) => string;
}

type Waiter = {
  resolve: (r: IteratorResult<WebSocketMessage>) => void;
  reject: (e: unknown) => void;
};

export class WebSocketConnection implements AsyncIterableIterator<WebSocketMessage> {
  /** The close code the server sent (1005 when its close frame had none); undefined while open or
   * when the connection dropped without one. */
  closeCode: number | undefined;
  closeReason = '';

  #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragmentOp = 0;
  #fragmentBytes = 0;
  #queue: WebSocketMessage[] = [];
  #queuedBytes = 0;
  #waiters: Waiter[] = [];
  #ended = false;
  #error: SandboxdError | undefined;
  #closeSent = false;
  #closed: Promise<void>;
  #markClosed!: () => void;
  #paused = false;
  #redact: (s: string) => string;

  /** Opens a WebSocket to `url` (http:, https:, ws: or wss:). Rejects with the API's typed error
   * when the server answers the handshake with an error status. */
  static connect(url: URL, opts: ConnectOptions = {}): Promise<WebSocketConnection> {
    const redact = opts.redact ?? ((s: string) => s);
    const secure = url.protocol === 'https:' || url.protocol === 'wss:';
    const key = randomBytes(16).toString('base64');
    const lib = secure ? https : http;
    return new Promise<WebSocketConnection>((resolve, reject) => {
      let settled = false;
      const fail = (e: SandboxdError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        req.destroy();
        reject(e);
      };
      const req = lib.request({
        protocol: secure ? 'https:' : 'http:',
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || (secure ? 443 : 80),
        path: url.pathname + url.search,
        method: 'GET',
        agent: false,
        headers: {
          ...opts.headers,
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Key': key,
          'Sec-WebSocket-Version': '13',
        },
      });
      const timeoutMs = opts.timeoutMs ?? 30_000;
      const timer = timeoutMs > 0
        ? setTimeout(() => fail(new DeadlineExceededError(`WebSocket handshake took longer than ${timeoutMs} ms`, { code: 'deadline_exceeded' })), timeoutMs)
        : undefined;
      const onAbort = () => fail(new SandboxdError('aborted', { code: 'aborted' }));
      if (opts.signal) {
        if (opts.signal.aborted) {
          queueMicrotask(onAbort);
        } else {
          opts.signal.addEventListener('abort', onAbort, { once: true });
        }
      }
      req.on('error', (e: NodeJS.ErrnoException) => {
        fail(new ConnectionError(redact(`cannot reach ${url.host}: ${e.code ?? e.message}`), {
          code: 'unavailable',
          cause: sanitizedCause(e, redact),
        }));
      });
      req.on('response', (res) => {
        // Not upgraded: an error answer (401, 404, 409, 426, …).
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', () => undefined);
        res.on('end', () => {
          const retry = Number(res.headers['retry-after']);
          const err = errorFromResponse(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'),
            Number.isFinite(retry) ? retry : undefined);
          fail(rebuild(err, redact));
        });
      });
      req.on('upgrade', (res, socket, head) => {
        if (settled) {
          socket.destroy();
          return;
        }
        const accept = createHash('sha1').update(key + GUID).digest('base64');
        if (res.headers['sec-websocket-accept'] !== accept) {
          socket.destroy();
          fail(new ConnectionError('the server answered the WebSocket handshake with a wrong Sec-WebSocket-Accept', { code: 'unavailable' }));
          return;
        }
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        const ws = new WebSocketConnection(socket, redact);
        if (head && head.length) ws.#onData(head);
        resolve(ws);
      });
      req.end();
    });
  }

  private constructor(socket: Socket, redact: (s: string) => string) {
    this.#socket = socket;
    this.#redact = redact;
    this.#closed = new Promise((r) => (this.#markClosed = r));
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => this.#onData(c));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (this.closeCode === undefined && !this.#error) {
        this.#error = new ConnectionError(this.#redact(`WebSocket connection failed: ${e.code ?? e.message}`), {
          code: 'unavailable',
          cause: sanitizedCause(e, this.#redact),
        });
      }
    });
    socket.on('close', () => this.#finish());
  }

  /** True once the connection is closed (or closing). */
  get closed(): boolean {
    return this.#ended || this.#closeSent;
  }

  /** Sends a text message (a string) or a binary one (bytes). */
  send(data: string | Uint8Array): Promise<void> {
    if (typeof data === 'string') return this.#sendFrame(OP_TEXT, Buffer.from(data, 'utf8'));
    return this.#sendFrame(OP_BINARY, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }

  /** Sends a close frame and waits (up to `timeoutMs`) for the server's, then ends the socket. */
  async close(code = 1000, reason = '', timeoutMs = 5000): Promise<void> {
    if (!this.#ended && !this.#closeSent) {
      const r = Buffer.from(reason, 'utf8');
      const payload = Buffer.alloc(2 + r.length);
      payload.writeUInt16BE(code, 0);
      r.copy(payload, 2);
      this.#closeSent = true;
      await this.#sendFrame(OP_CLOSE, payload, true).catch(() => undefined);
    }
    if (!this.#ended) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#closed,
        new Promise<void>((r) => {
          t = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(t);
      if (!this.#ended) this.#socket.destroy();
    }
    await this.#closed;
  }

  /** Resolves once the connection has ended, however it ended. */
  waitClosed(): Promise<void> {
    return this.#closed;
  }

  next(): Promise<IteratorResult<WebSocketMessage>> {
    const m = this.#queue.shift();
    if (m) {
      this.#queuedBytes -= m.data.length;
      if (this.#paused && this.#queuedBytes < HIGH_WATER_BYTES / 2) {
        this.#paused = false;
        this.#socket.resume();
      }
      return Promise.resolve({ value: m, done: false });
    }
    if (this.#ended) {
      if (this.#error) return Promise.reject(this.#error);
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  async return(): Promise<IteratorResult<WebSocketMessage>> {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WebSocketMessage> {
    return this;
  }

  // ---- internals ----

  #sendFrame(op: number, payload: Buffer, evenIfClosing = false): Promise<void> {
    if (this.#ended || (this.#closeSent && !evenIfClosing)) {
      return Promise.reject(this.#error ?? new ConnectionError('the WebSocket is closed', { code: 'unavailable' }));
    }
    const len = payload.length;
    const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const frame = Buffer.allocUnsafe(headLen + 4 + len);
    frame[0] = 0x80 | op;
    if (len < 126) {
      frame[1] = 0x80 | len;
    } else if (len < 65536) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(len, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = randomBytes(4);
    mask.copy(frame, headLen);
    const body = headLen + 4;
    for (let i = 0; i < len; i++) frame[body + i] = payload[i]! ^ mask[i & 3]!;
    return new Promise((resolve, reject) => {
      this.#socket.write(frame, (err) => (err ? reject(new ConnectionError(`WebSocket write failed: ${err.message}`, { code: 'unavailable' })) : resolve()));
    });
  }

  #onData(chunk: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    for (;;) {
      const buf = this.#buf;
      if (buf.length < 2) return;
      const b0 = buf[0]!;
      const b1 = buf[1]!;
      const fin = (b0 & 0x80) !== 0;
      const op = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let pos = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        pos = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        const big = buf.readBigUInt64BE(2);
        if (big > BigInt(MAX_MESSAGE_BYTES)) return this.#protocolError('a frame over the size limit');
        len = Number(big);
        pos = 10;
      }
      let mask: Buffer | undefined;
      if (masked) {
        if (buf.length < pos + 4) return;
        mask = buf.subarray(pos, pos + 4);
        pos += 4;
      }
      if (buf.length < pos + len) return;
      let payload = buf.subarray(pos, pos + len);
      this.#buf = buf.subarray(pos + len);
      if (mask) {
        const copy = Buffer.allocUnsafe(len);
        for (let i = 0; i < len; i++) copy[i] = payload[i]! ^ mask[i & 3]!;
        payload = copy;
      }
      this.#onFrame(fin, op, payload);
      if (this.#ended) return;
    }
  }

  #onFrame(fin: boolean, op: number, payload: Buffer): void {
    switch (op) {
      case OP_PING:
        this.#sendFrame(OP_PONG, Buffer.from(payload)).catch(() => undefined);
        return;
      case OP_PONG:
        return;
      case OP_CLOSE: {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeReason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
        if (!this.#closeSent) {
          this.#closeSent = true;
          const echo = payload.length >= 2 ? Buffer.from(payload.subarray(0, 2)) : Buffer.alloc(0);
          this.#sendFrame(OP_CLOSE, echo, true).catch(() => undefined);
        }
        this.#socket.end();
        this.#finish();
        return;
      }
      case OP_TEXT:
      case OP_BINARY:
        if (this.#fragmentOp) return this.#protocolError('a new message inside a fragmented one');
        if (fin) return this.#deliver(op === OP_BINARY, Buffer.from(payload));
        this.#fragmentOp = op;
        this.#fragments = [Buffer.from(payload)];
        this.#fragmentBytes = payload.length;
        return;
      case OP_CONT:
        if (!this.#fragmentOp) return this.#protocolError('a continuation without a message');
        this.#fragments.push(Buffer.from(payload));
        this.#fragmentBytes += payload.length;
        if (this.#fragmentBytes > MAX_MESSAGE_BYTES) return this.#protocolError('a message over the size limit');
        if (fin) {
          const binary = this.#fragmentOp === OP_BINARY;
          const data = Buffer.concat(this.#fragments);
          this.#fragmentOp = 0;
          this.#fragments = [];
          this.#fragmentBytes = 0;
          this.#deliver(binary, data);
        }
        return;
      default:
        this.#protocolError(`an unknown opcode ${op}`);
    }
  }

  #deliver(binary: boolean, data: Buffer): void {
    const m = { binary, data };
    const w = this.#waiters.shift();
    if (w) {
      w.resolve({ value: m, done: false });
      return;
    }
    this.#queue.push(m);
    this.#queuedBytes += data.length;
    if (!this.#paused && this.#queuedBytes >= HIGH_WATER_BYTES) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #protocolError(what: string): void {
    this.#error ??= new ConnectionError(`WebSocket protocol error: ${what}`, { code: 'unavailable' });
    this.#socket.destroy();
    this.#finish();
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.closeCode === undefined && !this.#error && !this.#closeSent) {
      this.#error = new ConnectionError('the WebSocket connection ended without a close frame', { code: 'unavailable' });
    }
    if (this.#paused) this.#socket.resume();
    for (const w of this.#waiters.splice(0)) {
      if (this.#error) w.reject(this.#error);
      else w.resolve({ value: undefined, done: true });
    }
    this.#markClosed();
  }
}

/** A copy of an error with the message redacted (the original class, code and status kept). */
function rebuild(e: SandboxdError, redact: (s: string) => string): SandboxdError {
  const Cls = e.constructor as new (m: string, o: object) => SandboxdError;
  return new Cls(redact(e.message), {
    code: e.code,
    status: e.status,
    ...(e.retryAfterS !== undefined ? { retryAfterS: e.retryAfterS } : {}),
    ...(e instanceof ConflictError ? { conflicts: e.conflicts.map((c) => ({ path: redact(c.path), why: redact(c.why) })) } : {}),
  });
}

/** A cause to attach to an error: the low-level error's code and message only (redacted). */
export function sanitizedCause(e: unknown, redact: (s: string) => string): Error {
  const err = e as { code?: unknown; message?: unknown; name?: unknown };
  const c = new Error(redact(String(err?.message ?? e)));
  if (typeof err?.code === 'string') (c as Error & { code: string }).code = err.code;
  if (typeof err?.name === 'string') c.name = err.name;
  return c;
}

export { rebuild as rebuildError };
