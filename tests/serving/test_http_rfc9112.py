"""What ordinary clients send, over raw sockets, answered as RFC 9112 says: chunked bodies, `Expect:
100-continue`, pipelining, HTTP/1.0, conflicting length headers, header limits, and slow clients
that cannot hold the server. Against the model server process as pods and `modelyard serve` start
it, and (for the timeouts, made short) the same HTTP server in this process."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelyard.ml.serving.app import Response
from modelyard.ml.serving.http_server import MAX_HEADER_BYTES, HttpServer
from modelyard.pipelines.local_mlflow import free_port

from tests.serving.conftest import Trained
from tests.serving.helpers import Server, records, score, start_server

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def running(local_model_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    handle = start_server(str(local_model_a), tmp_path_factory.mktemp("rfc9112"), workers=1)
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _read_answers(sock: socket.socket, count: int, timeout: float = 10) -> list[tuple[int, bytes]]:
    """`count` answers (status, body) from a keep-alive connection, by their Content-Length."""
    sock.settimeout(timeout)
    data, answers = b"", []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").split("\r\n")
            length = next((int(line.split(":")[1]) for line in head
                           if line.lower().startswith("content-length:")), 0)  # fmt: skip
            if len(data) >= head_end + 4 + length:
                answers.append(
                    (int(head[0].split()[1]), data[head_end + 4 : head_end + 4 + length])
                )
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return answers


def _scoring_body(model_a: Trained, rows: int = 3) -> bytes:
    _, features = model_a
    return json.dumps({"dataframe_records": records(features.iloc[:rows])}).encode()


def test_a_chunked_body_is_scored_like_a_sized_one(running: Server, model_a: Trained) -> None:
    body = _scoring_body(model_a)
    _, expected, _ = score(running.url, json.loads(body))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")  # fmt: skip
        [(status, answer)] = _read_answers(sock, 1)
    # approx: a worker may swap in the compiled model between the two (same trees, last bits)
    assert status == 200 and json.loads(answer)["predictions"] == pytest.approx(
        expected["predictions"], rel=1e-9
    )


def test_expect_100_continue_is_answered_before_the_body(running: Server, model_a: Trained) -> None:
    body = _scoring_body(model_a)
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        sock.settimeout(0.5)  # curl waits a whole second for it
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        [(status, answer)] = _read_answers(sock, 1)
    assert status == 200 and len(json.loads(answer)["predictions"]) == 3


def test_pipelined_requests_are_answered_in_order(running: Server, model_a: Trained) -> None:
    body = _scoring_body(model_a, rows=2)
    scoring = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" + scoring
                     + b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
        answers = _read_answers(sock, 3)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert len(json.loads(answers[1][1])["predictions"]) == 2
    assert "model_version" in json.loads(answers[2][1])


def test_http_1_0_closes_unless_asked_to_keep_alive(running: Server) -> None:
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
        assert _read_answers(sock, 1)[0][0] == 200
        assert sock.recv(1) == b""  # closed after the answer
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert _read_answers(sock, 1)[0][0] == 200
        sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")  # the same connection, still open
        assert _read_answers(sock, 1)[0][0] == 200


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        (b"Content-Length: 3\r\nContent-Length: 4\r\n", b"Duplicate Content-Length"),
        (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"can't be present with"),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"can't be present with"),
    ],
    ids=["two lengths", "length then chunked", "chunked then length"],
)
def test_conflicting_length_headers_are_refused(
    running: Server, headers: bytes, said: bytes
) -> None:
    """The request-smuggling vectors behind a proxy: never served with one of the two."""
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\nabcd")
        [(status, answer)] = _read_answers(sock, 1)
        assert status == 400 and said in answer
        assert sock.recv(1) == b""  # and the connection closed


def test_headers_over_the_limit_get_431(running: Server) -> None:
    line = b"X-Filler: " + b"a" * 100_000 + b"\r\n"  # one 100 kB header line
    with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
        [(status, answer)] = _read_answers(sock, 1)
    assert status == 431 and str(MAX_HEADER_BYTES).encode() in answer


def test_300_stalled_clients_do_not_slow_a_normal_request(running: Server) -> None:
    stalled = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", _port(running.url)))
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le")  # and no more
            stalled.append(sock)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", _port(running.url))) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_answers(sock, 1)[0][0] == 200
        assert time.monotonic() - started < 0.5
    finally:
        for sock in stalled:
            sock.close()


# -- the timeouts, on an in-process server with short ones ------------------------------------------


def _ok(method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
    return Response(200, b'{"ok":true}', [(b"Content-Type", b"application/json")])


@pytest.fixture
def quick() -> Iterator[int]:
    """An HttpServer on its own event loop: headers within 1 s, bytes every 1 s, idle 2 s."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(_ok, max_body=1000, header_seconds=1.0, read_seconds=1.0,
                        idle_seconds=2.0, discard_seconds=1.0)  # fmt: skip
    port = free_port()
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", port), loop).result(10)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(server.drain(timeout=1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_headers_trickled_slower_than_the_header_time_get_408(quick: int) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", quick)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\n")
        # A byte every 0.4 s (within the read time) for 8 s, until the server answers.
        for _ in range(20):
            if select.select([sock], [], [], 0.4)[0]:
                break
            try:
                sock.sendall(b"X")
            except OSError:
                break
        answered = time.monotonic() - started
        [(status, answer)] = _read_answers(sock, 1)
    assert status == 408 and b"not received in time" in answer
    assert answered < 5, f"answered after {answered:.1f}s: the header time is 1 s"


def test_a_stalled_body_gets_408_and_an_idle_connection_is_closed(quick: int) -> None:
    with socket.create_connection(("127.0.0.1", quick)) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        [(status, _)] = _read_answers(sock, 1, timeout=5)
        assert status == 408
    with socket.create_connection(("127.0.0.1", quick)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answers(sock, 1)[0][0] == 200
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed once idle
        assert 1.5 < time.monotonic() - started < 3.5


def test_a_chunked_body_over_the_limit_gets_413(quick: int) -> None:
    with socket.create_connection(("127.0.0.1", quick)) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")  # 1,024 bytes: over the 1,000 limit
        [(status, answer)] = _read_answers(sock, 1)
    assert status == 413 and b"limit of 1000 bytes" in answer
