"""A small HTTP/1.1 server on asyncio: keep-alive, Content-Length bodies, one write per answer.

A hand-rolled protocol rather than a framework: the scoring request is tiny and the model call
takes tens of microseconds, so parsing and routing overhead is most of the latency budget.

A request refused before its body was read (413 and the like) is answered, then the connection
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

import orjson
from modelyard.ml.serving.app import Response

log = logging.getLogger("modelyard.serving")

Handler = Callable[[str, str, dict[str, str], bytes], Response]
MAX_HEADER_BYTES = 32 * 1024
# How much of a refused body is read and dropped so that the client reads the refusal: up to
# this many bytes, or twice the body limit if more (a body somewhat over the limit is always read
# to its end), for at most this long: a huge or stalled body cannot hold a connection open.
DISCARD_MIN_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 10.0


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


# A keep-alive connection is asked to reconnect (`Connection: close` on an answer) once this old:
# a Service spreads connections, not requests, so without it a long-lived client would stay on
# the pods it first reached, after a blue/green switch on the standby for good.
MAX_CONNECTION_AGE_SECONDS = 10.0


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, max_body: int, server: HttpServer) -> None:
        self.handler = handler
        self.max_body = max_body
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.last_active = self.opened = 0.0
        # After a refusal, the bytes still to read and drop before closing (see _refuse).
        self.discard_left: int | None = None
        self.discard_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.last_active = self.opened = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.discard_timer is not None:
            self.discard_timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.discard_left is not None:
            self.discard_left -= len(data)
            if self.discard_left <= 0:
                # The whole body, or as much of it as the bound allows.
                self._close()
            return
        self.buffer += data
        self.busy = True
        try:
            while self.transport is not None and self._one_request():
                pass
        finally:
            self.busy = False
        if self.server.draining and not self.buffer and self.discard_left is None:
            self._close()

    def _one_request(self) -> bool:
        """Handle one complete request from the buffer; False when more bytes are needed."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._refuse(431, "request headers too large")
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._refuse(400, "malformed request line")
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._refuse(400, "malformed header line")
                return False
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._refuse(411, "chunked bodies are not accepted: send Content-Length")
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._refuse(400, "Content-Length is not a number")
            return False
        if length < 0:
            self._refuse(400, f"Content-Length {length} is negative")
            return False
        if length > self.max_body:
            self._refuse(
                413,
                f"body of {length} bytes is over this server's limit of "
                f"{self.max_body} bytes: send smaller batches",
                unread=length - (len(self.buffer) - end - 4),
            )
            return False
        total = end + 4 + length
        if len(self.buffer) < total:
            return False
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        try:
            response = self.handler(method, target, headers, body)
        except Exception:  # never let one request take the worker down
            log.exception("unhandled error answering %s %s", method, target)
            self._send_error(500, "internal error (logged by the server)", close=not keep_alive)
            return keep_alive
        aged = time.monotonic() - self.opened > MAX_CONNECTION_AGE_SECONDS
        close = not keep_alive or self.server.draining or aged
        self._write(
            response.status, response.headers, b"" if method == "HEAD" else response.body, close
        )
        if response.after is not None:
            asyncio.get_running_loop().call_soon(response.after)
        if close:
            self._close()
            return False
        return True

    def _send_error(self, status: int, message: str, close: bool) -> None:
        body = orjson.dumps({"error_code": status, "message": message})
        self._write(status, [(b"Content-Type", b"application/json")], body, close)
        if close:
            self._close()

    def _refuse(self, status: int, message: str, unread: int | None = None) -> None:
        """Answer an error to a request whose body was not read, half-close, then read and drop
        the `unread` bytes the client is still sending (None: unknown, until it closes; asyncio
        closes on its EOF) before closing, within the server's bounds in bytes and time."""
        body = orjson.dumps({"error_code": status, "message": message})
        self._write(status, [(b"Content-Type", b"application/json")], body, close=True)
        self.buffer.clear()
        if self.transport is None or (unread is not None and unread <= 0):
            self._close()
            return
        self.transport.write_eof()
        bound = self.server.discard_bytes
        self.discard_left = bound if unread is None else min(unread, bound)
        self.discard_timer = asyncio.get_running_loop().call_later(
            self.server.discard_seconds, self._close
        )

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
        if not self.busy and not self.buffer and time.monotonic() - self.last_active >= idle_for:
            self._close()


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        max_body: int,
        discard_bytes: int | None = None,
        discard_seconds: float = DISCARD_SECONDS,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
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
