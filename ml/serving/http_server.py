"""HTTP/1.1 on asyncio over llhttp (httptools, the parser uvicorn and Node use): keep-alive,
pipelining, HTTP/1.0, chunked bodies, `Expect: 100-continue`, one write per answer.

The parsing of the protocol is llhttp's, as RFC 9112 says it: a malformed request line, a bad
chunk, two Content-Length headers, or Content-Length beside Transfer-Encoding (the request
smuggling vectors behind a proxy) are its errors, answered 400 and the connection closed. What is
ours is the server around it, kept small because the model call takes tens of microseconds and
everything else is the latency budget:
- limits: headers over MAX_HEADER_BYTES are answered 431, a body over the server's limit 413
  (declared by Content-Length, or counted as chunks arrive);
- time: a request's headers must arrive within HEADER_SECONDS of its first byte and a started
  request must keep sending at least every READ_SECONDS (else 408), an idle keep-alive connection
  is closed after IDLE_SECONDS: slow or stalled clients cannot hold the server;
- a request refused before its body was read (413 and the like) is answered, then the connection
  is half-closed and what the client still sends is read and dropped (up to a bound in bytes and
  time) before closing: closing with unread bytes makes the kernel send a reset, and clients that
  send the whole body before reading (urllib, requests) then report "connection reset by peer"
  instead of the answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from http import HTTPStatus

import httptools
import orjson
from modelyard.ml.serving.app import Response

log = logging.getLogger("modelyard.serving")

Handler = Callable[[str, str, dict[str, str], bytes], Response]
MAX_HEADER_BYTES = 32 * 1024
HEADER_SECONDS = 10.0
READ_SECONDS = 30.0
IDLE_SECONDS = 60.0
# How much of a refused body is read and dropped so that the client reads the refusal: up to
# this many bytes, or twice the body limit if more (a body somewhat over the limit is always read
# to its end), for at most this long: a huge or stalled body cannot hold a connection open.
DISCARD_MIN_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 10.0
# A keep-alive connection is asked to reconnect (`Connection: close` on an answer) once this old:
# a Service spreads connections, not requests, so without it a long-lived client would stay on
# the pods it first reached, after a blue/green switch on the standby for good.
MAX_CONNECTION_AGE_SECONDS = 10.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


class _Refused(Exception):
    """Raised from a parser callback: the request was answered with an error, stop parsing."""


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, max_body: int, server: HttpServer) -> None:
        self.handler = handler
        self.max_body = max_body
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False
        self.last_active = self.opened = 0.0
        # The request being read.
        self.in_request = False
        self.started = 0.0
        self.url = b""
        self.header_bytes = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.body: list[bytes] = []
        self.body_bytes = 0
        # A body refused as too large is still read, through the parser, and dropped (see
        # _refuse_body); after any other refusal, the bytes to read and drop before closing.
        self.dropping = False
        self.discard_left: int | None = None
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.last_active = self.opened = time.monotonic()
        self._arm(self.server.idle_seconds, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.discard_left is not None:
            self.discard_left -= len(data)
            if self.discard_left <= 0:
                self._close()  # the whole body, or as much of it as the bound allows
            return
        self.busy = True
        try:
            self.parser.feed_data(data)
        except _Refused:
            pass
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not served here")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}")
        finally:
            self.busy = False
        if self.in_request and self.transport is not None and not self._refusing:
            # Bytes keep a request alive for READ_SECONDS more, but never its headers past
            # HEADER_SECONDS from its first byte (a slow trickle cannot hold the connection).
            seconds = self.server.read_seconds
            if not self.headers_done:
                deadline = self.started + self.server.header_seconds
                seconds = min(seconds, deadline - time.monotonic())
            self._arm(max(seconds, 0.0), self._timed_out)
        if self.server.draining and not self.in_request and not self._refusing:
            self._close()

    @property
    def _refusing(self) -> bool:
        return self.dropping or self.discard_left is not None

    # llhttp callbacks

    def on_message_begin(self) -> None:
        self.in_request, self.started = True, time.monotonic()
        self.url, self.header_bytes, self.headers, self.headers_done = b"", 0, {}, False
        self.body, self.body_bytes = [], 0
        self._arm(self.server.header_seconds, self._timed_out)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        declared = self.headers.get("content-length")
        if declared is not None and int(declared) > self.max_body:  # llhttp checked the digits
            self._refuse_body(int(declared))
        elif self.headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(_CONTINUE)  # curl waits a second for it before a large body

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.dropping:
            if self.body_bytes > self.server.discard_bytes:
                self._close()  # as much of it as the bound allows
                raise _Refused
            return
        if self.body_bytes > self.max_body:  # a chunked body, counted as it comes
            self._refuse_body(self.body_bytes)
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_request = False
        if self.dropping:  # the refused body was read to its end
            self._close()
            raise _Refused
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method().decode("ascii")
        target = self.url.decode("latin-1")
        body = b"".join(self.body)
        try:
            response = self.handler(method, target, self.headers, body)
        except Exception:  # never let one request take the worker down
            log.exception("unhandled error answering %s %s", method, target)
            self._send_error(500, "internal error (logged by the server)", close=not keep_alive)
            return
        aged = time.monotonic() - self.opened > MAX_CONNECTION_AGE_SECONDS
        close = not keep_alive or self.server.draining or aged
        self._write(
            response.status, response.headers, b"" if method == "HEAD" else response.body, close
        )
        if response.after is not None:
            asyncio.get_running_loop().call_soon(response.after)
        if close:
            self._close()
            raise _Refused  # nothing after this answer is read (llhttp refuses it too)
        self._arm(self.server.idle_seconds, self._idle)

    # answers

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, f"request headers over {MAX_HEADER_BYTES} bytes")
            raise _Refused

    def _over_limit(self, size: int) -> str:
        return (
            f"body of {size} bytes is over this server's limit of {self.max_body} bytes: send "
            "smaller batches"
        )

    def _send_error(self, status: int, message: str, close: bool) -> None:
        body = orjson.dumps({"error_code": status, "message": message})
        self._write(status, [(b"Content-Type", b"application/json")], body, close)
        if close:
            self._close()

    def _refuse_body(self, size: int) -> None:
        """413 for a body over the limit, at once; the body is then read through the parser and
        dropped, up to the server's bounds in bytes and time, so the client reads the answer."""
        self._answer_and_half_close(413, self._over_limit(size))
        self.dropping = True

    def _refuse(self, status: int, message: str) -> None:
        """Answer an error to a request the parser cannot go on with, half-close, then read and
        drop what the client still sends until it closes (asyncio closes on its EOF), within the
        server's bounds in bytes and time."""
        self.in_request = False
        self._answer_and_half_close(status, message)
        self.discard_left = self.server.discard_bytes

    def _answer_and_half_close(self, status: int, message: str) -> None:
        body = orjson.dumps({"error_code": status, "message": message})
        self._write(status, [(b"Content-Type", b"application/json")], body, close=True)
        if self.transport is not None:
            self.transport.write_eof()
            self._arm(self.server.discard_seconds, self._close)

    def _timed_out(self) -> None:
        """A request that stalled: its headers took too long, or its bytes stopped coming."""
        if self.transport is None or not self.in_request or self._refusing:
            return
        waited = time.monotonic() - self.started
        self._refuse(408, f"the request was not received in time ({waited:.0f} s)")

    def _idle(self) -> None:
        if not self.in_request and not self.busy and not self._refusing:
            self._close()

    def _arm(self, seconds: float, action: Callable[[], None]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, action)

    def _write(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool
    ) -> None:
        if self.transport is None:
            return
        out = [b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, _reason(status), len(body))]
        out.extend(b"%s: %s\r\n" % pair for pair in headers)
        if close:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        out.append(body)
        self.transport.write(b"".join(out))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def close_if_idle(self, idle_for: float) -> None:
        idle = time.monotonic() - self.last_active >= idle_for
        if not self.busy and not self.in_request and idle:
            self._close()


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        max_body: int,
        discard_bytes: int | None = None,
        discard_seconds: float = DISCARD_SECONDS,
        header_seconds: float = HEADER_SECONDS,
        read_seconds: float = READ_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.header_seconds, self.read_seconds = header_seconds, read_seconds
        self.idle_seconds = idle_seconds
        # The bounds on reading a refused body (see _refuse).
        self.discard_bytes = (
            discard_bytes if discard_bytes is not None else max(DISCARD_MIN_BYTES, 2 * max_body)
        )
        self.discard_seconds = discard_seconds
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> None:
        sock = listening_socket(host, port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self.handler, self.max_body, self), sock=sock, backlog=1024
        )

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop accepting; answer each open connection's next request with Connection: close;
        close connections idle for a while (closing a just-used one races its next request)."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            for connection in list(self.connections):
                connection.close_if_idle(idle_for=1.0)
            await asyncio.sleep(0.05)


def listening_socket(host: str, port: int) -> socket.socket:
    """SO_REUSEPORT: every worker (and, during a blue/green switch, the next server's workers)
    binds the same port and the kernel spreads connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock
