"""The pure order book and matching core: commands in, typed events out.

>>> from orrange.markets import MarketSpec
>>> from orrange.matching import OrderBook, SubmitOrder, Side
>>> spec = MarketSpec(symbol="BTC-USDT", base="BTC", quote="USDT", tick_size="0.01",
...                   lot_size="0.001", min_qty="0.001", max_qty="100")
>>> book = OrderBook(spec)
>>> events = book.process(SubmitOrder(ts=1, user="a", side=Side.SELL, quantity=5, price=100))
>>> [type(e).__name__ for e in events]
['OrderAccepted', 'BookDelta']
"""

from orrange.matching.book import (
    BookSnapshot,
    L2Book,
    L3Order,
    OrderBook,
    OrderState,
    OrderView,
)
from orrange.matching.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Halt,
    Resume,
    SetReferencePrice,
    SubmitOrder,
)
from orrange.matching.depth import DepthBand, PriceImpact, depth_bands, price_impact
from orrange.matching.enums import (
    CancelReason,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TriggerSource,
)
from orrange.matching.events import (
    BookDelta,
    BookStatus,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
)

__all__ = [
    "AdvanceTime",
    "AmendOrder",
    "BookDelta",
    "BookSnapshot",
    "BookStatus",
    "CancelAll",
    "CancelOrder",
    "CancelReason",
    "Command",
    "DepthBand",
    "Event",
    "Halt",
    "L2Book",
    "L3Order",
    "OrderAccepted",
    "OrderAmended",
    "OrderBook",
    "OrderCanceled",
    "OrderExpired",
    "OrderFilled",
    "OrderRejected",
    "OrderState",
    "OrderTriggered",
    "OrderType",
    "OrderView",
    "PriceImpact",
    "RejectReason",
    "Resume",
    "SelfTradePrevention",
    "SetReferencePrice",
    "Side",
    "SubmitOrder",
    "TimeInForce",
    "TriggerSource",
    "depth_bands",
    "price_impact",
]
