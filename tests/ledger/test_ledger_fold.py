"""The ledger fold and the asset units: rules of apply, holds, cursors, snapshots, audit."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orrange.ledger import (
    FEES,
    VAULT,
    AssetSpec,
    Entry,
    EntryKind,
    Ledger,
    LedgerError,
    MarketUnits,
    Posting,
    entry_id,
    from_decimal,
    load_assets,
    to_decimal,
)
from orrange.markets import MarketSpec

K = EntryKind


def entry(
    seq: int, kind: EntryKind, *postings: Posting, ref: str = "", source: str = "cmd", n: int = 0
) -> Entry:
    return Entry(
        id=entry_id(source, seq, n),
        kind=kind,
        source=source,
        seq=seq,
        n=n,
        ts=seq,
        ref=ref,
        postings=postings,
    )


def deposited(amount: int = 1000) -> Ledger:
    led = Ledger()
    led.apply(
        entry(
            1,
            K.DEPOSIT,
            Posting(VAULT, "USD", -amount, 0),
            Posting("u", "USD", amount, 0),
            source="funds",
        )
    )
    return led


def test_apply_moves_balances_and_tracks_the_hold_of_a_ref() -> None:
    led = deposited()
    assert led.apply(entry(1, K.HOLD, Posting("u", "USD", -300, 300), ref="S:1"))
    assert led.balance("u", "USD") == (700, 300)
    assert led.hold("S:1") == ("u", "USD", 300)
    led.apply(
        entry(2, K.FILL, Posting("u", "USD", 0, -100), Posting("v", "USD", 100, 0), ref="S:1")
    )
    assert led.hold("S:1") == ("u", "USD", 200)
    led.apply(entry(3, K.RELEASE, Posting("u", "USD", 200, -200), ref="S:1"))
    assert led.hold("S:1") is None
    assert led.balance("u", "USD") == (900, 0)
    assert led.balances("v") == {"USD": (100, 0)}
    assert led.totals("USD") == (1000, 0)
    assert led.cursor("cmd") == (3, 0) and led.cursor("funds") == (1, 0)


def test_an_entry_at_or_below_its_source_cursor_is_skipped() -> None:
    led = deposited()
    e = entry(5, K.HOLD, Posting("u", "USD", -1, 1), ref="S:1", n=2)
    assert led.apply(e)
    assert not led.apply(e)
    assert not led.apply(entry(5, K.HOLD, Posting("u", "USD", -1, 1), ref="S:1", n=1))
    assert not led.apply(entry(4, K.HOLD, Posting("u", "USD", -1, 1), ref="S:1", n=9))
    assert led.apply(entry(5, K.HOLD, Posting("u", "USD", -1, 1), ref="S:1", n=3))
    assert led.balance("u", "USD") == (998, 2)


BAD = [
    ("sum", (Posting("u", "USD", -5, 0), Posting("v", "USD", 4, 0)), ""),
    ("sum", (Posting("u", "USD", -5, 0), Posting("v", "T", 5, 0)), ""),
    ("sum", (Posting("u", "USD", -5, 6),), ""),
    ("would be", (Posting("u", "USD", -1001, 0), Posting("v", "USD", 1001, 0)), ""),
    ("would be", (Posting("u", "USD", -1001, 1001),), ""),
    ("would be", (Posting(FEES, "USD", -1, 0), Posting("u", "USD", 1, 0)), ""),
    ("holds nothing", (Posting("u", "USD", 0, -1), Posting("v", "USD", 1, 0)), "S:9"),
    ("holds nothing", (Posting("u", "USD", 1, -1),), "S:9"),
    (
        "sum",
        (Posting("u", "USD", -5, 0), Posting("v", "USD", 4, 0), Posting("w", "USD", 0, 0)),
        "",
    ),
]


@pytest.mark.parametrize(("why", "postings", "ref"), BAD)
def test_a_broken_entry_raises_and_changes_nothing(
    why: str, postings: tuple[Posting, ...], ref: str
) -> None:
    led = deposited()
    led.apply(entry(1, K.HOLD, Posting("u", "USD", -10, 10), ref="S:1"))
    before = led.snapshot()
    with pytest.raises(LedgerError, match=why):
        led.apply(entry(2, K.FILL, *postings, ref=ref))
    assert led.snapshot() == before


def test_a_hold_is_settled_only_by_its_own_account_and_asset() -> None:
    led = deposited()
    led.apply(entry(1, K.HOLD, Posting("u", "USD", -10, 10), ref="S:1"))
    led.apply(
        entry(2, K.DEPOSIT, Posting(VAULT, "USD", -5, 0), Posting("v", "USD", 5, 0), source="f")
    )
    led.apply(entry(2, K.HOLD, Posting("v", "USD", -5, 5)))
    led.apply(entry(3, K.HOLD, Posting("u", "USD", -5, 5), ref="S:2"))
    before = led.snapshot()
    with pytest.raises(LedgerError, match="is held by u"):
        led.apply(entry(4, K.RELEASE, Posting("v", "USD", 5, -5), ref="S:1"))
    with pytest.raises(LedgerError, match="which holds 10"):
        led.apply(entry(4, K.RELEASE, Posting("u", "USD", 11, -11), ref="S:1"))
    assert led.snapshot() == before


def test_self_transfer_in_one_entry_takes_the_general_path() -> None:
    led = deposited()
    led.apply(entry(1, K.HOLD, Posting("u", "USD", -10, 10), ref="S:1"))
    led.apply(entry(2, K.FILL, Posting("u", "USD", 0, -10), Posting("u", "USD", 10, 0), ref="S:1"))
    assert led.balance("u", "USD") == (1000, 0) and led.hold("S:1") is None


def test_audit_figures_and_a_broken_identity() -> None:
    led = deposited(1000)
    led.apply(entry(1, K.WITHDRAWAL_REQUESTED, Posting("u", "USD", -400, 400), ref="w"))
    led.apply(
        entry(
            2,
            K.WITHDRAWAL_CONFIRMED,
            Posting("u", "USD", 0, -400),
            Posting(VAULT, "USD", 400, 0),
            ref="w",
            source="funds",
        )
    )
    led.apply(entry(3, K.FEE, Posting("u", "USD", -7, 0), Posting(FEES, "USD", 7, 0)))
    a = led.audit("USD")
    assert (a.users_available, a.users_held, a.fees, a.deposits, a.withdrawals) == (
        593,
        0,
        7,
        1000,
        400,
    )
    assert a.vault == -600 and a.ok
    # a movement out of the vault that no withdrawal entry explains breaks the identity
    led.apply(entry(4, K.FEE, Posting(VAULT, "USD", -1, 0), Posting("u", "USD", 1, 0)))
    assert not led.audit("USD").ok


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 50), st.booleans()), max_size=60))
def test_snapshot_restore_and_the_rest_equals_applying_everything(
    ops: list[tuple[int, int, bool]],
) -> None:
    entries = [entry(1, K.DEPOSIT, Posting(VAULT, "X", -(10**6), 0), Posting("u0", "X", 10**6, 0))]
    for i, (user, amount, hold) in enumerate(ops, start=2):
        src = "u0" if hold else f"u{user}"
        if hold:
            entries.append(entry(i, K.HOLD, Posting(src, "X", -amount, amount), ref=f"r{user}"))
        else:
            entries.append(
                entry(i, K.FILL, Posting("u0", "X", -amount, 0), Posting(src, "X", amount, 0))
            )
    whole = Ledger()
    for e in entries:
        whole.apply(e)
    for cut in (0, len(entries) // 2, len(entries)):
        part = Ledger()
        for e in entries[:cut]:
            part.apply(e)
        again = Ledger.restore(part.snapshot())
        for e in entries:  # the replay starts before the cut: the cursor skips the applied
            again.apply(e)
        assert again.snapshot() == whole.snapshot()
    assert whole.audit("X").ok


# ------------------------------------------------------------------------------- assets
ASSETS_TOML = """
[[asset]]
code = "ETH"
decimals = 18
token = "native"

[[asset]]
code = "USDT"
decimals = 18
token = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
"""


def test_load_assets_normalises_tokens_and_rejects_repeats() -> None:
    assets = load_assets(ASSETS_TOML)
    assert assets["USDT"].token == "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    assert assets["ETH"] == AssetSpec("ETH", 18)
    with pytest.raises(ValueError, match="twice"):
        load_assets({"asset": [{"code": "A", "decimals": 1}, {"code": "A", "decimals": 2}]})
    with pytest.raises(ValueError, match="share"):
        load_assets({"asset": [{"code": "A", "decimals": 1}, {"code": "B", "decimals": 2}]})
    with pytest.raises(ValueError, match="token"):
        AssetSpec("A", 1, "0x12")
    with pytest.raises(ValueError, match="decimals"):
        AssetSpec("A", 37)


def test_market_units_of_btc_usdt_and_an_off_grid_market() -> None:
    btc = AssetSpec("BTC", 18, "0x" + "1" * 40)
    usdt = AssetSpec("USDT", 18, "0x" + "2" * 40)
    spec = MarketSpec(
        symbol="BTC-USDT",
        base="BTC",
        quote="USDT",
        tick_size="0.01",
        lot_size="0.00001",
        min_qty="0.00001",
        max_qty="1000",
    )
    assert MarketUnits.of(spec, btc, usdt) == MarketUnits(10**13, 10**11)
    with pytest.raises(ValueError, match="BTC-USDT: lot size"):
        MarketUnits.of(spec, AssetSpec("BTC", 4, "0x" + "1" * 40), usdt)
    with pytest.raises(ValueError, match="BTC-USDT: quote unit"):
        MarketUnits.of(spec, btc, AssetSpec("USDT", 6, "0x" + "2" * 40))


def test_decimal_conversions_are_exact() -> None:
    usdt = AssetSpec("USDT", 18)
    assert from_decimal(usdt, "1.5") == 15 * 10**17
    assert from_decimal(usdt, "0.000000000000000001") == 1
    assert from_decimal(usdt, "2.500000000000000000000") == 25 * 10**17
    assert to_decimal(usdt, 15 * 10**17) == "1.500000000000000000"
    assert to_decimal(usdt, -1) == "-0.000000000000000001"
    assert to_decimal(AssetSpec("X", 0), 42) == "42"
    assert from_decimal(usdt, str(2**256)) == 2**256 * 10**18
    for bad in ("0.0000000000000000001", "nan", "inf", "abc", "1" * 250):
        with pytest.raises(ValueError):
            from_decimal(usdt, bad)


@given(st.integers(-(10**30), 10**30), st.integers(0, 36))
def test_decimal_round_trip(units: int, decimals: int) -> None:
    a = AssetSpec("X", decimals)
    text = to_decimal(a, units)
    assert from_decimal(a, text) == units
    assert Decimal(text) == Decimal(units).scaleb(-decimals, Context(prec=100))
