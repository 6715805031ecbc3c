"""Serve a FastAPI app with uvicorn until SIGTERM/SIGINT, then let the caller clean up.

Both ``learnloop serve`` modes use :func:`serve_http`. uvicorn's own signal handling
re-raises SIGTERM after its graceful shutdown, which would end the process before
the caller's ``finally`` closes the event log, the join checkpoint or the Kafka and
Redis clients; here the signal only asks the server to exit, in-flight requests
finish, and :func:`serve_http` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

from learnloop.settings import Settings
from learnloop.shutdown import on_stop_signal


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (see the module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(
    app: FastAPI,
    settings: Settings,
    background: Sequence[asyncio.Task[Any]] = (),
    listener: socket.socket | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, on ``listener`` (a socket the supervisor
    bound and shares with the other API workers) or else on ``settings.host:port``.

    ``background`` are tasks that run beside the server: when one of them fails, the
    server stops and its exception is raised.
    """
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    with on_stop_signal(lambda: setattr(server, "should_exit", True)):
        sockets = [listener] if listener is not None else None
        serving = asyncio.create_task(server.serve(sockets), name="learnloop-http")
        done, _ = await asyncio.wait([serving, *background], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is serving or task.cancelled():
                continue
            failure = task.exception()
            if failure is not None:
                server.should_exit = True
                await serving
                raise failure
        await serving
