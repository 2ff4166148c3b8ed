"""Issue 3: a backend that answers `Expect: 100-continue` with a final status before the
body arrives never gets that connection reused: the body the client may still send
would otherwise be read as the next request."""

from __future__ import annotations

import asyncio

from tests.integration.harness import ResponseReader, connect, dynamic_for, get, wait_until


def test_final_answer_before_the_body_retires_the_backend_connection(backend, turnout):
    seen: list[bytes] = []

    async def refuse_then_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        if b"expect: 100-continue" in head.lower():
            # Refuse without reading the body, keep the connection open.
            writer.write(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await reader.read()  # until Turnout closes it
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    server = backend(raw=refuse_then_serve)
    proxy = turnout(dynamic_for(server.url))
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n"
        )
        answer = ResponseReader(sock).read()
        assert answer.status == 417
        # The client sends its body anyway; it must never reach a backend as a request.
        sock.sendall(b"GET /x HT")
    # The refused exchange's backend connection was closed, not pooled: the next
    # request opens a new one and is served normally.
    assert wait_until(lambda: server.open_connections == 0, 3), server.open_connections
    response = get(proxy.port, "/after")
    assert response.status == 200 and response.body == b"ok"
    assert server.connections == 2
    assert [h.split(b" ", 2)[1] for h in seen] == [b"/upload", b"/after"]
