"""The coalescing transport under uvicorn: one write per response, nothing held past one loop
iteration, and real HTTP and WebSocket traffic unchanged (the API tests run on it too)."""

from __future__ import annotations

import asyncio

from orrange.api._http import CoalescingTransport


class _Sink(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000)}.get(name, default)


async def test_head_and_body_leave_in_one_write() -> None:
    sink = _Sink()
    t = CoalescingTransport(sink, asyncio.get_running_loop())
    t.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    assert sink.writes == [] and t.get_write_buffer_size() > 0
    t.write(b"{}")
    assert sink.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)
    assert len(sink.writes) == 1  # nothing left behind
    assert t.get_extra_info("sockname") == ("127.0.0.1", 8000)


async def test_a_lone_write_leaves_on_the_next_iteration() -> None:
    sink = _Sink()
    t = CoalescingTransport(sink, asyncio.get_running_loop())
    t.write(b"frame")
    await asyncio.sleep(0)
    assert sink.writes == [b"frame"]
    t.writelines([b"a", b"b"])
    t.close()  # flushes what is held, then closes
    assert sink.writes == [b"frame", b"ab"] and sink.closed
    await asyncio.sleep(0)
    assert sink.writes == [b"frame", b"ab"]


async def test_abort_drops_what_is_held() -> None:
    sink = _Sink()
    t = CoalescingTransport(sink, asyncio.get_running_loop())
    t.write(b"partial")
    t.abort()
    await asyncio.sleep(0)
    assert sink.writes == [] and sink.aborted


async def test_keep_alive_responses_through_uvicorn() -> None:
    """Through uvicorn with the coalescing protocol: sequential requests on one keep-alive
    connection each get their whole response, and nothing is held back between them."""
    import uvicorn

    from orrange.api._http import CoalescingHttpToolsProtocol

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        body = b'{"ok":true}'
        await send(  # type: ignore[operator]
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
            }
        )
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=CoalescingHttpToolsProtocol,
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 201 Created\r\n"), head
            assert await asyncio.wait_for(reader.readexactly(11), 2) == b'{"ok":true}'
        writer.close()
    finally:
        server.should_exit = True
        await task
