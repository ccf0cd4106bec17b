// The daemon's HTTP API as the page uses it: the key lives in this module's memory only (never
// in localStorage, sessionStorage or a cookie), so it is gone when the tab closes or reloads.

let apiKey = null;
let unauthorized = () => {};
// Server clock minus ours, in ms (from the Date header of the sign-in answer).
let skewMs = 0;

export function setKey(key) { apiKey = key; }
export function clearKey() { apiKey = null; }
export function onUnauthorized(fn) { unauthorized = fn; }
export const serverNow = () => Date.now() + skewMs;

// `body`: the error answer's JSON, for what an answer adds beside `error` (e.g. `conflicts`).
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// A request with `Authorization: Bearer KEY`. JSON bodies are encoded; the answer is JSON or
// text by its content type (`raw: true` gives the Response). A failure throws ApiError with the
// API's error.message; a 401 also signs out, unless `quiet`.
export async function api(path, { method = 'GET', body, raw = false, signal, quiet = false } = {}) {
  if (apiKey === null) throw new ApiError(401, 'unauthenticated', 'Sign in first.');
  const headers = { Authorization: 'Bearer ' + apiKey };
  let payload = body;
  if (body !== undefined && typeof body !== 'string' && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, cache: 'no-store', signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unavailable', 'The daemon could not be reached (' + e.message + ').');
  }
  const date = res.headers.get('date');
  if (date && path === '/v1/info') skewMs = Date.parse(date) + 500 - Date.now();
  if (!res.ok) {
    let code = 'http_' + res.status;
    let message = `${res.status} ${res.statusText}`;
    let body = null;
    try {
      const j = await res.json();
      if (j && j.error && typeof j.error.message === 'string') {
        message = j.error.message;
        code = j.error.code || code;
        body = j;
      }
    } catch { /* not JSON: keep the status line */ }
    if (res.status === 401 && !quiet) unauthorized(message);
    throw new ApiError(res.status, code, message, body);
  }
  if (raw) return res;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const enc = encodeURIComponent;

// base64url without padding of the key's UTF-8 bytes.
export function base64url(text) {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// Every socket the page has open, for the test hook below.
const sockets = new Set();

// A WebSocket to the daemon. Browsers cannot set headers on one, so the key travels as the
// subprotocol "sandboxd.bearer.BASE64URL(KEY)" beside "sandboxd.v1", which the daemon answers.
export function openSocket(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url, ['sandboxd.v1', 'sandboxd.bearer.' + base64url(apiKey ?? '')]);
  ws.binaryType = 'arraybuffer';
  sockets.add(ws);
  ws.addEventListener('close', () => sockets.delete(ws));
  return ws;
}

export function closeAllSockets() {
  for (const ws of sockets) ws.close();
}

// For the browser tests: drop every WebSocket as a network failure would (they resume).
window.sandboxdTest = {
  dropSockets() {
    const n = sockets.size;
    for (const ws of sockets) ws.close(4000, 'dropped by test');
    return n;
  },
  socketCount: () => sockets.size,
};
