"""A bounded loopback load generator: N keep-alive connections, each sending its next request
as soon as the previous answer arrived, for a fixed time (and at most `max_requests`)."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    rows_per_request: int = 1
    error_samples: dict[int, bytes] = field(default_factory=dict)  # status -> one answer body

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rps * self.rows_per_request

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


async def _connection(host: str, port: int, path: str, bodies: list[bytes], start: float, stop: float,
                      result: LoadResult, offset: int, budget: list[int]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    requests = [
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(body), body)
        for body in bodies
    ]
    i = offset
    try:
        while budget[0] > 0:
            sent = time.perf_counter()
            if sent >= stop:
                break
            budget[0] -= 1
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.index(b"content-length:") + 15
            length = int(lower[at : lower.index(b"\r\n", at)])
            body = await reader.readexactly(length)
            if sent >= start:  # requests sent during warm-up are not counted
                if status == 200:
                    result.latencies.append(time.perf_counter() - sent)
                else:
                    result.errors += 1
                    result.error_samples.setdefault(status, body[:300])
    finally:
        writer.close()


def run_load(url: str, bodies: list[bytes], concurrency: int, seconds: float,
             warmup: float = 1.0, max_requests: int = 1_000_000, rows_per_request: int = 1,
             path: str = "/invocations") -> LoadResult:  # fmt: skip
    """POST each of `bodies` in turn to `url` + `path` (MLflow's scoring route by default)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def main() -> LoadResult:
        start = time.perf_counter() + warmup
        stop = start + seconds
        result = LoadResult(seconds=seconds, rows_per_request=rows_per_request)
        budget = [max_requests]
        await asyncio.gather(*(
            _connection(host, int(port), path, bodies, start, stop, result, k * 7, budget)
            for k in range(concurrency)
        ))  # fmt: skip
        result.seconds = max(1e-9, min(seconds, time.perf_counter() - start))
        return result

    # The generator's own garbage collections (this process holds pandas, MLflow and the
    # model) would show up as server latency: none run while it measures.
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(main())
    finally:
        gc.enable()
