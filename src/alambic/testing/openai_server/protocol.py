"""The test server's HTTP/1.1 protocol on raw :mod:`asyncio` (keep-alive, pipelining)."""

from __future__ import annotations

import asyncio

from alambic.testing.openai_server.app import _App
from alambic.testing.openai_server.config import _MAX_HEADER_BYTES
from alambic.testing.openai_server.replies import (
    _DROP,
    _HANG,
    _OK,
    _TRUNCATE,
    _error,
    _reason,
    _Reply,
)

# --------------------------------------------------------------------------- HTTP


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection.  Requests are answered in order.

    The fast path (no delay, no fault needing the event loop) parses and answers inside
    ``data_received`` without creating a task; anything that must wait runs in one task,
    and parsing of further pipelined requests resumes when it finishes.
    """

    def __init__(self, app: _App) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._process()

    def _process(self) -> None:
        buf = self.buf
        while not self.closed and buf:
            end_head = buf.find(b"\r\n\r\n")
            if end_head < 0:
                if len(buf) > _MAX_HEADER_BYTES:
                    self._send_and_close(_error(431))
                return
            try:
                lines = buf[:end_head].decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._send_and_close(_error(400, "Malformed HTTP request"))
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._send_and_close(_error(411, "Only Content-Length bodies are supported"))
                return
            end = end_head + 4 + length
            if len(buf) < end:
                return
            body = bytes(buf[end_head + 4 : end])
            del buf[:end]
            conn = headers.get("connection", "").lower()
            keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"

            app = self.app
            reply = app.handle(method, target, headers, body)
            if reply.delay > 0 or reply.action != _OK or reply.chunk_delay > 0:
                self.task = asyncio.get_running_loop().create_task(self._slow(reply, keep_alive))
                return
            self._send(reply, keep_alive)
            if reply.counted:
                app.finish(reply.status)
            if not keep_alive:
                self._close()
                return

    async def _slow(self, reply: _Reply, keep_alive: bool) -> None:
        """Answer a request that must wait (latency, hang, drop, delayed chunks)."""
        sent: int | None = None
        try:
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            if reply.action == _HANG:
                await asyncio.get_running_loop().create_future()  # until cancelled
            elif reply.action == _DROP:
                self._close(abort=True)
            elif reply.action == _TRUNCATE:
                self._send(reply, keep_alive, truncate=True)
                self._close()
                sent = reply.status
            elif reply.chunk_delay > 0 and isinstance(reply.body, list):
                self._write_head(reply, sum(map(len, reply.body)), keep_alive)
                assert self.transport is not None
                for i, chunk in enumerate(reply.body):
                    if i:
                        await asyncio.sleep(reply.chunk_delay)
                    if self.closed:
                        return
                    self.transport.write(chunk)
                sent = reply.status
            else:
                self._send(reply, keep_alive)
                sent = reply.status
            if not keep_alive:
                self._close()
        finally:
            if reply.counted:
                self.app.finish(sent)
            self.task = None
        if not self.closed and self.buf:
            self._process()

    def _write_head(self, reply: _Reply, length: int, keep_alive: bool) -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {reply.status} {_reason(reply.status)}\r\n"
            f"content-type: {reply.content_type}\r\n"
            f"content-length: {length}\r\n"
        )
        if reply.headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
        if reply.content_type == "text/event-stream":
            head += "cache-control: no-cache\r\n"
        if not keep_alive:
            head += "connection: close\r\n"
        self.transport.write(head.encode("latin-1") + b"\r\n")

    def _send(self, reply: _Reply, keep_alive: bool, truncate: bool = False) -> None:
        if self.closed or self.transport is None:
            return
        body = reply.body if isinstance(reply.body, bytes) else b"".join(reply.body)
        self._write_head(reply, len(body), keep_alive)
        self.transport.write(body[: len(body) // 2] if truncate else body)

    def _send_and_close(self, reply: _Reply) -> None:
        self._send(reply, keep_alive=False)
        self._close()

    def _close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


async def _create_server(app: _App) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Connection(app), app.config.host, app.config.port, backlog=4096, reuse_address=True
    )


async def _shutdown(server: asyncio.Server, app: _App) -> None:
    """Close the listening socket, abort every connection and finish pending tasks."""
    server.close()
    for conn in list(app.connections):
        conn._close(abort=True)
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)  # let connection_lost callbacks run
