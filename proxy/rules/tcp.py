"""TCP router rules: HostSNI, HostSNIRegexp, ClientIP, ALPN, as Traefik v3's TCP muxer.

The same parser as HTTP rules (`Parser` with another registry) and the same
compiler (`compile_node`); what differs is what a rule reads, a `ConnInfo`
(server name and ALPN protocols from the ClientHello, and the peer address),
and the table: TCP routers are few, so the table is a list in priority order,
scanned once per connection.

Priority: Traefik's TCP muxer sorts by priority, descending, where the default
(or an explicit 0) is the rule's length in bytes; ties keep the order in which
routes were given, as for HTTP.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from proxy.rules.matcher import Route, _build_client_ip, _regexp, compile_node, priority_error
from proxy.rules.parser import Matcher, MatcherDef, Node, Parser, RuleError

__all__ = [
    "TCP_MATCHERS",
    "ConnInfo",
    "TcpRouterTable",
    "build_tcp_table",
    "host_sni_values",
    "parse_tcp_rule",
    "tcp_default_priority",
]


class ConnInfo:
    """What a TCP rule reads from a connection: known once its first bytes are peeked."""

    __slots__ = ("alpn", "client_ip", "sni")

    def __init__(self, sni: str = "", alpn: tuple[str, ...] = (), client_ip: str = "") -> None:
        self.sni = sni  # lower-cased, no trailing dot; "" for non-TLS or no SNI
        self.alpn = alpn
        self.client_ip = client_ip


ConnPredicate = Callable[[ConnInfo], bool]

# Traefik's hostOrIP check for HostSNI values (letters, digits, '.', '-', ':'),
# with the leading "*." of a wildcard (v3.x) allowed.
_HOST_OR_IP = re.compile(r"^(\*\.)?[A-Za-z0-9.\-:]+$")
# ALPN may never catch an ACME TLS-ALPN-01 challenge (Traefik refuses it too).
_ACME_TLS_1 = "acme-tls/1"


def _build_host_sni(args: tuple[str, ...]) -> ConnPredicate:
    host = args[0]
    if host == "*":
        # The catch-all: also matches connections without a server name (non-TLS).
        return lambda conn: True
    if not host.isascii():
        raise ValueError(
            f"invalid value {host!r} for HostSNI matcher, non-ASCII characters are not allowed"
        )
    if not _HOST_OR_IP.match(host):
        raise ValueError(f"invalid value {host!r} for HostSNI matcher: not a hostname or IP")
    host = host.lower().rstrip(".")
    if host.startswith("*."):
        suffix = host[1:]  # ".example.com": exactly one more label in front

        def wildcard(conn: ConnInfo) -> bool:
            sni = conn.sni
            return (
                sni.endswith(suffix) and "." not in sni[: -len(suffix)] and len(sni) > len(suffix)
            )

        return wildcard
    return lambda conn: conn.sni == host


def _build_host_sni_regexp(args: tuple[str, ...]) -> ConnPredicate:
    if not args[0].isascii():
        raise ValueError(
            f"invalid value {args[0]!r} for HostSNIRegexp matcher, "
            "non-ASCII characters are not allowed"
        )
    search = _regexp(args[0])
    return lambda conn: search(conn.sni)


def _build_alpn(args: tuple[str, ...]) -> ConnPredicate:
    protocol = args[0]
    if protocol.lower() == _ACME_TLS_1:
        raise ValueError(f"invalid protocol value for ALPN matcher, {protocol!r} is not allowed")
    return lambda conn: protocol in conn.alpn


TCP_MATCHERS: dict[str, MatcherDef] = {
    "HostSNI": MatcherDef((1,), _build_host_sni),
    "HostSNIRegexp": MatcherDef((1,), _build_host_sni_regexp),
    "ClientIP": MatcherDef((1,), _build_client_ip),  # reads .client_ip, as on HTTP
    "ALPN": MatcherDef((1,), _build_alpn),
}

TCP_PARSER = Parser(TCP_MATCHERS)


@functools.lru_cache(maxsize=4096)
def parse_tcp_rule(text: str) -> Node:
    """Parse a TCP router rule; raises RuleError."""
    return TCP_PARSER.parse(text)


def tcp_default_priority(rule: str) -> int:
    """Traefik's TCP default priority: the rule's length in bytes."""
    return len(rule.encode("utf-8", "surrogateescape"))


def host_sni_values(node: Node) -> Iterable[str]:
    """Every HostSNI argument in the rule (Traefik's ParseHostSNI), negated or not."""
    if isinstance(node, Matcher):
        if node.name == "HostSNI":
            yield node.args[0]
        return
    for child in node.children:
        yield from host_sni_values(child)


@dataclass(frozen=True, slots=True)
class _Compiled:
    route: Route
    priority: int
    predicate: ConnPredicate


class TcpRouterTable:
    """Compiled TCP routes in priority order. Immutable."""

    __slots__ = ("compiled", "entries")

    def __init__(self, compiled: Sequence[_Compiled]) -> None:
        self.compiled = tuple(compiled)
        self.entries = tuple((item.predicate, item.route) for item in self.compiled)

    def __len__(self) -> int:
        return len(self.compiled)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(item.route for item in self.compiled)

    def match_route(self, conn: ConnInfo) -> Route | None:
        for predicate, route in self.entries:
            if predicate(conn):
                return route
        return None

    def match(self, conn: ConnInfo) -> object | None:
        route = self.match_route(conn)
        return None if route is None else route.payload


def build_tcp_table(routes: Sequence[Route]) -> tuple[TcpRouterTable, list[RuleError]]:
    """Compile TCP routes; a route that fails is reported with its router and left out."""
    errors: list[RuleError] = []
    compiled: list[tuple[int, int, _Compiled]] = []
    for position, route in enumerate(routes):
        try:
            predicate = compile_node(parse_tcp_rule(route.rule), TCP_MATCHERS)
        except RuleError as exc:
            errors.append(exc.with_router(route.name, route.rule))
            continue
        priority = route.priority or tcp_default_priority(route.rule)
        too_high = priority_error(route, priority)
        if too_high is not None:
            errors.append(too_high)
            continue
        compiled.append((-priority, position, _Compiled(route, priority, predicate)))
    compiled.sort(key=lambda item: (item[0], item[1]))
    return TcpRouterTable([item[2] for item in compiled]), errors
