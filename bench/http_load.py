"""An HTTP load generator for the benchmarks: keep-alive clients posting decisions.

``raw`` is a minimal HTTP/1.1 client on asyncio streams (tens of µs of its own per
request); ``httpx`` is the client most users would write (1 to 3 ms of client CPU per
request on the benchmark machine), measured for comparison.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import httpx


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: a load generator whose
    own overhead (tens of µs) does not hide the server's latency, as httpx's can."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        response_head = await self.reader.readuntil(b"\r\n\r\n")
        lines = response_head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length")
        )
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def load(
    url: str, bodies: list[bytes], client_kind: str, concurrency: int, seconds: float
) -> tuple[int, list[float], int]:
    """``concurrency`` clients posting ``bodies`` to ``/v1/decisions`` back to back for
    ``seconds`` (``client_kind``: ``raw`` or ``httpx``); (requests, sorted latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def run(post: Callable[[bytes], Awaitable[int]], k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status = await post(bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
            i += concurrency

    if client_kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:
            headers = {"content-type": "application/json"}

            async def post(body: bytes) -> int:
                response = await client.post("/v1/decisions", content=body, headers=headers)
                return response.status_code

            await asyncio.gather(*(run(post, k) for k in range(concurrency)))
    else:
        connections = [await RawConnection.open(url) for _ in range(concurrency)]
        try:
            await asyncio.gather(
                *(
                    run(functools.partial(c.post, "/v1/decisions"), k)
                    for k, c in enumerate(connections)
                )
            )
        finally:
            for connection in connections:
                await connection.close()
    return len(latencies), sorted(latencies), errors
