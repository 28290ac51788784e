"""A body over the server's limit is refused with a 413 every client can read, in bounded time."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from modelyard.ml.serving.app import Response
from modelyard.ml.serving.http_server import HttpServer
from modelyard.pipelines.local_mlflow import free_port

from tests.serving.conftest import Trained
from tests.serving.helpers import Server, call, records, score, start_server

LIMIT = 200_000
OVER_LIMIT = f"over this server's limit of {LIMIT} bytes"


@pytest.fixture(scope="module")
def running(local_model_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    handle = start_server(str(local_model_a), tmp_path_factory.mktemp("oversize"), workers=1,
                          max_body_bytes=LIMIT)  # fmt: skip
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.stop()


def _post_urllib(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _still_serves(url: str, model_a: Trained) -> None:
    assert call(url, "GET", "/ping")[0] == 200
    _, features = model_a
    status, body, _ = score(url, {"dataframe_records": records(features.iloc[:3])})
    assert status == 200 and len(body["predictions"]) == 3


@pytest.mark.slow
@pytest.mark.integration
def test_urllib_reads_the_413_of_an_oversize_body(running: Server, model_a: Trained) -> None:
    # Several megabytes: far more than the socket buffers hold, so the client is still sending
    # when the server decides; a few rounds, as a reset used to depend on timing.
    for size in (LIMIT + 1, 4_000_000, 8_000_000):
        status, body = _post_urllib(running.url, b"x" * size)
        assert status == 413 and OVER_LIMIT in str(body["message"]), (size, body)
    _still_serves(running.url, model_a)


@pytest.mark.slow
@pytest.mark.integration
def test_requests_reads_the_413_of_an_oversize_body(running: Server, model_a: Trained) -> None:
    for _ in range(3):
        response = requests.post(
            f"{running.url}/invocations",
            data=b"x" * 4_000_000,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 413
        assert OVER_LIMIT in response.json()["message"]
    _still_serves(running.url, model_a)


@pytest.mark.slow
@pytest.mark.integration
def test_a_huge_body_is_refused_in_bounded_time(running: Server, model_a: Trained) -> None:
    started = time.monotonic()
    status, body = _post_urllib(running.url, b"x" * 50_000_000)
    assert status == 413 and OVER_LIMIT in str(body["message"])
    assert time.monotonic() - started < 20
    _still_serves(running.url, model_a)


# -- the bounds, on an in-process server with small ones ------------------------------------------


def _ok(method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
    return Response(200, b'{"ok":true}', [(b"Content-Type", b"application/json")])


@pytest.fixture
def small() -> Iterator[tuple[str, HttpServer]]:
    """An HttpServer on its own event loop: 1,000-byte limit, drops at most 1 MB or 1 s of a
    refused body."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(_ok, max_body=1000, discard_bytes=1_000_000, discard_seconds=1.0)
    port = free_port()
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", port), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        asyncio.run_coroutine_threadsafe(server.drain(timeout=1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _open_connections(server: HttpServer, at_most: int, within: float) -> int:
    deadline = time.monotonic() + within
    while len(server.connections) > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(server.connections)


def test_a_body_past_the_discard_bound_is_cut_off(small: tuple[str, HttpServer]) -> None:
    url, _ = small
    port = int(url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        # The server stops reading after about 1 MB: the rest cannot be sent.
        with pytest.raises(OSError):
            for _ in range(50):
                sock.sendall(b"x" * 1_000_000)
    assert time.monotonic() - started < 10
    assert call(url, "GET", "/ping")[0] == 200


def test_a_stalled_body_is_given_up_after_the_time_bound(small: tuple[str, HttpServer]) -> None:
    url, server = small
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        sock.sendall(b"x" * 100_000)  # ... and then nothing more
        answer = b""
        while chunk := sock.recv(65536):  # the server half-closes after its answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"over this server's limit of 1000 bytes" in answer
        time.sleep(0.3)
        assert len(server.connections) == 1  # still reading what the client might send
        assert _open_connections(server, at_most=0, within=3.0) == 0
    assert call(url, "GET", "/ping")[0] == 200


def test_a_refused_body_within_the_bound_is_read_to_its_end(
    small: tuple[str, HttpServer],
) -> None:
    url, server = small
    request = urllib.request.Request(f"{url}/invocations", data=b"x" * 900_000)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413
    assert "limit of 1000 bytes" in json.loads(refused.value.read())["message"]
    # Closed once the body was read (and the client hung up), not held to the time bound.
    assert _open_connections(server, at_most=0, within=0.5) == 0
