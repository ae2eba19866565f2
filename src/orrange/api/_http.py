"""uvicorn's httptools protocol, sending each HTTP response in one ``write``.

uvicorn writes a response's status line and headers when the application sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send``
system calls and two TCP segments for every small JSON answer. On loopback each costs the
sender the receiver's network processing too, and they were the largest single item in a
profile of ``POST /api/v1/orders`` (about 15 % of the API process). :class:`CoalescingTransport`
holds a write until the next one, or until the event loop's next iteration at the latest, and
sends both as one; nothing is held longer than the current loop iteration, so streaming
responses and WebSocket frames are delayed by at most one iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport proxy that joins a write with the next one (see the module docstring).

    Every other attribute is the wrapped transport's. ``close``, ``write_eof`` and
    ``writelines`` send what is held first; ``abort`` drops it.
    """

    __slots__ = ("_handle", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._handle: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._handle = self._loop.call_soon(self.flush)
            return
        # the second write of a response (its body): send both now
        self._held = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._transport.write(held + data)

    def flush(self) -> None:
        """Send what is held (called by the loop one iteration after the held write)."""
        self._handle = None
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol on a :class:`CoalescingTransport` (pass the class as
    uvicorn's ``http`` setting)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
