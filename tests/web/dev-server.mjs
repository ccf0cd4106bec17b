// A development stand-in for the daemon's static serving, for a daemon built without it:
// serves a built web page (DIR/index.html for / and /ui/..., DIR/assets/...) and passes /v1/...
// and /healthz to the daemon, WebSockets included (the key offered as the subprotocol
// "sandboxd.bearer.B64URL" goes on as "Authorization: Bearer KEY", and the answer names
// "sandboxd.v1", as the daemon itself does it).
//
//   node tests/web/dev-server.mjs --root DIR [--upstream URL (default $SANDBOXD_URL)] [--port N] [--exec CMD ARGS...]
//
// Not part of the product: the daemon serves the page itself (web_root).
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.txt': 'text/plain; charset=utf-8' };

export function startDevServer({ root, upstream, port = 0 }) {
  const up = new URL(upstream);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/v1/') || url.pathname === '/healthz' || url.pathname === '/metrics') {
      const p = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      p.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
      req.pipe(p);
      return;
    }
    let file;
    if (url.pathname.startsWith('/assets/') && !url.pathname.includes('..')) file = path.join(root, url.pathname);
    else if (url.pathname === '/' || url.pathname === '/ui' || url.pathname.startsWith('/ui/')) file = path.join(root, 'index.html');
    if (!file) { res.writeHead(404); res.end('not found'); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'cache-control': file.endsWith('index.html') ? 'no-cache' : 'max-age=31536000, immutable',
        // The policy the page is written for: its own scripts only, no inline script.
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
      });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  server.on('upgrade', (req, socket, head) => {
    const headers = { ...req.headers, host: up.host };
    const offered = String(req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
    const bearer = offered.find((p) => p.startsWith('sandboxd.bearer.'));
    if (bearer) {
      headers.authorization = 'Bearer ' + Buffer.from(bearer.slice('sandboxd.bearer.'.length), 'base64url').toString('utf8');
      delete headers['sec-websocket-protocol'];
    }
    const p = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers });
    p.on('upgrade', (r, upSocket, upHead) => {
      let lines = `HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n`;
      for (let i = 0; i < r.rawHeaders.length; i += 2) lines += `${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}\r\n`;
      if (bearer) lines += 'Sec-WebSocket-Protocol: sandboxd.v1\r\n';
      socket.write(lines + '\r\n');
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
      socket.on('close', () => upSocket.destroy());
    });
    p.on('response', (r) => {
      let lines = `HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n`;
      for (let i = 0; i < r.rawHeaders.length; i += 2) lines += `${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}\r\n`;
      socket.write(lines + '\r\n');
      r.pipe(socket);
    });
    p.on('error', () => socket.destroy());
    p.end();
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // --exec CMD ARGS: run CMD with SANDBOXD_WEB_URL pointing here, then exit with its status.
  const argv = process.argv.slice(2);
  const ex = argv.indexOf('--exec');
  const own = ex >= 0 ? argv.slice(0, ex) : argv;
  const arg = (n, d) => { const i = own.indexOf(n); return i >= 0 ? own[i + 1] : d; };
  const { server, url } = await startDevServer({ root: path.resolve(arg('--root')), upstream: arg('--upstream', process.env.SANDBOXD_URL), port: Number(arg('--port', 0)) });
  console.error('dev server at ' + url);
  if (ex >= 0) {
    const { spawn } = await import('node:child_process');
    const child = spawn(argv[ex + 1], argv.slice(ex + 2), { stdio: 'inherit', env: { ...process.env, SANDBOXD_WEB_URL: url } });
    child.on('exit', (code, signal) => {
      server.close();
      process.exit(code ?? (signal ? 1 : 0));
    });
  }
}
