"""The lean HTTP/1.1 transport used under the openai SDK for http:// servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import openai
import pytest

from alambic.llms._http import sdk_http_module
from alambic.llms.openai import OpenAILLM, sdk_http_client_kwargs

CHAT = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}


async def _serve(
    respond: Callable[[int], bytes], *, drop_after_first: bool = False
) -> tuple[asyncio.AbstractServer, str, list[int]]:
    """A raw HTTP server whose n-th request on a connection gets ``respond(n)``; with
    ``drop_after_first`` it silently closes each connection after its first reply."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        n = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
            reply = respond(n)
            n += 1
            writer.write(reply)
            await writer.drain()
            if b"Connection: close" in reply or drop_after_first:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1", connections


def _chunked(body: bytes, close: bool = False) -> bytes:
    half = len(body) // 2
    chunks = (
        f"{half:x}\r\n".encode()
        + body[:half]
        + b"\r\n"
        + f"{len(body) - half:x}\r\n".encode()
        + body[half:]
        + b"\r\n0\r\n\r\n"
    )
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
        + chunks
    )


def test_the_lean_transport_is_used_for_http_and_not_for_https() -> None:
    kwargs = sdk_http_client_kwargs(openai, 10.0, "http://127.0.0.1:1/v1")
    client = kwargs["http_client"]
    # a plain client of the SDK's HTTP library: only its transport is ours
    assert isinstance(client, sdk_http_module().AsyncClient)
    assert type(client._transport).__name__ == "LeanTransport"
    https = sdk_http_client_kwargs(openai, 10.0, "https://api.openai.com/v1")
    assert type(getattr(https.get("http_client"), "_transport", None)).__name__ != "LeanTransport"
    off = sdk_http_client_kwargs(openai, 10.0, "http://127.0.0.1:1/v1", lean=False)
    assert type(getattr(off.get("http_client"), "_transport", None)).__name__ != "LeanTransport"


@pytest.mark.parametrize("close", [False, True])
def test_chunked_replies_and_connection_close(close: bool) -> None:
    body = json.dumps(CHAT).encode()

    async def main() -> tuple[list[str | None], int]:
        server, url, connections = await _serve(lambda n: _chunked(body, close))
        llm = OpenAILLM(model="m", base_url=url, max_retries=0)
        llm.load()
        try:
            outs = [await llm.agenerate([{"role": "user", "content": "x"}]) for _ in range(3)]
        finally:
            await llm.aclose()
            server.close()
        return [o["generations"][0] for o in outs], len(connections)

    texts, connections = asyncio.run(main())
    assert texts == ["hi", "hi", "hi"]
    assert connections == (3 if close else 1)


def test_an_idle_connection_the_server_dropped_is_replaced() -> None:
    body = json.dumps(CHAT).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    async def main() -> tuple[list[str | None], int]:
        # the server answers one request per connection, then closes it without saying so
        server, url, connections = await _serve(lambda n: reply, drop_after_first=True)
        llm = OpenAILLM(model="m", base_url=url, max_retries=0)
        llm.load()
        try:
            first = await llm.agenerate([{"role": "user", "content": "a"}])
            await asyncio.sleep(0.05)
            second = await llm.agenerate([{"role": "user", "content": "b"}])
        finally:
            await llm.aclose()
            server.close()
        return [first["generations"][0], second["generations"][0]], len(connections)

    texts, connections = asyncio.run(main())
    assert texts == ["hi", "hi"]
    assert connections == 2


def test_requests_the_sdk_finished_are_not_merged_again() -> None:
    from alambic.llms._http import lean_client_class

    http = sdk_http_module()
    client = lean_client_class(http)(timeout=7.0, headers={"X-Client-Default": "1"})
    timeout = http.Timeout(3.0)
    request = client.build_request(
        "POST",
        "http://127.0.0.1:9/v1/chat/completions",
        headers=[("Authorization", "Bearer k"), ("Content-Type", "application/json")],
        content=b'{"a": 1}',
        timeout=timeout,
    )
    # the SDK's request as it made it: its headers only, its body, its timeout
    assert str(request.url) == "http://127.0.0.1:9/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k"
    assert "x-client-default" not in request.headers
    assert request.content == b'{"a": 1}'
    assert request.headers["content-length"] == "8"
    assert request.extensions["timeout"] == timeout.as_dict()
    # the SDK passes a float when the client was made with one: the same timeouts
    as_float = client.build_request(
        "POST", "http://127.0.0.1:9/v1/chat/completions", content=b"{}", timeout=3.0
    )
    assert as_float.extensions["timeout"] == timeout.as_dict()
    assert "x-client-default" not in as_float.headers
    # anything else (query parameters, relative URLs, https) takes httpx's own path
    merged = client.build_request("GET", "http://127.0.0.1:9/v1/models", params={"limit": 2})
    assert merged.url.params["limit"] == "2"
    assert merged.headers["x-client-default"] == "1"
    assert merged.extensions["timeout"] == http.Timeout(7.0).as_dict()
    secure = client.build_request("GET", "https://example.invalid/v1/models", timeout=timeout)
    assert secure.headers["x-client-default"] == "1"


def test_the_fast_request_is_the_request_the_library_would_make() -> None:
    from alambic.llms._http import lean_client_class

    http = sdk_http_module()
    client = lean_client_class(http)(timeout=7.0)
    headers = [("Authorization", "Bearer k"), ("Content-Type", "application/json")]
    for url in ("http://127.0.0.1:9/v1/chat/completions", "http://localhost/v1/x"):
        fast = client.build_request("POST", url, headers=headers, content=b"{}", timeout=3.0)
        library = http.Request("POST", url, headers=headers, content=b"{}")
        assert sorted(fast.headers.multi_items()) == sorted(library.headers.multi_items())
        assert fast.url == library.url
        assert fast.content == library.content == b"{}"
    # a request bringing its own Content-Length takes the library's path: never two of them
    own = client.build_request(
        "POST",
        "http://127.0.0.1:9/v1/x",
        headers=[("Content-Length", "2")],
        content=b"{}",
        timeout=3.0,
    )
    assert own.headers.get_list("content-length") == ["2"]


def test_every_connection_is_kept_for_reuse_at_high_concurrency() -> None:
    """With more requests in flight than the old idle cap (256), later waves reuse the
    connections already open: never more connections than requests were ever in flight."""
    body = json.dumps(CHAT).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    in_flight = 400

    async def main() -> tuple[int, int, int]:
        connections = [0]
        arrived = [0]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections[0] += 1
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                arrived[0] += 1
                await asyncio.sleep(0.3)  # so that many requests are in flight together
                writer.write(reply)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        llm = OpenAILLM(model="m", base_url=url, max_retries=0, max_concurrency=in_flight)
        llm.load()
        try:
            for _ in range(3):  # three waves; between them every connection is idle
                outs = await asyncio.gather(
                    *(llm.agenerate([{"role": "user", "content": "x"}]) for _ in range(in_flight))
                )
                assert all(o["generations"] == ["hi"] for o in outs)
        finally:
            await llm.aclose()
            server.close()
        return connections[0], arrived[0], llm.scheduler.counters.max_in_flight

    connections, requests, most_in_flight = asyncio.run(main())
    assert requests == 3 * in_flight
    assert most_in_flight > 256  # the case the old cap got wrong
    # with 256 idle connections kept, each wave reopened (most_in_flight - 256) connections
    assert connections <= most_in_flight


def _heads_of_one_chat(**llm_kwargs: object) -> tuple[str | None, list[bytes]]:
    """Send one chat request to a raw local server; the generation and the request heads
    (lower-cased) the server received."""
    body = json.dumps(CHAT).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    heads: list[bytes] = []

    async def main() -> str | None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head.lower())
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(reply)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        llm = OpenAILLM(model="m", base_url=url, **llm_kwargs)  # type: ignore[arg-type]
        llm.load()
        try:
            out = await llm.agenerate([{"role": "user", "content": "x"}])
        finally:
            await llm.aclose()
            server.close()
        return out["generations"][0]

    return asyncio.run(main()), heads


def test_the_options_given_to_the_sdk_are_the_clients_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_post_chat`` passes headers, retries and timeout explicitly (cheaper for the SDK):
    the request the server gets carries the LLM's key, timeout and no retry, and is not
    merged again by the HTTP library's ``build_request``."""
    http = sdk_http_module()
    merged: list[str] = []
    library_build = http.AsyncClient.build_request

    def counting(self: object, method: str, url: object, **kwargs: object) -> object:
        merged.append(str(url))
        return library_build(self, method, url, **kwargs)

    monkeypatch.setattr(http.AsyncClient, "build_request", counting)
    generation, heads = _heads_of_one_chat(api_key="sk-test-123", timeout=37, max_retries=0)
    assert generation == "hi"
    # the SDK's finished request skipped the library's merge (its float timeout included)
    assert merged == []
    head = heads[0]
    assert b"authorization: bearer sk-test-123" in head
    assert b"x-stainless-read-timeout: 37" in head
    assert b"x-stainless-retry-count: 0" in head


PLATFORM_HEADERS = (
    b"x-stainless-lang:",
    b"x-stainless-package-version:",
    b"x-stainless-os:",
    b"x-stainless-arch:",
    b"x-stainless-runtime:",
    b"x-stainless-runtime-version:",
    b"x-stainless-async:",
)


@pytest.mark.parametrize("lean", [True, False])
def test_a_plain_http_server_is_not_sent_the_sdks_platform_headers(lean: bool) -> None:
    """Through the lean transport the SDK's seven platform headers are left out (a local
    engine reads none of them; they cost 5-10% of the client's CPU per request); with the
    SDK's own transport, and so for https:// APIs, every one of them is sent."""
    generation, heads = _heads_of_one_chat(api_key="k", lean_http=lean)
    assert generation == "hi"
    head = heads[0]
    sent = [name for name in PLATFORM_HEADERS if name in head]
    assert sent == ([] if lean else list(PLATFORM_HEADERS))
    # what a server may use stays: the key, the content type, the agent, retries, timeout
    for kept in (b"authorization: bearer k", b"content-type: application/json", b"user-agent:"):
        assert kept in head
    assert b"x-stainless-retry-count: 0" in head
    assert b"x-stainless-read-timeout: 120" in head


def test_an_https_api_gets_every_sdk_header() -> None:
    """The decision is the base URL's: an https:// LLM sends no ``Omit`` at all."""
    llm = OpenAILLM(model="m", base_url="https://api.example.invalid/v1", api_key="k")
    client = llm.sdk().AsyncOpenAI(api_key="k", base_url="https://api.example.invalid/v1")
    assert llm._route_chat(client)[1] == {}
    local = OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="k")
    omitted = sorted(n.lower() for n in local._route_chat(client)[1])
    assert omitted == sorted(n.decode().rstrip(":") for n in PLATFORM_HEADERS)


def test_a_chat_request_passes_the_sdks_own_no_parser_sentinel() -> None:
    """``post_parser`` is given as the SDK's ``NOT_GIVEN`` (left out, the SDK deep-copies its
    default per request); a chat through the real server still returns the SDK's reply."""
    llm = OpenAILLM(model="m", base_url="https://api.example.invalid/v1", api_key="k")
    client = llm.sdk().AsyncOpenAI(api_key="k", base_url="https://api.example.invalid/v1")
    assert llm._route_chat(client)[2] is llm.sdk().NOT_GIVEN
    generation, _ = _heads_of_one_chat(api_key="k", lean_http=True)
    assert generation == "hi"


async def _reply_in_pieces(
    pieces: list[bytes], *, close: bool
) -> tuple[asyncio.AbstractServer, str]:
    """A server that reads one request and writes its reply in ``pieces`` (a few ms apart),
    then closes the connection if ``close``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.005)
        if close:
            writer.close()
        else:
            await asyncio.sleep(1)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"


def _post_through_lean_transport(pieces: list[bytes], *, close: bool) -> tuple[int, bytes] | str:
    """The status and body the lean transport reads from a reply sent in ``pieces``, or the
    text of the HTTP library's error."""
    from alambic.llms._http import lean_http_client

    http = sdk_http_module()

    async def main() -> tuple[int, bytes] | str:
        server, url = await _reply_in_pieces(pieces, close=close)
        client = lean_http_client(5.0)
        try:
            response = await client.post(url, content=b"{}")
            return response.status_code, response.content
        except http.RemoteProtocolError as exc:
            return str(exc)
        finally:
            await client.aclose()
            server.close()

    return asyncio.run(main())


def _split(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("reply", "close", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", False, (200, b"hello")),
        (  # chunks with an extension, a trailer, and the pieces cut across everything
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
            False,
            (201, b"abcdefg"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
            True,
            (200, b"until the end"),
        ),
        (b"", True, "the server closed the connection without a reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", True, "in the middle of the reply's headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", True, "in the middle of the reply"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, "not an HTTP response: b'SSH-2.0-OpenSSH_9.6'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello", False, "Content-Length b'five'"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", False, "exceed 64 KiB"),
    ],
)
def test_a_reply_arriving_in_pieces_is_read_whole_or_refused(
    reply: bytes, close: bool, expected: tuple[int, bytes] | str
) -> None:
    """Replies are parsed as their bytes arrive: any split of the status line, headers,
    chunk sizes and trailers gives the same reply; a reply cut short or not HTTP at all is
    the library's RemoteProtocolError (the request may have been read: no silent re-send)."""
    pieces = _split(reply) if len(reply) < 1_000 else [reply[:40_000], reply[40_000:]]
    got = _post_through_lean_transport(pieces, close=close)
    if isinstance(expected, str):
        assert isinstance(got, str)
        assert expected in got
    else:
        assert got == expected
