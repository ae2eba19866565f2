"""Order routes of the API (``/api/v1/orders``; see :mod:`orrange.api.app` for the table).

Every route needs ``Authorization: Bearer <JWT>``. A submit, cancel or amend publishes the
command and answers with the engine's outcome (:mod:`orrange.api.commands`); reads come from
PostgreSQL, waiting until the stored row reflects the last event about the order this process
has seen (read-your-writes).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.types import (
    ASGIApp,
    HTTPRequestEvent,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from orrange.api.auth import Principal
from orrange.api.commands import OrderTracker
from orrange.api.context import ApiContext, now_ms
from orrange.api.deps import bearer_principal, context, market
from orrange.api.errors import ApiError
from orrange.api.schemas import (
    AmendIn,
    AmendOut,
    CancelAllOut,
    CancelOut,
    OrderIn,
    OrderOut,
    OrderPage,
    amend_command,
    check_client_order_id,
    fill_out,
    order_out,
    reject_field,
    reject_status,
    submit_command,
)
from orrange.markets import MarketSpec
from orrange.matching import CancelAll, CancelOrder, OrderAmended, OrderCanceled, OrderRejected
from orrange.matching.orders import OrderRecord, OrderStatus
from orrange.risk import generate_client_order_id, is_generated_client_order_id
from orrange.runtime import PubAck, PublishError
from orrange.store.queries import (
    InvalidCursorError,
    NotOwnerError,
    client_order_status,
    get_order,
    list_open_orders,
    list_order_history,
    order_fills,
)
from orrange.store.settlement import user_reputation
from orrange.wire.engine import cmd_subject, command_msg_id, submit_msg_id

__all__ = ["ORDER_HANDLERS"]

_json_encoder = msgspec.json.Encoder()


def _rejected(ev: OrderRejected) -> ApiError:
    reason = str(ev.reason)
    return ApiError(reject_status(reason), reject_field(reason), reason, ev.message)


def _engine_timeout(ctx: ApiContext, command: str, what: str) -> ApiError:
    ctx.metrics.order_timeouts.labels(command).inc()
    return ApiError(
        504,
        "engine",
        "timeout",
        f"no answer from the engine within {ctx.options.order_timeout_s:g} s; {what}",
    )


def _cannot_publish(exc: BaseException) -> ApiError:
    return ApiError(503, "engine", "unavailable", f"cannot publish the command: {exc}")


async def _publish(
    ctx: ApiContext, symbol: str, cmd: Any, msg_id: str, outcome: asyncio.Future[Any]
) -> None:
    """Publish a command whose answer ``outcome`` awaits (a future of ctx.commands).

    The JetStream ack is not awaited on its own: the engine's answer proves the command was
    stored, and usually comes first. An error ack fails ``outcome`` with a 503 and a
    duplicate ``Nats-Msg-Id`` with a 409 (unless the answer came first).
    """
    try:
        ack = await ctx.publisher.publish_future(cmd_subject(symbol), cmd, msg_id=msg_id)
    except PublishError as exc:
        raise _cannot_publish(exc) from exc

    def on_ack(f: asyncio.Future[PubAck]) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        if outcome.done():
            return
        if exc is not None:
            outcome.set_exception(_cannot_publish(exc))
        elif f.result().duplicate:
            outcome.set_exception(
                ApiError(
                    409,
                    "client_order_id",
                    "duplicate_client_order_id",
                    f"client_order_id {msg_id.partition(':')[2]} was already submitted",
                )
            )

    ack.add_done_callback(on_ack)


def _time_out(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _wait(ctx: ApiContext, fut: asyncio.Future[Any]) -> Any:
    """Await a future of ``ctx.commands`` for at most ``order_timeout_s`` (TimeoutError); one
    timer, no task."""
    timer = asyncio.get_running_loop().call_later(ctx.options.order_timeout_s, _time_out, fut)
    try:
        return await fut
    finally:
        timer.cancel()


# ---------------------------------------------------------------------------------- orders


async def _submit(ctx: ApiContext, principal: Principal, data: OrderIn) -> bytes:
    """Submit ``data`` for ``principal``; the JSON of the accepted :class:`OrderOut`, once the
    engine accepted it (ApiError for a rejection, a timeout or a publish failure)."""
    spec = market(ctx, data.symbol, status=400)
    user = principal.user
    if data.client_order_id:
        cid = check_client_order_id(data.client_order_id)
    else:
        cid = generate_client_order_id()
    cmd = submit_command(spec, data, user, cid, now_ms())
    if spec.priority == "price-reputation-time" or cmd.payment_methods:
        # P2P: the user's settlement reputation, for counterparty constraints and priority
        cmd = msgspec.structs.replace(cmd, reputation=await user_reputation(ctx.pool, user))
    waiters = ctx.commands
    if waiters.submit_in_flight(user, cid):
        raise ApiError(
            409, "client_order_id", "duplicate_client_order_id", f"{cid} is already in flight"
        )
    fut = waiters.expect_submit(user, cid)
    started = time.perf_counter()
    try:
        await _publish(ctx, spec.symbol, cmd, submit_msg_id(user, cid), fut)
        try:
            outcome = await _wait(ctx, fut)
        except TimeoutError as exc:
            raise _engine_timeout(
                ctx, "submit", f"look it up with GET /api/v1/orders/by-client-id/{cid}"
            ) from exc
    finally:
        waiters.forget_submit(user, cid)
    ctx.metrics.roundtrip("submit", time.perf_counter() - started)
    if isinstance(outcome, OrderRejected):
        raise _rejected(outcome)
    tracker: OrderTracker = outcome
    # Every event of the order's arrival (fills, IOC remainder...) travels in the same
    # evt.<SYM> message as its acceptance, and the hub dispatches a message's events before
    # this coroutine resumes: the tracker has seen them all.
    waiters.untrack(tracker)
    return _json_encoder.encode(tracker.out())


#: bodies up to this size are read by the order-entry fast path (larger: Litestar reads them)
_FAST_BODY_MAX = 64 * 1024
_order_in_decoder = msgspec.json.Decoder(OrderIn)
_CREATED_HEADERS = [(b"content-type", b"application/json")]


def _order_entry(app: ASGIApp) -> ASGIApp:
    """Route middleware of ``POST /api/v1/orders``: the order-entry hot path.

    Litestar still routes the request, counts the response (``before_send``) and renders every
    error through :mod:`orrange.api.errors`; what this skips is the handler's parameter
    machinery (signature model, dependency resolution, response object): a bare POST handler
    costs 89 us of server CPU per request that way, 37 us through a route middleware and 29 us
    as raw ASGI on uvicorn (``bench/bench_rest_floor.py``, medians on this machine).

    A body it does not take as it is (not ``application/json``, larger than 64 KiB, or not a
    strictly valid :class:`OrderIn`) goes on to the regular handler with the bytes already
    read, so every validation error is Litestar's own.
    """

    async def order_entry(scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        json = False
        auth: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                json = value.split(b";", 1)[0].strip().lower() == b"application/json"
            elif name == b"authorization" and auth is None:  # the first, as Litestar reads it
                auth = value
        while more and size <= _FAST_BODY_MAX:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: nobody to answer
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        data: OrderIn | None = None
        if json and not more and size <= _FAST_BODY_MAX:
            try:
                data = _order_in_decoder.decode(body)
            except msgspec.MsgspecError:
                data = None
        ctx: ApiContext = scope["litestar_app"].state["api"]
        if data is None:
            ctx.metrics.order_entry_path("handler")
            await app(scope, _replay(body, more, receive), send)
            return
        ctx.metrics.order_entry_path("fast")
        principal = bearer_principal(ctx, None if auth is None else auth.decode("latin-1"))
        out = await _submit(ctx, principal, data)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 201,
            "headers": [*_CREATED_HEADERS, (b"content-length", b"%d" % len(out))],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": out, "more_body": False}
        await send(end)

    return order_entry


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read ``body`` first, then the rest of the request."""
    pending = True

    async def replay() -> ReceiveMessage:
        nonlocal pending
        if pending:
            pending = False
            first: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": more}
            return first
        return await receive()

    return replay


@post(
    "/orders",
    status_code=201,
    summary="Submit an order",
    responses={201: ResponseSpec(data_container=OrderOut, description="The accepted order")},
    middleware=[_order_entry],
)
async def submit_order(request: Request[Any, Any, Any], data: JSONBody[OrderIn]) -> ASGIResponse:
    """Submit an order; answers once the engine accepted it (201, with its engine id, status
    and the fills of its arrival) or rejected it (4xx naming the field and the reason).

    Most requests are answered by the route's :func:`_order_entry` middleware; this handler
    takes the bodies it passes on (valid only under Litestar's lenient conversion)."""
    ctx = context(request)
    principal = bearer_principal(ctx, request.headers.get("authorization"))
    body = await _submit(ctx, principal, data)
    return ASGIResponse(body=body, status_code=201, media_type="application/json")


@delete("/orders/{symbol:str}/{order_id:int}", status_code=200, summary="Cancel")
async def cancel_order(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    order_id: FromPath[int],
    principal: NamedDependency[Principal],
) -> CancelOut:
    """Cancel one of my orders; answers what left the book (404 unknown, 403 not mine)."""
    ctx = context(request)
    spec = market(ctx, symbol)
    cmd = CancelOrder(ts=now_ms(), user=principal.user, order_id=order_id)
    ev = await _order_command(ctx, "cancel", spec, order_id, cmd, principal.user)
    if isinstance(ev, OrderRejected):
        raise await _order_rejection(ctx, ev, spec, order_id, principal.user)
    assert isinstance(ev, OrderCanceled)
    return CancelOut(
        order_id=order_id,
        symbol=symbol,
        status="canceled" if ev.leaves == 0 else "partially_filled",
        canceled_quantity=spec.lots_to_qty(ev.canceled_qty),
        leaves_quantity=spec.lots_to_qty(ev.leaves),
    )


@delete("/orders/{symbol:str}", status_code=202, summary="Cancel all my orders")
async def cancel_all(
    request: Request[Any, Any, Any], symbol: FromPath[str], principal: NamedDependency[Principal]
) -> CancelAllOut:
    """Cancel every open order of mine in ``symbol`` (202 once the command is stored; each
    cancellation arrives as a ``canceled`` event with reason ``cancel_all`` on the WebSocket
    ``orders`` channel, and in the order listings)."""
    ctx = context(request)
    spec = market(ctx, symbol)
    request_id = uuid.uuid4().hex
    cmd = CancelAll(ts=now_ms(), user=principal.user)
    try:
        await ctx.publisher.publish(
            cmd_subject(spec.symbol), cmd, msg_id=command_msg_id(principal.user, request_id)
        )
    except PublishError as exc:
        raise _cannot_publish(exc) from exc
    return CancelAllOut(symbol=symbol, request_id=request_id, status="submitted")


@patch("/orders/{symbol:str}/{order_id:int}", summary="Amend")
async def amend_order(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    order_id: FromPath[int],
    data: JSONBody[AmendIn],
    principal: NamedDependency[Principal],
) -> AmendOut:
    """Amend the total quantity and/or limit price of one of my orders."""
    ctx = context(request)
    spec = market(ctx, symbol)
    cmd = amend_command(spec, data, principal.user, order_id, now_ms())
    ev = await _order_command(ctx, "amend", spec, order_id, cmd, principal.user)
    if isinstance(ev, OrderRejected):
        raise await _order_rejection(ctx, ev, spec, order_id, principal.user)
    assert isinstance(ev, OrderAmended)
    return AmendOut(
        order_id=order_id,
        symbol=symbol,
        price=None if ev.price is None else spec.ticks_to_price(ev.price),
        quantity=spec.lots_to_qty(ev.quantity),
        leaves_quantity=spec.lots_to_qty(ev.leaves),
        priority_kept=ev.priority_kept,
    )


async def _order_command(
    ctx: ApiContext, kind: str, spec: MarketSpec, order_id: int, cmd: Any, user: str
) -> Any:
    waiters = ctx.commands
    fut = waiters.expect_order(kind, spec.symbol, order_id)
    started = time.perf_counter()
    try:
        await _publish(ctx, spec.symbol, cmd, command_msg_id(user, uuid.uuid4().hex), fut)
        try:
            ev = await _wait(ctx, fut)
        except TimeoutError as exc:
            raise _engine_timeout(ctx, kind, "check the order with GET") from exc
    finally:
        waiters.forget_order(kind, spec.symbol, order_id, fut)
    ctx.metrics.roundtrip(kind, time.perf_counter() - started)
    return ev


async def _order_rejection(
    ctx: ApiContext, ev: OrderRejected, spec: MarketSpec, order_id: int, user: str
) -> ApiError:
    """The error of a refused cancel/amend; an order the book no longer holds is looked up in
    the store so that another user's order is 403 and a closed one of mine 409."""
    if str(ev.reason) == "unknown_order":
        try:
            rec = await get_order(ctx.pool, order_id, user=user, symbol=spec.symbol)
        except NotOwnerError:
            return ApiError(403, "order_id", "not_owner", f"order {order_id} is not yours")
        if rec is not None:
            return ApiError(
                409, "order_id", "order_closed", f"order {order_id} is {rec.status.value}"
            )
    return _rejected(ev)


async def _read_your_writes(
    ctx: ApiContext,
    symbol: str,
    order_id: int,
    rec: OrderRecord | None,
    read: Callable[[], Awaitable[OrderRecord | None]],
) -> OrderRecord | None:
    """``rec`` (the order's row as just read), or, if it does not yet reflect the last event
    about the order that this API process has seen (the persister stores events
    asynchronously, batching for up to tens of ms), ``read()`` again until it does, for at
    most ``order_timeout_s``; then what PostgreSQL has.

    So a GET right after this API answered a submit, cancel or amend (or saw a fill) shows
    that result. Raises what ``read`` raises.
    """
    want = ctx.commands.order_seq(symbol, order_id)
    if want == 0 or (rec is not None and rec.last_seq >= want):
        return rec
    deadline = time.monotonic() + ctx.options.order_timeout_s
    delay = 0.005
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
        rec = await read()
        if rec is not None and rec.last_seq >= want:
            break
    return rec


@get("/orders/{symbol:str}/{order_id:int}", summary="Get one of my orders")
async def get_my_order(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    order_id: FromPath[int],
    principal: NamedDependency[Principal],
) -> OrderOut:
    """One of my orders with its fills (404 unknown, 403 another user's)."""
    ctx = context(request)
    spec = market(ctx, symbol)

    def read() -> Awaitable[OrderRecord | None]:
        return get_order(ctx.pool, order_id, user=principal.user, symbol=symbol)

    try:
        rec = await _read_your_writes(ctx, symbol, order_id, await read(), read)
        if rec is None:
            raise ApiError(404, "order_id", "unknown_order", f"no order {order_id} in {symbol}")
        fills = await order_fills(ctx.pool, symbol, order_id, user=principal.user)
    except NotOwnerError as exc:
        raise ApiError(403, "order_id", "not_owner", f"order {order_id} is not yours") from exc
    return order_out(spec, rec, [fill_out(spec, f, order_id) for f in fills])


@get("/orders/by-client-id/{client_order_id:str}", summary="By client id")
async def get_by_client_id(
    request: Request[Any, Any, Any],
    client_order_id: FromPath[str],
    principal: NamedDependency[Principal],
    symbol: FromQuery[str | None] = None,
) -> OrderOut:
    """My order with this client order id (a rejected one answers its rejection, 404 if none
    is stored yet)."""
    ctx = context(request)
    if not is_generated_client_order_id(client_order_id):
        check_client_order_id(client_order_id)
    st = await client_order_status(ctx.pool, principal.user, client_order_id, symbol=symbol)
    if st is None:
        raise ApiError(
            404, "client_order_id", "unknown_order", f"no order with client id {client_order_id}"
        )
    if st.order is None:
        assert st.rejection is not None
        r = st.rejection
        reason = str(r.reason)
        raise ApiError(reject_status(reason), reject_field(reason), reason, r.message)
    spec = market(ctx, st.order.symbol)
    order = st.order
    fresh = await _read_your_writes(
        ctx,
        spec.symbol,
        order.order_id,
        order,
        lambda: get_order(ctx.pool, order.order_id, user=principal.user, symbol=spec.symbol),
    )
    order = fresh or order
    fills = await order_fills(ctx.pool, spec.symbol, order.order_id, user=principal.user)
    return order_out(spec, order, [fill_out(spec, f, order.order_id) for f in fills])


@get("/orders", summary="List my orders")
async def list_orders(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    status: FromQuery[str] = "open",
    symbol: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    cursor: FromQuery[str | None] = None,
) -> OrderPage:
    """My orders, newest first: ``status=open`` (default), ``all``, or one status (``filled``,
    ``canceled``...); paginated with ``limit`` and ``cursor`` (``next_cursor`` of a page)."""
    ctx = context(request)
    if symbol is not None:
        market(ctx, symbol, status=400)
    try:
        if status == "open":
            page = await list_open_orders(
                ctx.pool, principal.user, symbol=symbol, limit=limit, cursor=cursor
            )
        else:
            statuses = None
            if status != "all":
                try:
                    statuses = [OrderStatus(status)]
                except ValueError as exc:
                    raise ApiError(
                        400, "status", "invalid_value", "status: open, all or an order status"
                    ) from exc
            page = await list_order_history(
                ctx.pool,
                principal.user,
                symbol=symbol,
                statuses=statuses,
                limit=limit,
                cursor=cursor,
            )
    except InvalidCursorError as exc:
        raise ApiError(400, "cursor", "invalid_cursor", str(exc)) from exc
    out = [order_out(ctx.markets[o.symbol], o) for o in page.items if o.symbol in ctx.markets]
    return OrderPage(orders=out, next_cursor=page.next_cursor)


#: The route handlers of this module (mounted under ``/api/v1``).
ORDER_HANDLERS = [
    submit_order,
    list_orders,
    get_by_client_id,
    get_my_order,
    cancel_order,
    cancel_all,
    amend_order,
]
