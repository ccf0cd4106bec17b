// The files of a sandbox: read, write, list, stat, mkdir, remove, move, tar upload and
// download, and watching a directory. Paths are the sandbox's own ("/workspace/a.txt"); the
// daemon resolves them inside the sandbox's root and refuses ".." with InvalidArgumentError.

import { FailedPreconditionError } from './errors.js';
import { type Transport, bodyChunks } from './transport.js';
import { type TarEntry, type TarFile, createTar, readTar } from './tar.js';
import type { DirListing, FileInfo, FileWritten, TarStats, WatchEvent } from './types.js';
import { collect, seg, toBuffer } from './util.js';
import type { WebSocketConnection } from './ws.js';

/** A directory's entries; `truncated` when the daemon cut the listing short. */
export type FileList = FileInfo[] & { truncated: boolean };

export type TarSource = Uint8Array | AsyncIterable<Uint8Array | string> | TarEntry[];

export class Files {
  #t: Transport;
  readonly sandboxId: string;

  /** @internal */
  constructor(t: Transport, sandboxId: string) {
    this.#t = t;
    this.sandboxId = sandboxId;
  }

  #route(suffix = ''): string {
    return `v1/sandboxes/${seg(this.sandboxId)}/files${suffix}`;
  }

  /** A file's bytes; `offset`/`length` read a range. */
  async read(path: string, opts: { offset?: number; length?: number } = {}): Promise<Buffer> {
    const headers: Record<string, string> = {};
    if (opts.offset !== undefined || opts.length !== undefined) {
      const first = opts.offset ?? 0;
      headers['Range'] = opts.length !== undefined ? `bytes=${first}-${first + opts.length - 1}` : `bytes=${first}-`;
    }
    return (await this.#t.bytes('GET', this.#route(), { query: { path }, headers })).data;
  }

  /** A file's text (UTF-8). */
  async readText(path: string): Promise<string> {
    return (await this.read(path)).toString('utf8');
  }

  /** Replaces a file atomically. `mode` as a number (0o644) or an octal string ("0644"). */
  write(path: string, data: string | Uint8Array, opts: { mode?: number | string; parents?: boolean } = {}): Promise<FileWritten> {
    const mode = typeof opts.mode === 'number' ? opts.mode.toString(8).padStart(4, '0') : opts.mode;
    return this.#t.json<FileWritten>('PUT', this.#route(), {
      query: { path, mode, parents: opts.parents ? true : undefined },
      body: toBuffer(data),
    });
  }

  /** A directory's entries. */
  async list(path: string): Promise<FileList> {
    const r = await this.#t.bytes('GET', this.#route(), { query: { path } });
    if (!(r.headers.get('content-type') ?? '').includes('json')) {
      throw new FailedPreconditionError(`${path} is not a directory`, { code: 'failed_precondition' });
    }
    const listing = JSON.parse(r.data.toString('utf8')) as DirListing;
    return Object.assign(listing.entries, { truncated: listing.truncated === true });
  }

  /** One entry (a symlink itself, with its target). */
  stat(path: string): Promise<FileInfo> {
    return this.#t.json<FileInfo>('GET', this.#route(':stat'), { query: { path } });
  }

  /** Whether the path exists (NotFoundError becomes false). */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === 'not_found') return false;
      throw e;
    }
  }

  /** Creates a directory and its parents. */
  async mkdir(path: string, opts: { mode?: number | string } = {}): Promise<void> {
    const mode = typeof opts.mode === 'number' ? opts.mode.toString(8).padStart(4, '0') : opts.mode;
    await this.#t.json('POST', this.#route(':mkdir'), { query: { path, mode } });
  }

  /** Removes a file, a symlink or (with `recursive`) a directory and what it holds. */
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await this.#t.json('DELETE', this.#route(), { query: { path, recursive: opts.recursive ? true : undefined } });
  }

  /** Renames inside the sandbox. */
  async move(from: string, to: string, opts: { replace?: boolean } = {}): Promise<void> {
    await this.#t.json('POST', this.#route(':move'), { body: { from, to, ...(opts.replace ? { replace: true } : {}) } });
  }

  /** Extracts a tar stream into a directory: tar bytes, an async iterable of them, or entries
   * to pack ({name, data}). The daemon checks the whole stream first and writes nothing when
   * a name leads out. */
  async upload(dir: string, tar: TarSource, opts: { parents?: boolean } = {}): Promise<TarStats> {
    let body: Buffer;
    if (Array.isArray(tar)) body = createTar(tar);
    else if (tar instanceof Uint8Array) body = toBuffer(tar);
    else body = await collect(tar);
    return this.#t.json<TarStats>('PUT', this.#route(':tar'), {
      query: { path: dir, parents: opts.parents ? true : undefined },
      body,
      contentType: 'application/x-tar',
    });
  }

  /** A directory as a tar stream, piece by piece. */
  async *downloadStream(dir: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    const res = await this.#t.stream('GET', this.#route(':tar'), { query: { path: dir }, ...(opts.signal ? { signal: opts.signal } : {}) });
    yield* bodyChunks(res, this.#t.redact);
  }

  /** A directory as tar bytes. */
  download(dir: string): Promise<Buffer> {
    return collect(this.downloadStream(dir));
  }

  /** A directory's files, unpacked from its tar. */
  async downloadFiles(dir: string): Promise<TarFile[]> {
    return readTar(await this.download(dir));
  }

  /** Watches a directory: once this resolves the watch is in place, and its changes come as an
   * async iterator of events. */
  async watch(path: string): Promise<Watcher> {
    return new Watcher(await this.#t.websocket(this.#route(':watch'), { path }));
  }
}

/** Changes below a directory (`created`, `modified`, `deleted`, `moved`, and `overflow` when
 * they came faster than they were read: list the tree again). Ends when the directory goes
 * away or on `close()`. */
export class Watcher implements AsyncIterable<WatchEvent> {
  #ws: WebSocketConnection;

  /** @internal */
  constructor(ws: WebSocketConnection) {
    this.#ws = ws;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<WatchEvent> {
    for (;;) {
      const r = await this.#ws.next();
      if (r.done) {
        if (this.#ws.closeCode === 1013) yield { type: 'overflow' };
        return;
      }
      yield JSON.parse(r.value.data.toString('utf8')) as WatchEvent;
    }
  }

  /** The close code once closed. */
  get closeCode(): number | undefined {
    return this.#ws.closeCode;
  }

  close(): Promise<void> {
    return this.#ws.close();
  }
}
