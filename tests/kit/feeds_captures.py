"""Loaders of the real WebSocket captures in ``../shared/data/ws-captures/`` (see its README).

The files are read in place, never copied. Frames are returned as the recorded raw text.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CAPTURES = (REPO / ".." / "shared" / "data" / "ws-captures").resolve()
BINANCE_WS = CAPTURES / "binance" / "BINANCE.ws.1.0"
BINANCE_HTTP = CAPTURES / "binance" / "BINANCE.http.0.0"
COINBASE = CAPTURES / "coinbase" / "COINBASE.jsonl.gz"
KRAKEN = CAPTURES / "kraken" / "KRAKEN.jsonl.gz"


@dataclass(frozen=True)
class Frame:
    """One recorded frame: local receive time (unix s), connection name, raw text, parsed."""

    ts: float
    conn: str
    raw: str
    msg: Any


def binance_frames() -> list[Frame]:
    """The combined-stream frames of the Binance capture, in order."""
    out: list[Frame] = []
    lines = BINANCE_WS.read_text().splitlines()
    for line in lines[1:]:  # first line: the connection URL
        if not line.strip():
            continue
        ts, _, raw = line.partition(": ")
        out.append(Frame(float(ts), "BINANCE.ws.1", raw, json.loads(raw)))
    return out


def binance_snapshots() -> dict[str, str]:
    """Recorded REST depth snapshots: Binance symbol -> raw JSON body."""
    out: dict[str, str] = {}
    for line in BINANCE_HTTP.read_text().splitlines():
        if not line.strip():
            continue
        url, _, rest = line.partition(" -> ")
        _, _, body = rest.partition(": ")
        symbol = url.split("symbol=")[1].split("&")[0]
        out[symbol] = body
    return out


def jsonl_frames(path: Path) -> list[Frame]:
    """The ``recv`` records of a cryptofeed v3 jsonl capture, in file order."""
    out: list[Frame] = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["t"] == "recv":
                out.append(Frame(rec["ts"], rec["conn"], rec["data"], json.loads(rec["data"])))
    return out
