"""One HTTP/1.1 request from a middleware to another server (forwardAuth, errors).

Every header line of the answer is kept in order (several Set-Cookie lines
matter to forwardAuth), the body is bounded, and the whole exchange has a
deadline. One connection per request, closed after it: subrequests are not on
the path of requests that do not use these middlewares.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

import httptools

READ_SIZE = 64 * 1024

# Headers a subrequest never copies from the client's request, nor back from its
# answer: hop-by-hop (RFC 9110 7.6.1) and framing, which the client writes itself.
NOT_COPIED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


class SubrequestError(OSError):
    """The server could not be reached, or answered something unusable."""


@dataclass(slots=True)
class SubResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def values(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]


@dataclass(slots=True, frozen=True)
class Target:
    """A parsed http(s) URL: where to connect and what to put in the request line."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, at least "/"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_target(url: str) -> Target:
    """Raise ValueError with a message for anything but an absolute http(s) URL."""
    parts: SplitResult = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http or https URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)  # raises on a bad port
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path)


class _Collector:
    def __init__(self, limit: int) -> None:
        self.headers: list[tuple[str, str]] = []
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.done = False
        self.too_large = False
        self.head_only = False

    def on_headers_complete(self) -> None:
        if self.head_only:
            self.done = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self.size += len(body)
        if self.size > self.limit:
            self.too_large = True
            raise SubrequestError(f"response body over {self.limit} bytes")
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def send(
    target: Target,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    *,
    timeout: float,
    max_body: int,
    body: bytes = b"",
    host: str = "",
    context: ssl.SSLContext | None = None,
    address: str = "",
    fallbacks: Sequence[str] = (),
    head_only: bool = False,
) -> SubResponse:
    """Send one request to ``target`` (``path`` as the request target); the whole answer.

    ``host`` replaces the Host header (the target's authority by default).
    ``context`` is the TLS configuration for https (the system's trust store by
    default), ``address`` the resolved address to dial (the target's host by
    default; TLS still names the host), ``fallbacks`` the host's other
    addresses, dialled in turn when one refuses (as Go's dialer does), and
    ``head_only`` stops at the end of the response head (the body is neither
    read nor bounded).
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or target.authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    if target.scheme != "https":
        context = None
    elif context is None:
        context = ssl.create_default_context()
    try:
        async with asyncio.timeout(timeout):
            candidates = [address or target.host, *fallbacks]
            for index, candidate in enumerate(candidates):
                try:
                    reader, writer = await asyncio.open_connection(
                        candidate,
                        target.port,
                        ssl=context,
                        server_hostname=target.host if context else None,
                    )
                    break
                except OSError:
                    if index == len(candidates) - 1:
                        raise
            try:
                writer.write(head + body)
                collector = _Collector(max_body)
                collector.head_only = head_only
                parser = httptools.HttpResponseParser(collector)
                while not collector.done:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        if collector.headers and not parser.should_keep_alive():
                            break  # a body delimited by the close
                        raise SubrequestError("connection closed mid-response")
                    try:
                        parser.feed_data(data)
                    except httptools.HttpParserError as error:
                        if collector.too_large:
                            raise SubrequestError(f"response body over {max_body} bytes") from None
                        raise SubrequestError(f"malformed response: {error}") from None
                return SubResponse(
                    parser.get_status_code(), collector.headers, b"".join(collector.parts)
                )
            finally:
                writer.close()
    except TimeoutError:
        raise SubrequestError(f"no answer from {target.authority} within {timeout} s") from None
    except OSError as error:
        if isinstance(error, SubrequestError):
            raise
        raise SubrequestError(
            f"cannot reach {target.authority}: {error.strerror or error}"
        ) from None
