"""LOBSTER replay: parsing, the seeding rules on small hand-made tapes, and the acceptance runs on
the real Nasdaq sample files (AMZN level 1 full day, AAPL level 10 slice) through the library
and through the ``orrange replay lobster`` console command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from orrange.markets import load_markets
from orrange.matching import (
    AmendOrder,
    BookStatus,
    CancelOrder,
    Halt,
    OrderFilled,
    Resume,
    Side,
    SubmitOrder,
    TimeInForce,
)
from orrange.matching.lobster import (
    MAKER_USER,
    SEED_ID_BASE,
    SEED_USER,
    TAKER_USER,
    BookRow,
    Message,
    ReplayResult,
    lobster_spec,
    midnight_utc_ms,
    orderbook_levels,
    parse_messages,
    parse_orderbook,
    parse_time_ns,
    replay,
    replay_parsed,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "lobster"
AMZN_MSG = DATA / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
AMZN_BOOK = DATA / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
AAPL_MSG = DATA / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
AAPL_BOOK = DATA / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"

# 0-based message rows of the AMZN file where the named order is not the one price-time
# priority fills (see test_amzn_wrong_fills_are_priority_inversions_in_the_file)
AMZN_SOURCE_INVERSIONS = [56083, 56553, 56554]

SUMMARY_KEYS = {"messages", "rows_compared", "mismatches", "wrong_fills", "messages_per_s"}


@pytest.fixture(scope="module")
def amzn() -> ReplayResult:
    return replay(AMZN_MSG, AMZN_BOOK)


@pytest.fixture(scope="module")
def aapl() -> ReplayResult:
    return replay(AAPL_MSG, AAPL_BOOK)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orrange.cli", "replay", "lobster", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# ------------------------------------------------------------------------------ parsing


def test_time_parsing_pads_dropped_trailing_zeros() -> None:
    assert parse_time_ns("34200.18960767") == 34_200_189_607_670
    assert parse_time_ns("34200.017459617") == 34_200_017_459_617
    assert parse_time_ns("57600") == 57_600_000_000_000
    for bad in ("", "-1.5", "1.2345678901", "12a", "1.", "1.-2"):
        with pytest.raises(ValueError):
            parse_time_ns(bad)


def test_new_york_midnight_is_four_utc_in_summer() -> None:
    assert midnight_utc_ms(date(2012, 6, 21)) == 1_340_251_200_000  # 2012-06-21T04:00Z (EDT)
    assert midnight_utc_ms(date(2012, 1, 3)) == 1_325_566_800_000  # 2012-01-03T05:00Z (EST)


def test_aapl_files_without_final_newline_parse_completely() -> None:
    assert not AAPL_MSG.read_bytes().endswith(b"\n")
    msgs = parse_messages(AAPL_MSG)
    rows = parse_orderbook(AAPL_BOOK)
    assert len(msgs) == len(rows) == 999
    assert orderbook_levels(AAPL_BOOK) == 10
    last = AAPL_MSG.read_text().rsplit("\n", 1)[-1].split(",")
    assert msgs[-1] == Message(parse_time_ns(last[0]), *(int(v) for v in last[1:]))
    assert msgs[0] == Message(34_200_004_241_176, 1, 16113575, 18, 5853300, 1)
    # first row: 5859400,200,5853300,18,5859800,200,5853000,150,... in ticks
    assert rows[0].asks[:2] == ((58594, 200), (58598, 200))
    assert rows[0].bids[:2] == ((58533, 18), (58530, 150))
    assert len(rows[0].asks) == len(rows[0].bids) == 10


def test_orderbook_filler_levels_are_dropped(tmp_path: Path) -> None:
    f = tmp_path / "book.csv"
    f.write_text("2239500,100,2231800,100,9999999999,0,-9999999999,0\n")
    assert parse_orderbook(f) == [BookRow(asks=((22395, 100),), bids=((22318, 100),))]
    assert orderbook_levels(f) == 2


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("message.csv", "34200.1,1,5,10,2238100\n", "6 columns"),
        ("message.csv", "34200.1,1,5,ten,2238100,1\n", "message.csv:1"),
        ("book.csv", "2239500,100,2231800\n", "multiple of 4"),
        ("book.csv", "2239500,100,2231800,100\n2239500,100\n", "book.csv:2"),
        ("book.csv", "2239550,100,2231800,100\n", "$0.01 grid"),
    ],
)
def test_malformed_files_raise_with_location(
    tmp_path: Path, name: str, text: str, needle: str
) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ValueError) as exc:
        (parse_messages if name == "message.csv" else parse_orderbook)(f)
    assert needle in str(exc.value)


def test_replay_spec_is_the_configured_amzn_market() -> None:
    configured = load_markets(ROOT / "config" / "markets.toml")["AMZN-USD"]
    assert lobster_spec("AMZN-USD") == configured


# ----------------------------------------------------------------- hand-made tapes

T0 = 34_200_000_000_000  # 09:30:00 New York, in ns after midnight
P = 1_000_000  # $100.00 in LOBSTER units = 10000 ticks
TICKS = P // 100


def msg(k: int, type_: int, oid: int, size: int, price: int = P, direction: int = 1) -> Message:
    return Message(T0 + k * 1_000_000, type_, oid, size, price, direction)


def row(bid: int, ask: int = 5, bid_price: int = TICKS) -> BookRow:
    """Level-1 row: ``bid`` lots at $100.00 (none when 0) and ``ask`` lots at $100.05."""
    return BookRow(
        asks=((TICKS + 5, ask),) if ask else (),
        bids=((bid_price, bid),) if bid else (),
    )


def test_unknown_size_is_seeded_ahead_of_a_new_order_at_the_same_level() -> None:
    # 7 lots rest at $100.00 before the file starts; a known order of 5 joins behind them
    msgs = [
        msg(0, 1, 10, 5),
        msg(1, 4, 99, 7),  # execution of an unknown id: must fill the seed
        msg(2, 4, 10, 5),  # then the known order
    ]
    rows = [row(12), row(5), row(0)]
    res = replay_parsed(msgs, rows, 1)
    assert res.summary.mismatches == 0
    assert res.summary.wrong_fills == 0
    assert res.summary.rows_compared == 3
    seed_ask, seed_bid, known = res.commands[:3]  # both seeds come before message 1
    assert isinstance(seed_bid, SubmitOrder) and isinstance(seed_ask, SubmitOrder)
    assert {seed_bid.user, seed_ask.user} == {SEED_USER}
    assert (seed_ask.side, seed_ask.price, seed_ask.quantity) == (Side.SELL, TICKS + 5, 5)
    assert (seed_bid.side, seed_bid.price, seed_bid.quantity) == (Side.BUY, TICKS, 7)
    assert isinstance(known, SubmitOrder) and known.order_id == 10 and known.user == MAKER_USER
    # the first message's time, as ms UTC
    assert known.ts == midnight_utc_ms() + 34_200_000
    fills = [(f.maker_order_id, f.quantity, f.taker_user) for f in res.fills]
    assert fills == [(seed_bid.order_id, 7, TAKER_USER), (10, 5, TAKER_USER)]
    takers = [c for c in res.commands if isinstance(c, SubmitOrder) and c.user == TAKER_USER]
    assert [(c.side, c.price, c.quantity, c.tif) for c in takers] == [
        (Side.SELL, TICKS, 7, TimeInForce.IOC),
        (Side.SELL, TICKS, 5, TimeInForce.IOC),
    ]


def test_partial_cancel_amends_down_and_keeps_priority() -> None:
    msgs = [
        msg(0, 1, 1, 10),
        msg(1, 1, 2, 5),
        msg(2, 2, 1, 4),  # partial cancel of the first order
        msg(3, 4, 1, 6),  # it is still first in the queue
        msg(4, 3, 2, 5),
    ]
    rows = [row(10), row(15), row(11), row(5), row(0)]
    res = replay_parsed(msgs, rows, 1)
    assert (res.summary.mismatches, res.summary.wrong_fills) == (0, 0)
    amends = [c for c in res.commands if isinstance(c, AmendOrder)]
    assert [(a.order_id, a.quantity) for a in amends] == [(1, 6)]
    assert [(f.maker_order_id, f.quantity) for f in res.fills] == [(1, 6)]
    assert [c.order_id for c in res.commands if isinstance(c, CancelOrder)] == [2]


def test_cancel_of_an_unknown_id_draws_from_the_seed() -> None:
    msgs = [msg(0, 5, 0, 3, P + 300, -1), msg(1, 3, 77, 3), msg(2, 2, 78, 1)]
    rows = [row(8), row(5), row(4)]
    res = replay_parsed(msgs, rows, 1)
    assert (res.summary.mismatches, res.summary.wrong_fills, res.unexplained) == (0, 0, 0)
    seed_cmds = [c for c in res.commands if getattr(c, "user", "") == SEED_USER]
    assert [type(c).__name__ for c in seed_cmds] == [
        "SubmitOrder",
        "SubmitOrder",
        "AmendOrder",
        "AmendOrder",
    ]
    assert res.book.depth(1).bids == [(TICKS, 4)]
    assert all(c.order_id > SEED_ID_BASE for c in seed_cmds if isinstance(c, AmendOrder))


def test_execution_out_of_priority_order_is_a_wrong_fill_counted_once() -> None:
    msgs = [
        msg(0, 1, 1, 5),
        msg(1, 1, 2, 5),
        msg(2, 4, 2, 5),  # order 1 is ahead at the same price: FIFO fills 1, not 2
        msg(3, 4, 1, 5),
    ]
    rows = [row(5), row(10), row(5), row(0)]
    res = replay_parsed(msgs, rows, 1)
    assert res.summary.wrong_fills == 1
    assert res.wrong_fill_rows == [2]
    assert res.summary.mismatches == 0  # sizes agree; the orders are corrected afterwards
    assert [(f.maker_order_id, f.quantity) for f in res.fills] == [(1, 5), (1, 5)]


def test_executions_of_one_timestamp_are_checked_as_one_sweep() -> None:
    sweep_ns = T0 + 5_000_000
    msgs = [
        msg(0, 1, 1, 5),
        msg(1, 1, 2, 5),
        Message(sweep_ns, 4, 2, 5, P, 1),
        Message(sweep_ns, 4, 1, 5, P, 1),
    ]
    rows = [row(5), row(10), row(5), row(0)]
    res = replay_parsed(msgs, rows, 1)
    assert (res.summary.mismatches, res.summary.wrong_fills) == (0, 0)
    assert sorted((f.maker_order_id, f.quantity) for f in res.fills) == [(1, 5), (2, 5)]


def test_halt_and_resume_messages() -> None:
    msgs = [
        msg(0, 1, 1, 5),
        Message(T0 + 1_000_000, 7, 0, 0, -1, -1),  # halt
        Message(T0 + 2_000_000, 7, 0, 0, 0, -1),  # quoting resumes
        Message(T0 + 3_000_000, 7, 0, 0, 1, -1),  # trading resumes (already accepting)
        msg(4, 1, 2, 5),
    ]
    rows = [row(5), row(5), row(5), row(5), row(10)]
    res = replay_parsed(msgs, rows, 1)
    assert (res.summary.mismatches, res.summary.wrong_fills) == (0, 0)
    assert [type(c) for c in res.commands if isinstance(c, Halt | Resume)] == [Halt, Resume]
    assert [e.halted for e in res.events if isinstance(e, BookStatus)] == [True, False]
    assert not res.book.halted


def test_level_reentering_sight_drops_orders_no_later_message_names() -> None:
    # order 1 rests at $100.00; a better bid (order 2) hides that level; out of sight order 1
    # is canceled and 6 unknown lots arrive; order 2 leaves and $100.00 shows 6 lots
    better = TICKS + 1
    msgs = [
        msg(0, 1, 1, 5),
        msg(1, 1, 2, 4, P + 100),
        msg(2, 3, 2, 4, P + 100),
        msg(3, 4, 55, 6),  # an unknown id trades the 6 lots
    ]
    rows = [row(5), row(4, bid_price=better), row(6), row(0)]
    res = replay_parsed(msgs, rows, 1)
    assert (res.summary.mismatches, res.summary.wrong_fills) == (0, 0)
    assert res.presumed_gone == 1
    assert [f.maker_order_id > SEED_ID_BASE for f in res.fills] == [True]


def test_mismatch_is_reported_with_both_views() -> None:
    msgs = [msg(0, 1, 1, 5), msg(1, 1, 2, 5)]
    rows = [row(5), row(11)]  # the file claims 11 lots after two orders of 5
    res = replay_parsed(msgs, rows, 1)
    assert res.summary.mismatches == 1
    m = res.mismatch_rows[0]
    assert (m.row, m.expected_bids, m.engine_bids) == (1, [(TICKS, 11)], [(TICKS, 10)])


def test_replay_argument_errors() -> None:
    with pytest.raises(ValueError, match="orderbook rows"):
        replay_parsed([msg(0, 1, 1, 5)], [], 1)
    with pytest.raises(ValueError, match="levels"):
        replay_parsed([msg(0, 1, 1, 5)], [row(5)], 1, levels=2)


# ------------------------------------------------------------------- real sample files


def test_aapl_level10_slice_replays_exactly(aapl: ReplayResult) -> None:
    s = aapl.summary
    assert (s.messages, s.rows_compared, s.mismatches, s.wrong_fills) == (999, 999, 0, 0)
    assert aapl.levels == 10
    assert aapl.book.symbol == "AAPL-USD"
    n_exec = sum(1 for m in parse_messages(AAPL_MSG) if m.type == 4)
    assert n_exec == 98
    assert all(f.taker_user == TAKER_USER for f in aapl.fills)


def test_amzn_full_day_replays_every_row(amzn: ReplayResult) -> None:
    s = amzn.summary
    assert (s.messages, s.rows_compared, s.mismatches) == (57_515, 57_515, 0)
    assert amzn.unexplained == 0
    assert amzn.book.symbol == "AMZN-USD"
    # every visible execution traded its full size, and only with the replay's taker
    msgs = parse_messages(AMZN_MSG)
    assert sum(f.quantity for f in amzn.fills) == sum(m.size for m in msgs if m.type == 4)
    assert {f.taker_user for f in amzn.fills} == {TAKER_USER}


def test_amzn_wrong_fills_are_priority_inversions_in_the_file(amzn: ReplayResult) -> None:
    """The only executions a price-time book cannot reproduce are ones where the file itself
    trades a later order while an earlier order at the same price, fully visible, rests ahead.
    """
    assert amzn.summary.wrong_fills == len(AMZN_SOURCE_INVERSIONS)
    assert amzn.wrong_fill_rows == AMZN_SOURCE_INVERSIONS
    msgs = parse_messages(AMZN_MSG)

    def named(oid: int) -> list[tuple[int, int, int, int]]:
        return [(i, m.type, m.size, m.price) for i, m in enumerate(msgs) if m.order_id == oid]

    # 284135299 (400 @ $220.81, line 56083) trades 100 at line 56084 although 283668256
    # (8 @ $220.81, line 55989) rests ahead of it: it only trades at line 56159
    assert named(284135299)[:2] == [(56082, 1, 400, 2208100), (56083, 4, 100, 2208100)]
    assert named(283668256) == [(55988, 1, 8, 2208100), (56158, 4, 8, 2208100)]
    # one sweep (lines 56553-56555, one timestamp) takes 38 from 285536914, second in the
    # queue, while the first, 285536453 (270 lots), gives only 154
    assert named(285536453)[:2] == [(56542, 1, 270, 2206200), (56554, 4, 154, 2206200)]
    assert named(285536914) == [(56544, 1, 38, 2206200), (56553, 4, 38, 2206200)]
    assert msgs[56553].time_ns == msgs[56554].time_ns
    assert not any(m.order_id in (285536453, 285536914) for m in msgs[56545:56553])


def test_replay_is_deterministic_and_a_limit_is_a_prefix(aapl: ReplayResult) -> None:
    again = replay(AAPL_MSG, AAPL_BOOK)
    assert again.commands == aapl.commands
    assert again.events == aapl.events
    head = replay(AAPL_MSG, AAPL_BOOK, limit=300)
    assert head.summary.messages == 300
    assert head.commands == aapl.commands[: len(head.commands)]
    assert head.fills == aapl.fills[: len(head.fills)]


def test_corrupted_row_is_a_mismatch(tmp_path: Path) -> None:
    lines = AMZN_BOOK.read_text().splitlines()
    k = 30_000  # a row whose bid level is the same before and after
    assert lines[k - 1].split(",")[2] == lines[k].split(",")[2] == lines[k + 1].split(",")[2]
    cols = lines[k].split(",")
    cols[3] = str(int(cols[3]) + 1)
    lines[k] = ",".join(cols)
    bad = tmp_path / AMZN_BOOK.name
    bad.write_text("\n".join(lines) + "\n")
    res = replay(AMZN_MSG, bad, keep=False, limit=k + 500)
    assert res.summary.mismatches == 1
    assert res.mismatch_rows[0].row == k


# ----------------------------------------------------------------------- console command


@pytest.mark.process
def test_cli_json_aapl() -> None:
    proc = run_cli("--messages", AAPL_MSG, "--orderbook", AAPL_BOOK, "--json")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert set(summary) == SUMMARY_KEYS
    assert summary["messages"] == summary["rows_compared"] == 999
    assert summary["mismatches"] == summary["wrong_fills"] == 0
    assert summary["messages_per_s"] > 0


@pytest.mark.process
def test_cli_json_amzn() -> None:
    proc = run_cli("--messages", AMZN_MSG, "--orderbook", AMZN_BOOK, "--json")
    summary = json.loads(proc.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert summary["messages"] == summary["rows_compared"] == 57_515
    assert summary["mismatches"] == 0
    assert summary["wrong_fills"] == len(AMZN_SOURCE_INVERSIONS)
    assert proc.returncode == 1  # any wrong fill fails the run


@pytest.mark.process
def test_cli_human_summary_and_corrupted_row(tmp_path: Path) -> None:
    ok = run_cli("--messages", AAPL_MSG, "--orderbook", AAPL_BOOK, "--levels", "5")
    assert ok.returncode == 0, ok.stderr
    assert "rows compared:     999 (5 level(s) per side)" in ok.stdout
    assert "mismatches:        0" in ok.stdout
    lines = AAPL_BOOK.read_text().split("\n")
    cols = lines[500].split(",")
    cols[1] = str(int(cols[1]) + 100)  # best ask size of row 501
    lines[500] = ",".join(cols)
    bad = tmp_path / "orderbook.csv"
    bad.write_text("\n".join(lines))
    proc = run_cli("--messages", AAPL_MSG, "--orderbook", bad, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["mismatches"] >= 1
    human = run_cli("--messages", AAPL_MSG, "--orderbook", bad)
    assert human.returncode == 1
    assert "mismatch at line 501" in human.stdout


@pytest.mark.process
def test_cli_errors() -> None:
    deep = run_cli("--messages", AAPL_MSG, "--orderbook", AAPL_BOOK, "--levels", "11")
    assert deep.returncode == 2
    assert "levels" in deep.stderr
    missing = run_cli("--messages", AAPL_MSG.with_name("nope.csv"), "--orderbook", AAPL_BOOK)
    assert missing.returncode == 2
    assert "nope.csv" in missing.stderr


@pytest.mark.process
def test_cli_limit() -> None:
    proc = run_cli("--messages", AMZN_MSG, "--orderbook", AMZN_BOOK, "--json", "--limit", "5000")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["messages"] == summary["rows_compared"] == 5000
    assert summary["mismatches"] == summary["wrong_fills"] == 0


def test_fills_are_order_filled_events(amzn: ReplayResult) -> None:
    assert amzn.fills and all(isinstance(f, OrderFilled) for f in amzn.fills)
    assert len(amzn.events) > len(amzn.commands) > amzn.summary.messages // 2
