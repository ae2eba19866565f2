"""The pure ledger of issue 13 (docs/funds.md): assets and units (:mod:`~.assets`), entries
(:mod:`~.entries`), the fold (:mod:`~.ledger`), what an order needs held (:mod:`~.holds`) and
the funds rules risk applies (:mod:`~.funds`). No I/O."""

from orrange.ledger.assets import AssetSpec, MarketUnits, from_decimal, load_assets, to_decimal
from orrange.ledger.entries import (
    FAUCET,
    FEES,
    LOSS,
    VAULT,
    Entry,
    EntryKind,
    Posting,
    entry_id,
    order_ref,
    p2p_account,
)
from orrange.ledger.funds import Funds, FundsError, FundsMarket, OrderFunds
from orrange.ledger.holds import needed
from orrange.ledger.ledger import Audit, Balance, Ledger, LedgerError, LedgerState

__all__ = [
    "FAUCET",
    "FEES",
    "LOSS",
    "VAULT",
    "AssetSpec",
    "Audit",
    "Balance",
    "Entry",
    "EntryKind",
    "Funds",
    "FundsError",
    "FundsMarket",
    "Ledger",
    "LedgerError",
    "LedgerState",
    "MarketUnits",
    "OrderFunds",
    "Posting",
    "entry_id",
    "from_decimal",
    "load_assets",
    "needed",
    "order_ref",
    "p2p_account",
    "to_decimal",
]
