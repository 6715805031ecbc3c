"""How the simulator talks HTTP: aiohttp for real runs, an httpx transport for tests.

The simulator shares the machine with the service it drives, so client CPU is
service throughput lost. Profiling a 4,000-decision run with httpx showed half of
the client's time in httpx/httpcore (17 % in its per-request async-library
detection alone); aiohttp's client does the same work for a fraction of that.
Tests keep injecting an ``httpx.MockTransport`` as a fake service.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp
import httpx

TIMEOUT_SECONDS = 30.0


class SendFailed(Exception):
    """The request did not get an HTTP answer (refused, reset, timed out)."""


class Sender(Protocol):
    async def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        """Status and body of one request to ``path`` on the service."""
        ...

    async def close(self) -> None: ...


class AiohttpSender:
    """Keep-alive connections to one service, at most ``connections`` at a time."""

    def __init__(self, base_url: str, headers: dict[str, str], connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        )

    async def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                async with self._session.request(method, self.base_url + path, data=body) as r:
                    return r.status, await r.read()
            except aiohttp.ServerDisconnectedError as exc:
                # The server closed a kept-alive connection just as we reused it: retry once.
                if attempt == 2:
                    raise SendFailed(repr(exc)) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise SendFailed(repr(exc)) from exc
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._session.close()


class HttpxTransportSender:
    """Requests through one httpx transport (tests: ``httpx.MockTransport``)."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport, base_url: str, headers: dict[str, str]
    ) -> None:
        self.transport = transport
        self.base_url = httpx.URL(base_url)
        self.headers = headers

    async def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        request = httpx.Request(
            method, self.base_url.join(path), headers=self.headers, content=body
        )
        try:
            response = await self.transport.handle_async_request(request)
            try:
                return response.status_code, await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise SendFailed(repr(exc)) from exc

    async def close(self) -> None:
        await self.transport.aclose()
