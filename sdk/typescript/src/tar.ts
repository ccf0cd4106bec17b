// A small tar (ustar) writer and reader, for `files.upload()` and `files.download()`.

export interface TarEntry {
  /** A relative path ("a.txt", "src/main.c"); a directory's may end with "/". */
  name: string;
  type?: 'file' | 'directory' | 'symlink';
  /** A file's bytes (a string as UTF-8). */
  data?: string | Uint8Array;
  /** Permission bits (0o644 for files, 0o755 for directories by default). */
  mode?: number;
  /** A symlink's target. */
  linkTarget?: string;
  /** Seconds since the epoch. */
  mtime?: number;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, type: string, size: number, mode: number, mtime: number, link: string): Buffer {
  const h = Buffer.alloc(512);
  let prefix = '';
  let base = name;
  if (Buffer.byteLength(name) > 100) {
    // ustar: split at a "/" into a prefix (155) and a name (100); else a PAX header carries it.
    const cut = name.lastIndexOf('/', 155);
    if (cut > 0 && Buffer.byteLength(name.slice(cut + 1)) <= 100 && Buffer.byteLength(name.slice(0, cut)) <= 155) {
      prefix = name.slice(0, cut);
      base = name.slice(cut + 1);
    } else {
      throw new RangeError(`tar: the name ${JSON.stringify(name)} is too long`);
    }
  }
  h.write(base, 0, 100, 'utf8');
  h.write(octal(mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(Math.floor(mtime), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(type, 156, 'ascii');
  h.write(link, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/** Builds a tar stream of the entries (directories before what they hold, as given). */
export function createTar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  const now = Math.floor(Date.now() / 1000);
  for (const e of entries) {
    const type = e.type ?? (e.name.endsWith('/') ? 'directory' : 'file');
    if (type === 'directory') {
      const name = e.name.endsWith('/') ? e.name : e.name + '/';
      parts.push(header(name, '5', 0, e.mode ?? 0o755, e.mtime ?? now, ''));
    } else if (type === 'symlink') {
      parts.push(header(e.name, '2', 0, e.mode ?? 0o777, e.mtime ?? now, e.linkTarget ?? ''));
    } else {
      const data = e.data === undefined ? Buffer.alloc(0) : typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : Buffer.from(e.data);
      parts.push(header(e.name, '0', data.length, e.mode ?? 0o644, e.mtime ?? now, ''));
      parts.push(data);
      const pad = (512 - (data.length % 512)) % 512;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface TarFile {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  size: number;
  mtime: number;
  linkTarget?: string;
  data: Buffer;
}

function cstr(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
}

function num(b: Buffer): number {
  if (b[0]! & 0x80) {
    // base-256 (GNU) for large values
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!;
    return n;
  }
  const s = cstr(b).trim();
  return s ? parseInt(s, 8) : 0;
}

function paxRecords(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = parseInt(data.subarray(pos, sp).toString('ascii'), 10);
    if (!len) break;
    const rec = data.subarray(sp + 1, pos + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    pos += len;
  }
  return out;
}

/** The entries of a tar stream (ustar, PAX and GNU long names). */
export function readTar(tar: Uint8Array): TarFile[] {
  const buf = Buffer.from(tar.buffer, tar.byteOffset, tar.byteLength);
  const out: TarFile[] = [];
  let pos = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> = {};
  while (pos + 512 <= buf.length) {
    const h = buf.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const size = num(h.subarray(124, 136));
    const flag = String.fromCharCode(h[156]!);
    const data = buf.subarray(pos + 512, pos + 512 + size);
    pos += 512 + Math.ceil(size / 512) * 512;
    if (flag === 'x') {
      pax = { ...pax, ...paxRecords(data) };
      continue;
    }
    if (flag === 'g') continue;
    if (flag === 'L') {
      longName = cstr(data);
      continue;
    }
    if (flag === 'K') {
      longLink = cstr(data);
      continue;
    }
    const prefix = h.subarray(257, 263).toString('ascii').startsWith('ustar') ? cstr(h.subarray(345, 500)) : '';
    let name = pax['path'] ?? longName ?? (prefix ? `${prefix}/${cstr(h.subarray(0, 100))}` : cstr(h.subarray(0, 100)));
    const link = pax['linkpath'] ?? longLink ?? cstr(h.subarray(157, 257));
    const type = flag === '0' || flag === '\0' || flag === '7' ? 'file' : flag === '5' ? 'directory' : flag === '2' ? 'symlink' : 'other';
    if (type === 'directory' && name.endsWith('/')) name = name.slice(0, -1);
    out.push({
      name,
      type,
      mode: num(h.subarray(100, 108)),
      size: pax['size'] ? Number(pax['size']) : size,
      mtime: pax['mtime'] ? Number(pax['mtime']) : num(h.subarray(136, 148)),
      ...(type === 'symlink' ? { linkTarget: link } : {}),
      data: Buffer.from(data),
    });
    longName = undefined;
    longLink = undefined;
    pax = {};
  }
  return out;
}
