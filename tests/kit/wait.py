"""``wait_for``: poll a condition until it holds, failing the test after a time limit."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest

WAIT_S = 60.0
"""Default limit of :func:`wait_for` in seconds: a hang guard, far above any expected wait."""


async def wait_for(
    check: Callable[[], Awaitable[bool] | bool],
    what: str,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.05,
) -> None:
    """Poll ``check`` (sync or async) every ``interval_s`` until it returns true.

    Fails the test (``pytest.fail``, naming ``what``) once ``timeout_s`` seconds have passed
    without success; an exception raised by ``check`` propagates. A hang guard, not a timed
    assertion: the limit is far above the expected wait.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        res = check()
        if inspect.isawaitable(res):
            res = await res
        if res:
            return
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what} ({timeout_s:g} s)")
        await asyncio.sleep(interval_s)
