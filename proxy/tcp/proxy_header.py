"""The first stage of a connection on an entry point with ``proxyProtocol``.

A load balancer in front (HAProxy ``send-proxy``, an NLB...) opens each
connection with a PROXY header naming the client. :class:`ProxyHeaderReader`
reads it, then hands the transport, the client's address and the bytes that
followed the header to the entry point's protocol (HTTP today; the TCP front
when TCP routers exist), which from then on sees the client as if it had
connected directly: rules (ClientIP), ipAllowList, rateLimit, X-Forwarded-For
and logs all use that address.

Traefik's semantics (pkg/server/server_entrypoint_tcp.go with go-proxyproto),
followed here:

- from a peer in ``trustedIPs`` (or any peer with ``insecure``) the header is
  optional: with one, its source address is the client's (LOCAL and UNKNOWN
  headers keep the socket's peer); without one, the connection goes on as is;
- from any other peer a header is read and thrown away ("IGNORE": the
  connection goes on with the socket's peer, never with the address the
  untrusted sender claims), and one without a header goes on as is;
- a malformed header closes the connection;
- the wait for the header is bounded by the entry point's
  ``respondingTimeouts.readTimeout`` (Traefik's ReadHeaderTimeout); a
  connection still silent by then goes on without a header, as go-proxyproto
  treats its timeout.

Entry points without ``proxyProtocol`` never create this stage: their
connections start with the protocol directly, at no cost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Protocol

from proxy.tcp.proxy_protocol import HeaderParser, ProxyHeader, ProxyProtocolError

if TYPE_CHECKING:
    from proxy.runtime.entrypoint import EntryPoint

log = logging.getLogger("turnout")

Peer = tuple[str, int]


class Acceptor(Protocol):
    """What an entry point's protocol offers to be started on an accepted transport."""

    def accept(self, transport: asyncio.BaseTransport, peer: Peer | None) -> None: ...

    def data_received(self, data: bytes) -> None: ...


class TrustedPeers:
    """``proxyProtocol.trustedIPs`` (IPs or CIDR ranges), or everyone with ``insecure``.

    The answer per address is cached: a load balancer in front connects from
    the same few addresses over and over.
    """

    __slots__ = ("_cache", "insecure", "networks")

    def __init__(self, insecure: bool, trusted_ips: list[str]) -> None:
        self.insecure = insecure
        # Raises ValueError on an entry that is neither an IP nor a CIDR range.
        self.networks = [ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted_ips]
        self._cache: dict[str, bool] = {}

    def __contains__(self, ip: str) -> bool:
        if self.insecure:
            return True
        cached = self._cache.get(ip)
        if cached is None:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                cached = False
            else:
                mapped = getattr(address, "ipv4_mapped", None)
                cached = any(
                    address in network or (mapped is not None and mapped in network)
                    for network in self.networks
                )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[ip] = cached
        return cached


class ProxyHeaderReader(asyncio.Protocol):
    """Reads the optional PROXY header, then starts the entry point's protocol."""

    __slots__ = ("deadline", "entrypoint", "parser", "peer", "transport", "trusted")

    def __init__(self, entrypoint: EntryPoint) -> None:
        self.entrypoint = entrypoint
        self.transport: asyncio.Transport | None = None
        self.parser = HeaderParser()
        self.peer: Peer | None = None
        self.trusted = False
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        entrypoint = self.entrypoint
        limit = entrypoint.max_connections
        if limit and len(entrypoint.connections) >= limit:
            transport.abort()  # type: ignore[attr-defined]  # as HttpConnection does when full
            return
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            ip = peer[0].split("%", 1)[0]
            self.peer = (ip, peer[1])
            trusted = entrypoint.proxy_protocol
            self.trusted = trusted is not None and ip in trusted
        entrypoint.connections.add(self)  # swept and shut down alike
        timeout = entrypoint.read_timeout
        self.deadline = entrypoint.clock.time() + timeout if timeout > 0 else 0.0

    def data_received(self, data: bytes) -> None:
        try:
            header = self.parser.feed(data)
        except ProxyProtocolError as error:
            log.debug("entryPoint %s: %s from %s: closing", self.entrypoint.name, error, self.peer)
            self._end()
            return
        if header is None:
            return
        peer = self.peer
        if isinstance(header, ProxyHeader):
            if not self.trusted:
                log.debug(
                    "entryPoint %s: %s is not in proxyProtocol.trustedIPs: its PROXY header "
                    "is ignored",
                    self.entrypoint.name,
                    peer[0] if peer else "?",
                )
            elif header.source is not None:
                peer = header.source
        self._hand_over(peer, self.parser.rest)

    def eof_received(self) -> bool | None:
        # Closed before the header was complete (or before a byte came): nothing to serve.
        self._end()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.entrypoint.connections.discard(self)

    def _hand_over(self, peer: Peer | None, rest: bytes) -> None:
        transport = self.transport
        self.entrypoint.connections.discard(self)
        self.transport = None
        if transport is None:
            return
        protocol = self.entrypoint.protocol()
        transport.set_protocol(protocol)
        protocol.accept(transport, peer)
        if rest and not transport.is_closing():
            protocol.data_received(rest)

    def _end(self) -> None:
        self.entrypoint.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    # -- what the entry point asks of every connection -------------------------

    def check_deadline(self, now: float) -> None:
        if self.deadline and self.deadline <= now:
            # go-proxyproto: a header not read in time means "no header"; what
            # did arrive goes to the protocol, which applies its own limits.
            self._hand_over(self.peer, self.parser.pending)

    def shutdown(self) -> None:
        self._end()  # no request has started on it yet

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
