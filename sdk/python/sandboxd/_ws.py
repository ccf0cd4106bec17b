"""A synchronous WebSocket over websockets' asyncio client (websockets 10.4 has no sync client).

One private event loop runs in a daemon thread per Client; each call here submits a coroutine to
it and waits for the result. A refused handshake becomes the typed error of the daemon's JSON
error body (read from the handshake response). websockets' DEBUG log prints request headers,
the API key among them: the connections here log through a logger that never logs DEBUG.
"""

import asyncio
import concurrent.futures
import logging
import threading
import weakref

from . import errors
from ._http import Closing

try:
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatusCode
    from websockets.legacy.client import WebSocketClientProtocol
except ImportError:  # HTTP works without it; streams say what is missing
    websockets = None
    WebSocketClientProtocol = object

MAX_MESSAGE = 64 << 20


class _QuietLogger(logging.LoggerAdapter):
    """websockets' logger, minus DEBUG (which would print the Authorization header)."""

    def isEnabledFor(self, level):
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, *args, **kwargs):
        pass


_LOGGER = _QuietLogger(logging.getLogger("sandboxd.websocket"), {})


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.transports = weakref.WeakSet()
        self.thread = threading.Thread(target=self._run, name="sandboxd-websocket", daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout=None):
        """Runs ``coro`` on the loop and returns its result; raises errors.Timeout after
        ``timeout`` seconds (the coroutine is cancelled)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("sandboxd: a blocking call from the websocket loop's own thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            try:
                fut.result(5)  # let the cancellation land before the next call
            except BaseException:
                pass
            raise errors.Timeout("nothing arrived within %ss" % timeout) from None

    def stop(self):
        """Drops every connection still open, then ends the loop and its thread."""
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            try:
                asyncio.run_coroutine_threadsafe(self._drop_all(), self.loop).result(10)
            except Exception:
                pass
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self.thread:
                self.thread.join(5)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


    async def _drop_all(self):
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        for transport in list(self.transports):
            transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)


class _Protocol(WebSocketClientProtocol):
    """Keeps the body of a refused handshake (the daemon's JSON error) for the typed error."""

    error_body = b""

    async def read_http_response(self):
        status, headers = await super().read_http_response()
        if status != 101:
            try:
                n = int(headers.get("Content-Length") or 0)
            except ValueError:
                n = 0
            if 0 < n <= 1 << 16:
                try:
                    self.error_body = await asyncio.wait_for(self.reader.readexactly(n), 5)
                except Exception:  # the status alone still says what failed
                    pass
        return status, headers


def _require():
    if websockets is None:
        raise ImportError("sandboxd streams need the 'websockets' package "
                          "(Debian: apt-get install python3-websockets)")


async def _open(endpoint, target, headers, open_timeout):
    made = []

    def factory(*args, **kwargs):
        p = _Protocol(*args, **kwargs)
        made.append(p)
        return p

    common = dict(extra_headers=headers, create_protocol=factory, logger=_LOGGER,
                  open_timeout=open_timeout, max_size=MAX_MESSAGE, ping_interval=20,
                  ping_timeout=20, close_timeout=5, compression=None)
    uri = endpoint.ws_uri(target)
    try:
        if endpoint.scheme == "unix":
            return await websockets.unix_connect(endpoint.unix_path, uri, **common)
        return await websockets.connect(uri, **common)
    except InvalidStatusCode as e:
        from ._http import parse_retry_after
        body = made[-1].error_body if made else b""
        raise errors.error_from_response(
            e.status_code, body,
            retry_after=parse_retry_after(e.headers.get("Retry-After") if e.headers else None))
    except asyncio.TimeoutError:
        raise errors.ConnectionFailed("the WebSocket handshake timed out") from None
    except InvalidHandshake as e:
        raise errors.ProtocolError("the WebSocket handshake failed: %s" % e) from None
    except OSError as e:
        raise errors.ConnectionFailed("cannot reach the daemon at %s: %s"
                                      % (endpoint.url, e)) from None


def connect(loop, endpoint, target, headers, open_timeout):
    _require()
    proto = loop.call(_open(endpoint, target, headers, open_timeout))
    if proto.transport is not None:
        loop.transports.add(proto.transport)
    return WebSocket(loop, proto)


class WebSocket(Closing):
    """A blocking WebSocket. ``recv`` returns str (text) or bytes (binary), or None once the
    connection closed (``close_code`` and ``close_reason`` then say how)."""

    def __init__(self, loop, proto):
        self._loop = loop
        self._proto = proto
        self.close_code = None
        self.close_reason = ""

    def __repr__(self):
        return "<sandboxd WebSocket %s>" % ("closed" if self.close_code is not None else "open")

    def recv(self, timeout=None):
        if self.close_code is not None:
            return None

        async def one():
            return await self._proto.recv()

        try:
            return self._loop.call(one(), timeout)
        except ConnectionClosed as e:
            self._closed(e)
            return None

    def send(self, data):
        async def one():
            await self._proto.send(data)

        try:
            self._loop.call(one(), 30)
        except ConnectionClosed as e:
            self._closed(e)
            raise errors.ConnectionFailed("the WebSocket is closed (%s)" % self.close_code) \
                from None

    def close(self, code=1000):
        if self._proto is None:
            return

        async def one():
            await self._proto.close(code)

        try:
            self._loop.call(one(), 10)
        except Exception:
            pass
        if self.close_code is None:
            self.close_code = self._proto.close_code or code

    def _closed(self, e):
        rcvd = getattr(e, "rcvd", None)
        self.close_code = rcvd.code if rcvd is not None else 1006
        self.close_reason = rcvd.reason if rcvd is not None else ""

    @property
    def closed(self):
        return self.close_code is not None

