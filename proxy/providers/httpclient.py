"""A small asyncio HTTP/1.1 client for providers: one request per connection, or a stream.

The etcd, http and Consul providers need three things: a GET or POST with a
bounded body and a deadline, conditional requests (ETag / 304, Consul's
``X-Consul-Index``), and one long streaming response (etcd's watch). This is
that and nothing more, on asyncio streams with httptools (already the
engine's parser) for the response, so no HTTP library is added and nothing of
it is on the request path.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

READ_SIZE = 64 * 1024


class HttpClientError(OSError):
    """Connecting, sending or reading failed, or the response was malformed or too large."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; last value wins
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Parser:
    """httptools callbacks collecting one response; body chunks go to a queue when streaming."""

    def __init__(self, queue: asyncio.Queue[bytes | None] | None, limit: int | None) -> None:
        self.response = HttpResponse(0)
        self.queue = queue
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.error: HttpClientError | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.limit is not None and self.size > self.limit:
            self.error = HttpClientError(f"response body over {self.limit} bytes")
            raise self.error
        if self.queue is not None:
            self.queue.put_nowait(body)
        else:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def _target(url: str) -> tuple[str, str, int, str, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HttpClientError(f"URL scheme must be http or https: {url!r}")
    if not parts.hostname:
        raise HttpClientError(f"URL has no host: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    auth = None
    if parts.username is not None:
        auth = f"{parts.username}:{parts.password or ''}"
    return parts.scheme, parts.hostname, port, path, auth


def _head(
    method: str, host: str, port: int, path: str, headers: Mapping[str, str], body: bytes, auth
) -> bytes:
    host_header = f"[{host}]" if ":" in host else host
    if port not in (80, 443):
        host_header += f":{port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", "User-Agent: turnout"]
    names = {name.lower() for name in headers}
    if auth is not None and "authorization" not in names:
        lines.append("Authorization: Basic " + base64.b64encode(auth.encode()).decode())
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _open(
    url: str, ssl_context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, int, str, str | None]:
    scheme, host, port, path, auth = _target(url)
    context = ssl_context if scheme == "https" else None
    if scheme == "https" and context is None:
        context = ssl.create_default_context()
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
    except OSError as error:
        raise HttpClientError(
            f"cannot connect to {host}:{port}: {error.strerror or error}"
        ) from None
    return reader, writer, host, port, path, auth


async def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_body: int | None = None,
) -> HttpResponse:
    """One request, the whole response; raises HttpClientError or TimeoutError."""
    async with asyncio.timeout(timeout if timeout > 0 else None):
        reader, writer, host, port, path, auth = await _open(url, ssl_context)
        try:
            writer.write(_head(method, host, port, path, headers or {}, body, auth) + body)
            parser = _Parser(None, max_body)
            machine = httptools.HttpResponseParser(parser)
            while not parser.done:
                data = await reader.read(READ_SIZE)
                if not data:
                    if parser.headers_done and not machine.should_keep_alive():
                        break  # body delimited by the close
                    raise HttpClientError(f"{host}:{port} closed the connection mid-response")
                try:
                    machine.feed_data(data)
                except httptools.HttpParserError as error:
                    if parser.error is not None:
                        raise parser.error from None
                    raise HttpClientError(
                        f"malformed response from {host}:{port}: {error}"
                    ) from None
            parser.response.status = machine.get_status_code()
            parser.response.body = b"".join(parser.parts)
            return parser.response
        finally:
            writer.close()


async def stream(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    connect_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[HttpResponse | bytes]:
    """A long response: yields the ``HttpResponse`` (head) first, then body chunks as they come.

    Ends when the server ends the response or closes; raises HttpClientError
    on a broken connection.
    """
    async with asyncio.timeout(connect_timeout):
        reader, writer, host, port, path, auth = await _open(url, ssl_context)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    parser = _Parser(queue, None)
    machine = httptools.HttpResponseParser(parser)
    head_sent = False
    try:
        writer.write(_head(method, host, port, path, headers or {}, body, auth) + body)
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                if parser.done or (parser.headers_done and not machine.should_keep_alive()):
                    break
                raise HttpClientError(f"{host}:{port} closed the connection mid-response")
            try:
                machine.feed_data(data)
            except httptools.HttpParserError as error:
                raise HttpClientError(f"malformed response from {host}:{port}: {error}") from None
            if parser.headers_done and not head_sent:
                head_sent = True
                parser.response.status = machine.get_status_code()
                yield parser.response
            while not queue.empty():
                chunk = queue.get_nowait()
                if chunk:
                    yield chunk
            if parser.done:
                break
    finally:
        writer.close()
