"""Count HTTP error responses by status (a pure ASGI middleware, outermost but one).

It sits outside :class:`~app.api.body_limit.BodyLimitMiddleware`, so 413s
answered there are counted too.
"""

from __future__ import annotations

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ErrorMetricsMiddleware:
    """Increment ``counter{status}`` for every response with status >= 400."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.counter.labels(str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
