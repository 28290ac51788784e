"""A small HTTP/1.1 server on asyncio: keep-alive, Content-Length bodies, one write per answer.

A hand-rolled protocol rather than a framework: the scoring request is tiny and the model call
takes tens of microseconds, so parsing and routing overhead is most of the latency budget.
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


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, max_body: int, server: HttpServer) -> None:
        self.handler = handler
        self.max_body = max_body
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self.last_active = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.buffer += data
        self.busy = True
        try:
            while self.transport is not None and self._one_request():
                pass
        finally:
            self.busy = False
        if self.server.draining and not self.buffer:
            self._close()

    def _one_request(self) -> bool:
        """Handle one complete request from the buffer; False when more bytes are needed."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._send_error(431, "request headers too large", close=True)
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._send_error(400, "malformed request line", close=True)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._send_error(400, "malformed header line", close=True)
                return False
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._send_error(
                411, "chunked bodies are not accepted: send Content-Length", close=True
            )
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._send_error(400, "Content-Length is not a number", close=True)
            return False
        if length < 0 or length > self.max_body:
            self._send_error(
                413,
                f"body of {length} bytes is over this server's limit of "
                f"{self.max_body} bytes: send smaller batches",
                close=True,
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
        close = not keep_alive or self.server.draining
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
    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
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
