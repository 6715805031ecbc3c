"""The ceiling: a bare FastAPI endpoint on learnloop's uvicorn/uvloop/httptools stack.

``python bench/echo_server.py PORT`` serves ``POST /v1/decisions``: it parses and
validates the same body (:class:`~schemas.api.DecisionRequest`) and answers a
:class:`~schemas.api.DecisionResponse` of the same size, through FastAPI's usual
``response_model`` path, with no policy, no log and no middleware. What
learnloop's decision route costs beyond this is learnloop's own work.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from schemas.api import DecisionRequest, DecisionResponse, RankedAction

ACTIONS = ("category1", "category2", "bestsellers", "trending")


def echo_app() -> FastAPI:
    app = FastAPI(title="echo")

    @app.post("/v1/decisions", response_model=DecisionResponse)
    async def decide(body: DecisionRequest) -> DecisionResponse:
        return DecisionResponse(
            event_id=body.event_id or "0123456789abcdef0123456789abcdef",
            action_id=ACTIONS[0],
            probability=0.925,
            ranking=[RankedAction(id=a, probability=0.025) for a in ACTIONS],
            model_version="0",
            persona="visitor" if body.context.user_id is None else "unclassified",
            arm="learned",
        )

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    # The same uvicorn settings as runtime.http_server.serve_http (auto: uvloop, httptools).
    uvicorn.run(
        echo_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False
    )
