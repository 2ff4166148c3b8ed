"""ipAllowList (and its deprecated name ipWhiteList): admit only listed client addresses.

As Traefik's ipallowlist: the client address comes from ``ipStrategy`` (none:
the peer address; ``depth``: that many entries from the right of the first
X-Forwarded-For line; ``excludedIPs``: the right-most X-Forwarded-For entry not
in the list; depth wins). X-Forwarded-For is the one the entry point kept: from
a client outside ``forwardedHeaders.trustedIPs`` it was dropped, so a depth or
excludedIPs strategy then finds no address and the request is refused. The
refusal is ``rejectStatusCode`` (default 403) with the status text as body.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy.config.dynamic import IPAllowList, IPStrategy, IPWhiteList
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Strategy = Callable[["Exchange"], str]


def parse_address(text: str) -> Address | None:
    """An IP as Go's net.ParseIP reads it; an IPv4-mapped IPv6 address is its IPv4."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def parse_ranges(entries: list[str], key: str) -> tuple[Network, ...]:
    """IPs and CIDRs (Go's ip.NewChecker); a bad entry is a BuildError naming key[index]."""
    if not entries:
        raise BuildError("no IPs or ranges given", key)
    networks: list[Network] = []
    for index, entry in enumerate(entries):
        address = parse_address(entry)
        try:
            network = (
                ipaddress.ip_network(address)
                if address is not None
                else ipaddress.ip_network(entry, strict=False)
            )
        except ValueError:
            raise BuildError(f"invalid IP or CIDR {entry!r}", f"{key}[{index}]") from None
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
            mapped = network.network_address.ipv4_mapped
            if mapped is not None:  # ::ffff:a.b.c.d/n is an IPv4 range
                network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


def contains(networks: tuple[Network, ...], text: str) -> bool:
    address = parse_address(text.strip())
    if address is None:
        return False
    return any(address in network for network in networks)


def _first_forwarded_for(ex: Exchange) -> str:
    values = ex.header("x-forwarded-for")  # Go's Header.Get: the first line only
    return values[0] if values else ""


def _ipv6_subnet(address: str, bits: int | None) -> str:
    if bits is None:
        return address
    parsed = parse_address(address)
    if not isinstance(parsed, ipaddress.IPv6Address):
        return address
    return str(ipaddress.ip_network(f"{parsed}/{bits}", strict=False).network_address)


def ip_strategy(config: IPStrategy | None, key: str = "ipStrategy") -> Strategy:
    """Traefik's IPStrategy.Get."""
    if config is None:
        return lambda ex: ex.client_ip
    if config.depth < 0:
        raise BuildError("depth must not be negative", f"{key}.depth")
    subnet = config.ipv6_subnet
    if subnet is not None and not 0 <= subnet <= 128:
        raise BuildError("ipv6Subnet must be between 0 and 128", f"{key}.ipv6Subnet")
    if config.depth > 0:
        depth = config.depth

        def by_depth(ex: Exchange) -> str:
            entries = _first_forwarded_for(ex).split(",")
            if len(entries) < depth:
                return ""
            return _ipv6_subnet(entries[len(entries) - depth].strip(), subnet)

        return by_depth
    if config.excluded_ips:
        excluded = parse_ranges(config.excluded_ips, f"{key}.excludedIPs")

        def by_exclusion(ex: Exchange) -> str:
            for entry in reversed(_first_forwarded_for(ex).split(",")):
                entry = entry.strip()
                if entry and not contains(excluded, entry):
                    return entry
            return ""

        return by_exclusion
    return lambda ex: _ipv6_subnet(ex.client_ip, subnet)


class IPAllowListHandler(Handler):
    __slots__ = ("networks", "reject", "strategy")

    def __init__(
        self, name: str, networks: tuple[Network, ...], strategy: Strategy, status: int
    ) -> None:
        super().__init__(name)
        self.networks = networks
        self.strategy = strategy
        self.reject = (status, HTTPStatus(status).phrase.encode())

    def on_request(self, ex: Exchange) -> Answer | None:
        if contains(self.networks, self.strategy(ex)):
            return None
        status, body = self.reject
        return Answer(status, [(b"Content-Type", b"text/plain; charset=utf-8")], body)


@register("ip_allow_list")
def build(name: str, config: IPAllowList, context: BuildContext) -> Handler:
    status = config.reject_status_code or 403
    try:
        HTTPStatus(status)
    except ValueError:
        raise BuildError(f"invalid HTTP status code {status}", "rejectStatusCode") from None
    if not 200 <= status <= 599:
        raise BuildError(f"invalid HTTP status code {status}", "rejectStatusCode")
    networks = parse_ranges(config.source_range, "sourceRange")
    return IPAllowListHandler(name, networks, ip_strategy(config.ip_strategy), status)


@register("ip_white_list")
def build_white_list(name: str, config: IPWhiteList, context: BuildContext) -> Handler:
    networks = parse_ranges(config.source_range, "sourceRange")
    return IPAllowListHandler(name, networks, ip_strategy(config.ip_strategy), 403)
