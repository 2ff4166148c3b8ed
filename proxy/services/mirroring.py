"""The mirroring service: the main service answers, mirrors get copies of requests.

As in Traefik v3: ``mirrors[].percent`` of the requests (counted exactly, not
drawn at random: after N requests a 10 % mirror has had N/10 of them) are
copied to each mirror; the mirrors' answers are read up to the end of their
head and dropped. ``mirrorBody = false`` sends the copies without the body;
``maxBodySize`` bounds the body copied (a larger request is not mirrored).

Unlike Traefik, the main request never waits for its body to be copied: it is
forwarded as it streams, and the bytes are kept on the side
(``Exchange.keep_body``) until the body is complete, when the copies are
sent. Each copy is one request on its own connection to a server the mirror
service picks; at most ``MAX_IN_FLIGHT`` copies per mirroring service are in
flight, past that a copy is dropped, so a slow mirror costs the main traffic
nothing but the copy of the bytes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from proxy.http.exchange import forward_head

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.http.exchange import Exchange
    from proxy.services.base import HttpService
    from proxy.services.loadbalancer import LoadBalancer, Server

log = logging.getLogger("turnout.mirroring")

# A mirror's answer must start within this long, or the copy is abandoned.
MIRROR_TIMEOUT = 30.0
MAX_IN_FLIGHT = 256
# maxBodySize -1 (Traefik's default, no limit) still keeps at most this much.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
_HEAD_END = b"\r\n\r\n"
_READ_LIMIT = 64 * 1024


class Mirroring:
    __slots__ = (
        "counts",
        "health",
        "key",
        "main",
        "max_body",
        "mirror_body",
        "mirrors",
        "name",
        "tasks",
        "total",
    )

    def __init__(
        self,
        name: str,
        main: HttpService,
        mirrors: list[tuple[HttpService, int]],
        *,
        mirror_body: bool,
        max_body: int,
        health: bool,
        key: bytes,
    ) -> None:
        self.name = name
        self.main = main
        self.mirrors = tuple(mirrors)
        self.counts = [0] * len(mirrors)
        self.total = 0
        self.mirror_body = mirror_body
        self.max_body = max_body if max_body >= 0 else DEFAULT_MAX_BODY
        self.health = health
        self.key = key
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        return self.main.available

    def pick_server(self) -> tuple[LoadBalancer, Server] | None:
        return self.main.pick_server()

    def balancers(self) -> Iterator[LoadBalancer]:
        yield from self.main.balancers()

    def active(self) -> list[HttpService]:
        """The mirrors that get this request: Traefik's exact percent counting."""
        self.total += 1
        total = self.total
        chosen = []
        for index, (mirror, percent) in enumerate(self.mirrors):
            if self.counts[index] * 100 < total * percent:
                self.counts[index] += 1
                chosen.append(mirror)
        return chosen

    def serve(self, exchange: Exchange) -> None:
        if self.mirrors and exchange.upgrade is None:
            mirrors = self.active()
            if mirrors:
                self._copy(exchange, mirrors)
        self.main.serve(exchange)

    def _copy(self, exchange: Exchange, mirrors: list[HttpService]) -> None:
        has_body = exchange.chunked or bool(exchange.content_length)
        if not has_body or not self.mirror_body:
            self._send(exchange, mirrors, None)
            return
        if exchange.replay is None:
            # Before the main service takes the bytes that arrived so far.
            exchange.keep_body(self.max_body)
        if exchange.request_done:
            self._body_complete(exchange, mirrors)
        else:
            exchange.body_waiter = lambda ex: self._body_complete(ex, mirrors)

    def _body_complete(self, exchange: Exchange, mirrors: list[HttpService]) -> None:
        kept = exchange.replay
        body = b"".join(kept) if kept is not None else None
        if body is None or len(body) > self.max_body:
            log.debug("%s: request body over %d bytes, not mirrored", self.name, self.max_body)
            return
        self._send(exchange, mirrors, body)

    def _send(self, exchange: Exchange, mirrors: list[HttpService], body: bytes | None) -> None:
        for mirror in mirrors:
            if len(self.tasks) >= MAX_IN_FLIGHT:
                log.debug("%s: %d copies in flight, one dropped", self.name, MAX_IN_FLIGHT)
                return
            picked = mirror.pick_server()
            if picked is None:
                continue  # the mirror has no available server: its copy is dropped
            balancer, server = picked
            head = forward_head(exchange, server.host_header, balancer.pass_host_header)
            if body is None:
                head = _without_body(head, exchange)
                data = head
            else:
                data = head + body
            task = asyncio.ensure_future(_fire(server, data))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


def _without_body(head: bytes, exchange: Exchange) -> bytes:
    """The head with Turnout's own framing line replaced by ``Content-Length: 0``."""
    if exchange.chunked:
        framing = b"\r\nTransfer-Encoding: chunked\r\n"
    elif exchange.content_length is not None:
        framing = b"\r\nContent-Length: %d\r\n" % exchange.content_length
    else:
        return head
    return head.replace(framing, b"\r\nContent-Length: 0\r\n", 1)


async def _fire(server: Server, data: bytes) -> None:
    """Send one copy; read the answer's head and drop it."""
    pool = server.pool
    assert pool is not None  # a snapshot that serves has pools
    writer = None
    try:
        async with asyncio.timeout(MIRROR_TIMEOUT):
            addresses = await pool.resolver.candidates(pool.host)
            for index, address in enumerate(addresses):
                try:
                    reader, writer = await asyncio.open_connection(
                        address, pool.port, ssl=pool.ssl, server_hostname=pool.server_hostname
                    )
                    break
                except OSError:
                    if index == len(addresses) - 1:  # else the name's next address
                        raise
            writer.write(data)
            seen = b""
            while _HEAD_END not in seen and len(seen) < _READ_LIMIT:
                chunk = await reader.read(_READ_LIMIT)
                if not chunk:
                    break
                seen += chunk
    except (OSError, TimeoutError) as error:
        log.debug("mirror %s: %s", server.url, error or "timed out")
    finally:
        if writer is not None:
            writer.close()
