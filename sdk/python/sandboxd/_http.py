"""HTTP transport: keep-alive connection reuse, typed errors, retries for idempotent requests.

Only the standard library (http.client). The API key lives in a _Secret, whose repr and str
never show it; requests are logged (logger "sandboxd", DEBUG) by method, path and status only.
"""

import email.utils
import http.client
import json
import logging
import random
import select
import socket
import ssl as _ssl
import threading
import time
import urllib.parse

from . import errors

log = logging.getLogger("sandboxd")

IDEMPOTENT_METHODS = frozenset(["GET", "HEAD"])
RETRY_STATUSES = frozenset([429, 503])


class Closing:
    """A ``with`` block closes it (its ``close()``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Secret:
    """Holds the API key; shows as <redacted> everywhere."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        return self._value

    def __bool__(self):
        return bool(self._value)

    def __repr__(self):
        return "<redacted>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("the API key is not picklable")


class RetryPolicy:
    """Retries of idempotent requests (GET/HEAD, and POSTs that carry an Idempotency-Key).

    A request is tried again after a connection error, a 503 or a 429, at most ``max_retries``
    times, waiting ``backoff * 2**n`` seconds (with jitter, at most ``max_backoff``), or the
    server's ``Retry-After`` (at most ``max_retry_after``) when it sends one.
    """

    def __init__(self, max_retries=5, backoff=0.1, max_backoff=2.0, max_retry_after=60.0):
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after

    def delay(self, attempt, retry_after=None):
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        d = min(self.max_backoff, self.backoff * (2 ** attempt))
        return d / 2 + random.uniform(0, d / 2)

    def __repr__(self):
        return "RetryPolicy(max_retries=%r, backoff=%r, max_backoff=%r, max_retry_after=%r)" % (
            self.max_retries, self.backoff, self.max_backoff, self.max_retry_after)


def parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Endpoint:
    """Where the daemon is: http://HOST:PORT, https://HOST:PORT, or unix:/PATH."""

    def __init__(self, url):
        url = url.strip()
        if url.startswith("unix:"):
            path = url[len("unix:"):]
            if path.startswith("//"):
                path = path[2:]
            if not path.startswith("/"):
                raise ValueError("a unix: URL names an absolute socket path (unix:/run/x.sock)")
            self.scheme, self.unix_path, self.host, self.port = "unix", path, "localhost", None
            self.base_path = ""
        else:
            if "://" not in url:
                url = "http://" + url
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https"):
                raise ValueError("the daemon URL must be http://, https:// or unix:/PATH")
            if u.username or u.password:
                raise ValueError("put the API key in api_key (or SANDBOXD_API_KEY), not the URL")
            self.scheme, self.unix_path = u.scheme, None
            self.host = u.hostname or "127.0.0.1"
            self.port = u.port or (443 if u.scheme == "https" else 80)
            self.base_path = u.path.rstrip("/")
        self.url = url

    def connection(self, timeout):
        if self.scheme == "unix":
            return _UnixHTTPConnection(self.unix_path, timeout)
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=_ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def ws_uri(self, target):
        if self.scheme == "unix":
            return "ws://localhost" + target
        scheme = "wss" if self.scheme == "https" else "ws"
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s" % (scheme, host, self.port, target)


def _connection_dropped(conn):
    """True when a pooled connection's socket was closed by the server (or has stray bytes)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Response:
    """A complete answer: ``status``, ``headers`` (an http.client.HTTPMessage), ``body`` bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.ProtocolError("the answer is not JSON: %s" % e,
                                       status=self.status) from None


class StreamingResponse(Closing):
    """An answer whose body is read piece by piece; close it (or use ``with``) when done."""

    def __init__(self, transport, conn, resp):
        self._transport = transport
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def iter_chunks(self, size=65536):
        """Yields the body's bytes as they arrive."""
        try:
            while True:
                try:
                    chunk = self._resp.read1(size)
                except socket.timeout:
                    raise errors.Timeout("no data from the daemon in time") from None
                except (OSError, http.client.HTTPException) as e:
                    raise errors.ConnectionFailed("the stream broke: %s" % e) from None
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def read(self):
        return b"".join(self.iter_chunks())

    def readinto_file(self, f, size=65536):
        n = 0
        for chunk in self.iter_chunks(size):
            f.write(chunk)
            n += len(chunk)
        return n

    def close(self):
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._resp.isclosed() and not self._resp.will_close:
            self._transport._release(conn)
        else:
            conn.close()



class Transport:
    def __init__(self, url, api_key, timeout=60.0, retry=None, user_agent=None, max_idle=8):
        self.endpoint = Endpoint(url)
        self._key = api_key if isinstance(api_key, _Secret) else _Secret(api_key or "")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.user_agent = user_agent or "sandboxd-python"
        self._pool = []
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._ws_loop = None
        self.attempts = 0  # every HTTP attempt made (tests read it)
        self.feed_missing = False  # the daemon answered 404 to /v1/events/sandboxes

    def __repr__(self):
        return "Transport(url=%r)" % self.endpoint.url

    # -- connections -------------------------------------------------------------------------

    def _acquire(self, timeout):
        while True:
            with self._lock:
                conn = self._pool.pop() if self._pool else None
            if conn is None:
                return self.endpoint.connection(timeout)
            if _connection_dropped(conn):
                conn.close()
                continue
            conn.timeout = timeout
            conn.sock.settimeout(timeout)
            return conn

    def _release(self, conn):
        with self._lock:
            if len(self._pool) < self._max_idle:
                self._pool.append(conn)
                return
        conn.close()

    def close(self):
        with self._lock:
            pool, self._pool = self._pool, []
        for c in pool:
            c.close()
        loop, self._ws_loop = self._ws_loop, None
        if loop is not None:
            loop.stop()

    # -- requests ----------------------------------------------------------------------------

    def headers(self, extra=None):
        h = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self._key:
            h["Authorization"] = "Bearer " + self._key.reveal()
        if extra:
            h.update(extra)
        return h

    def target(self, path, query=None):
        t = self.endpoint.base_path + path
        if query:
            items = []
            for k, v in query.items():
                if v is None:
                    continue
                if isinstance(v, (list, tuple)):
                    items.extend((k, _qv(x)) for x in v)
                else:
                    items.append((k, _qv(v)))
            if items:
                t += "?" + urllib.parse.urlencode(items, quote_via=urllib.parse.quote)
        return t

    def scrub(self, text):
        key = self._key.reveal()
        if key and text and key in text:
            text = text.replace(key, "<redacted>")
        return text

    def _error(self, status, body, headers, method, path):
        err = errors.error_from_response(
            status, body, retry_after=parse_retry_after(headers.get("Retry-After")),
            method=method, path=path)
        err.message = self.scrub(err.message)
        err.args = (err.message,)
        for c in getattr(err, "conflicts", ()):
            c["path"], c["why"] = self.scrub(c["path"]), self.scrub(c["why"])
        return err

    def request(self, method, path, query=None, body=None, headers=None, *, idempotent=None,
                timeout=None, stream=False):
        """Sends one request and returns a Response (or a StreamingResponse with stream=True).

        Raises the typed error for any status >= 400. Idempotent requests (GET, HEAD, and any
        with an Idempotency-Key header) are retried per the RetryPolicy; others never are.
        """
        method = method.upper()
        extra = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            extra.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if body is None and method in ("POST", "PUT"):
            body = b""
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS or any(
                k.lower() == "idempotency-key" for k in extra)
        hdrs = self.headers(extra)
        target = self.target(path, query)
        timeout = self.timeout if timeout is None else timeout
        if timeout == 0:
            timeout = None
        attempt = 0
        while True:
            self.attempts += 1
            conn = None
            try:
                conn = self._acquire(timeout)
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
                status = resp.status
                if stream and status < 400:
                    log.debug("%s %s -> %d (streaming)", method, path, status)
                    return StreamingResponse(self, conn, resp)
                data = resp.read()
            except socket.timeout:
                if conn is not None:
                    conn.close()
                raise errors.Timeout("no answer to %s %s within %ss" % (method, path, timeout),
                                     method=method, path=path) from None
            except (OSError, http.client.HTTPException) as e:
                if conn is not None:
                    conn.close()
                err = errors.ConnectionFailed(
                    "cannot reach the daemon at %s: %s" % (self.endpoint.url,
                                                           self.scrub(str(e)) or type(e).__name__),
                    method=method, path=path)
                if idempotent and attempt < self.retry.max_retries:
                    d = self.retry.delay(attempt)
                    log.debug("%s %s: %s; retry %d in %.2fs", method, path, type(e).__name__,
                              attempt + 1, d)
                    time.sleep(d)
                    attempt += 1
                    continue
                raise err from None
            if resp.will_close:
                conn.close()
            else:
                self._release(conn)
            log.debug("%s %s -> %d", method, path, status)
            if status in RETRY_STATUSES and idempotent and attempt < self.retry.max_retries:
                d = self.retry.delay(attempt, parse_retry_after(resp.headers.get("Retry-After")))
                log.debug("%s %s: %d; retry %d in %.2fs", method, path, status, attempt + 1, d)
                time.sleep(d)
                attempt += 1
                continue
            if status >= 400:
                raise self._error(status, data, resp.headers, method, path)
            return Response(status, resp.headers, data)

    def json(self, method, path, query=None, body=None, **kw):
        return self.request(method, path, query, body, **kw).json()

    # -- websockets --------------------------------------------------------------------------

    def websocket(self, path, query=None, *, open_timeout=None):
        """Opens a WebSocket on ``path`` (a GET: retried like one). Returns a _ws.WebSocket."""
        from . import _ws
        with self._lock:
            if self._ws_loop is None:
                self._ws_loop = _ws.LoopThread()
            loop = self._ws_loop
        target = self.target(path, query)
        hdrs = self.headers()
        hdrs.pop("Accept", None)
        attempt = 0
        while True:
            self.attempts += 1
            try:
                ws = _ws.connect(loop, self.endpoint, target, hdrs,
                                 open_timeout if open_timeout is not None else self.timeout)
                log.debug("GET %s -> 101", path)
                return ws
            except errors.SandboxdError as e:
                e.method, e.path = "GET", path
                e.message = self.scrub(e.message)
                e.args = (e.message,)
                retryable = isinstance(e, errors.ConnectionFailed) or e.status in RETRY_STATUSES
                if retryable and attempt < self.retry.max_retries:
                    d = self.retry.delay(attempt, e.retry_after)
                    log.debug("GET %s (websocket): %s; retry %d in %.2fs", path, e.code,
                              attempt + 1, d)
                    time.sleep(d)
                    attempt += 1
                    continue
                raise


def _qv(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def seg(value):
    """One path segment, percent-encoded (ids never smuggle a '/' or '..' into the path)."""
    value = str(value)
    if value in ("", ".", ".."):
        raise errors.InvalidArgument("not a valid id: %r" % value)
    return urllib.parse.quote(value, safe="")
