"""CPU per request of an ASGI app called in process: no sockets, no load generator.

``bench/decide.py`` uses it to compare the decision route with the echo ceiling on
CPU alone, which the disk (fsync) and the other processes on the machine do not
blur: the share of the echo's rate that learnloop could reach when CPU-bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI


async def _call(app: FastAPI, body: bytes) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/decisions",
        "raw_path": b"/v1/decisions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # never asked for: the app has the whole body
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def cpu_per_request(app: FastAPI, bodies: list[bytes], n: int, rounds: int) -> float:
    """Best-of-``rounds`` process CPU seconds per request, from 16 concurrent callers."""
    for i in range(200):
        await _call(app, bodies[i % len(bodies)])
    per_caller = max(1, n // 16)

    async def caller(k: int) -> None:
        for i in range(per_caller):
            status = await _call(app, bodies[(k * per_caller + i) % len(bodies)])
            if status != 200:
                raise RuntimeError(f"the app answered {status}")

    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        await asyncio.gather(*(caller(k) for k in range(16)))
        best = min(best, (time.process_time() - started) / (16 * per_caller))
    return best
