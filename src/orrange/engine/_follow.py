"""Block reads the chain watchers share (escrow and vault): the confirmation-depth cursor
check, the fork point of a reorg, and a range's blocks read and checked against its logs.

Chain calls are synchronous web3.py, run in worker threads. Block hashes are ``0x`` +
64 lower-case hex digits; times in blocks are unix seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import msgspec
from web3 import Web3
from web3.exceptions import BlockNotFound

from orrange.store.settlement import BlockRef

__all__ = [
    "FollowOptions",
    "LogPosition",
    "block_hash",
    "fork_point",
    "get_block",
    "is_canonical",
    "read_blocks",
]

#: Block requests in flight at once while reading a range.
_IN_FLIGHT = 32


class FollowOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Tunables of a chain watcher (each adds its contract's address).

    Attributes:
        chain_url: JSON-RPC URL, or None to follow no chain.
        confirmations: blocks on top of a block before its logs are applied (0: at once).
        poll_interval_ms: pause between chain polls (ms).
        max_range: most blocks read per ``eth_getLogs``.
        start_block: first block to read when there is no cursor yet.
        db_connect_timeout_ms: how long start waits for PostgreSQL (ms).
    """

    chain_url: str | None = None
    confirmations: int = 2
    poll_interval_ms: int = 1_000
    max_range: int = 2_000
    start_block: int = 0
    db_connect_timeout_ms: int = 60_000


class LogPosition(Protocol):
    """What a decoded log says about where it was found."""

    @property
    def block_number(self) -> int: ...

    @property
    def block_hash(self) -> str: ...


async def get_block(w3: Web3, number: int | str) -> Any:
    """Block ``number`` (or ``"latest"``); raises ``BlockNotFound`` past the head."""
    return await asyncio.to_thread(lambda: w3.eth.get_block(number))  # type: ignore[arg-type]


def block_hash(block: Any) -> str:
    """A web3.py block's hash as ``0x`` lower-case hex."""
    return "0x" + bytes(block["hash"]).hex()


async def is_canonical(w3: Web3, ref: BlockRef) -> bool:
    """True when the chain's block ``ref.number`` has the hash ``ref.hash``; False when it
    has another or the chain is now shorter."""
    try:
        block = await get_block(w3, ref.number)
    except BlockNotFound:
        return False
    return block_hash(block) == ref.hash


async def fork_point(w3: Web3, newest_first: Iterable[BlockRef]) -> BlockRef | None:
    """The newest of the remembered blocks the chain still has (None: none of them)."""
    for ref in newest_first:
        if await is_canonical(w3, ref):
            return ref
    return None


async def read_blocks(
    w3: Web3, events: Sequence[LogPosition], end: int
) -> tuple[dict[int, Any], list[BlockRef]]:
    """The blocks of ``events`` and block ``end``, by number, and their refs.

    Raises ``RuntimeError`` when a block's hash differs from the one a log of ``events`` was
    found in (a reorg while reading: the caller drops the pass and retries).
    """
    numbers = sorted({e.block_number for e in events} | {end})
    blocks: dict[int, Any] = {}
    for i in range(0, len(numbers), _IN_FLIGHT):
        chunk = numbers[i : i + _IN_FLIGHT]
        for n, b in zip(chunk, await asyncio.gather(*(get_block(w3, n) for n in chunk))):
            blocks[n] = b
    refs = [BlockRef(n, block_hash(b)) for n, b in blocks.items()]
    hashes = {r.number: r.hash for r in refs}
    for e in events:
        if hashes[e.block_number] != e.block_hash:
            raise RuntimeError(f"block {e.block_number} changed while reading; will retry")
    return blocks, refs
