"""Which "source" a request counts against: Traefik's sourceCriterion and ipStrategy.

Shared by rateLimit and inFlightReq. Traefik's precedence: ``ipStrategy`` when
set, else ``requestHeaderName``, else ``requestHost``; none of them means the
client's address. The X-Forwarded-For read by ``ipStrategy`` is the one left
after the entry point's forwardedHeaders filter, as in Traefik: from an
untrusted client it is absent, so a depth strategy yields "" (one shared source).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config.dynamic import IPStrategy, SourceCriterion
from proxy.middlewares.base import BuildError

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

SourceFunc = Callable[["Exchange"], str]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(ex: Exchange) -> str:
    return ex.client_ip


def _first_xff(ex: Exchange) -> str:
    # Go's Header.Get: the first X-Forwarded-For line only.
    values = ex.header("x-forwarded-for")
    return values[0] if values else ""


def depth_strategy(depth: int) -> SourceFunc:
    """The address ``depth`` entries from the right of X-Forwarded-For ("" if too short)."""

    def source(ex: Exchange) -> str:
        parts = _first_xff(ex).split(",")
        if len(parts) < depth:
            return ""
        return parts[len(parts) - depth].strip()

    return source


def parse_networks(entries: list[str], key: str) -> tuple[Network, ...]:
    """IPs and CIDR ranges; a bad one is a BuildError naming ``key[index]``."""
    networks: list[Network] = []
    for index, entry in enumerate(entries):
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise BuildError(f"invalid IP or CIDR {entry!r}", f"{key}[{index}]") from None
    return tuple(networks)


def contains(networks: tuple[Network, ...], address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def pool_strategy(excluded: tuple[Network, ...]) -> SourceFunc:
    """The right-most X-Forwarded-For address that is not excluded ("" if none)."""

    def source(ex: Exchange) -> str:
        for part in reversed(_first_xff(ex).split(",")):
            address = part.strip()
            if address and not contains(excluded, address):
                return address
        return ""

    return source


def ip_strategy(strategy: IPStrategy | None, key: str) -> SourceFunc:
    """Traefik's IPStrategy.Get: depth wins over excludedIPs; neither is the remote address."""
    if strategy is None:
        return client_ip
    if strategy.depth < 0:
        raise BuildError("depth must not be negative", f"{key}.depth")
    if strategy.depth > 0:
        return depth_strategy(strategy.depth)
    if strategy.excluded_ips:
        return pool_strategy(parse_networks(strategy.excluded_ips, f"{key}.excludedIPs"))
    return client_ip


def source_extractor(criterion: SourceCriterion | None, key: str = "sourceCriterion") -> SourceFunc:
    """The function giving a request's source key, as Traefik's GetSourceExtractor."""
    if criterion is None or (
        criterion.ip_strategy is None
        and not criterion.request_header_name
        and not criterion.request_host
    ):
        return client_ip
    if criterion.ip_strategy is not None:
        return ip_strategy(criterion.ip_strategy, f"{key}.ipStrategy")
    if criterion.request_header_name:
        name = criterion.request_header_name.lower()

        def by_header(ex: Exchange) -> str:
            values = ex.header(name)
            return values[0] if values else ""

        return by_header

    def by_host(ex: Exchange) -> str:
        # Go's req.Host: the Host header as sent, port included.
        raw = ex.host_header
        return raw.decode("latin-1") if raw is not None else ""

    return by_host
