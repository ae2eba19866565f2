"""The API under test: uvicorn on a free port in the test's event loop, with (optionally) the
real matcher, risk and persister actors in-process, on a real nats-server and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from litestar import Litestar

from kit.wait import wait_for
from orrange.api import ApiOptions, create_app, issue_token
from orrange.engine.matcher import Matcher
from orrange.engine.persister import Persister
from orrange.engine.risk import RiskActor
from orrange.markets import MarketSpec
from orrange.risk import RiskLimits
from orrange.runtime import Actor, ActorConfig
from orrange.settings import Settings

SYM = "T-USD"
SPEC = MarketSpec(
    symbol=SYM,
    base="T",
    quote="USD",
    tick_size="0.01",
    lot_size="1",
    min_qty="1",
    max_qty="100000",
    min_notional="0",
    maker_fee_bps=-2,
    taker_fee_bps=5,
)
MARKETS = {SYM: SPEC}
SECRET = "test-secret-0123456789abcdef-0123456789"


@dataclass
class Stack:
    """A running API (and actors): its base URL and an HTTP client."""

    base: str
    http: httpx.AsyncClient
    app: Litestar
    server: uvicorn.Server
    actors: list[Actor] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"

    @staticmethod
    def token(user: str, **kw: Any) -> str:
        return issue_token(SECRET, user, **kw)

    @staticmethod
    def auth(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(SECRET, user)}"}

    async def place(self, user: str, **order: Any) -> httpx.Response:
        body = {"symbol": SYM, **order}
        return await self.http.post("/api/v1/orders", json=body, headers=self.auth(user))


def error_of(resp: httpx.Response) -> dict[str, str]:
    """The ``error`` object of an error response (asserting the shape)."""
    body = json.loads(resp.content)
    assert set(body) == {"error"}, body
    err: dict[str, str] = body["error"]
    assert set(err) == {"field", "reason", "message"}, err
    assert all(isinstance(v, str) and v for v in err.values()), err
    return err


def actor_config(name: str, nats_url: str) -> ActorConfig:
    """An in-process actor's config: no metrics port, 50 ms fetch timeout."""
    return ActorConfig(name=name, nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)


def engine_actors(
    nats_url: str, database_url: str, markets: dict[str, MarketSpec] = MARKETS
) -> list[Actor]:
    """The matcher (every market of ``markets``), risk (limits far above any test's flow) and
    the persister, not started."""
    return [
        Matcher(actor_config("matcher", nats_url), markets, list(markets)),
        RiskActor(
            actor_config("risk", nats_url),
            markets,
            limits=RiskLimits(max_open_orders=10_000, rate_per_s=100_000, burst=100_000),
        ),
        Persister(actor_config("persister", nats_url), database_url),
    ]


@contextlib.asynccontextmanager
async def running_api(
    nats_url: str,
    database_url: str,
    actors: Sequence[Actor],
    *,
    markets: dict[str, MarketSpec] = MARKETS,
    secret: str = SECRET,
    options: ApiOptions | None = None,
) -> AsyncIterator[Stack]:
    """Start ``actors`` in order, then the API on uvicorn (a free port, this event loop); on
    exit stop the server, then the started actors in reverse order."""
    started: list[Actor] = []
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    try:
        for actor in actors:
            await actor.start()
            started.append(actor)
        settings = Settings(nats_url=nats_url, database_url=database_url)
        app = create_app(
            settings, markets=markets, options=options or ApiOptions(), jwt_secret=secret
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            ws="websockets-sansio",
            lifespan="on",
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())

        async def up() -> bool:
            if task.done():
                task.result()
            return server is not None and server.started

        await wait_for(up, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Stack(base, http, app, server, started)
    finally:
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 30)
        for actor in reversed(started):
            await actor.stop()


@contextlib.asynccontextmanager
async def api_stack(
    nats_url: str,
    database_url: str,
    *,
    engine: bool = True,
    options: ApiOptions | None = None,
) -> AsyncIterator[Stack]:
    """Start the actors (when ``engine``) and the API; stop everything afterwards."""
    actors = engine_actors(nats_url, database_url) if engine else []
    async with running_api(nats_url, database_url, actors, options=options) as stack:
        yield stack
