"""Market routes of the API (``/api/v1/markets``): specs, the L2 book, trades, the ticker.

Public (no token).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import FromPath, FromQuery, QueryParameter

from orrange.api.deps import context, market
from orrange.api.errors import ApiError
from orrange.api.mirrors import BookUnavailable
from orrange.api.schemas import BookOut, TickerOut, TradeOut, book_levels
from orrange.markets import MarketSpec
from orrange.store.queries import recent_trades

__all__ = ["MARKET_HANDLERS"]


@get("/markets", summary="Markets")
async def list_markets(request: Request[Any, Any, Any]) -> list[MarketSpec]:
    """Every market with its tick and lot sizes, limits and fees (decimal strings)."""
    return list(context(request).markets.values())


@get("/markets/{symbol:str}", summary="One market")
async def get_market(request: Request[Any, Any, Any], symbol: FromPath[str]) -> MarketSpec:
    """One market's spec."""
    return market(context(request), symbol)


@get("/markets/{symbol:str}/book", summary="L2 book")
async def get_book(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    depth: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
) -> BookOut:
    """The L2 book from the matcher: ``depth`` levels per side, best first, at ``seq``."""
    ctx = context(request)
    spec = market(ctx, symbol)
    try:
        l2 = await ctx.books.query(symbol, depth)
    except BookUnavailable as exc:
        raise ApiError(503, "symbol", "book_unavailable", str(exc)) from exc
    return BookOut(
        symbol=symbol, seq=l2.seq, bids=book_levels(spec, l2.bids), asks=book_levels(spec, l2.asks)
    )


@get("/markets/{symbol:str}/trades", summary="Recent trades")
async def get_trades(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    before_seq: FromQuery[int | None] = None,
) -> list[TradeOut]:
    """The latest trades, newest first; ``before_seq`` pages back."""
    ctx = context(request)
    spec = market(ctx, symbol)
    rows = await recent_trades(ctx.pool, symbol, limit=limit, before_seq=before_seq)
    return [
        TradeOut(
            seq=r.seq,
            ts=r.ts,
            price=spec.ticks_to_price(r.price),
            quantity=spec.lots_to_qty(r.quantity),
            side=r.aggressor,
        )
        for r in rows
    ]


@get("/markets/{symbol:str}/ticker", summary="24 h ticker")
async def get_ticker(request: Request[Any, Any, Any], symbol: FromPath[str]) -> TickerOut:
    """Open, high, low, last, volume and quote volume of the last 24 h."""
    ctx = context(request)
    return await ctx.ticker(market(ctx, symbol))


#: The route handlers of this module (mounted under ``/api/v1``).
MARKET_HANDLERS = [list_markets, get_market, get_book, get_trades, get_ticker]
