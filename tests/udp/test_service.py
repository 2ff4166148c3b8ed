"""UDP server addresses and the rotation a new session's server comes from."""

from __future__ import annotations

import pytest

from proxy.udp.service import (
    UdpLoadBalancer,
    UdpServer,
    UdpWeighted,
    WeightedMember,
    parse_server_address,
)


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:53", ("127.0.0.1", 53)),
        ("dns.internal:5353", ("dns.internal", 5353)),
        ("[::1]:53", ("::1", 53)),
        (" [2001:db8::5]:65535 ", ("2001:db8::5", 65535)),
    ],
)
def test_addresses(address: str, parsed: tuple[str, int]) -> None:
    assert parse_server_address(address) == parsed


@pytest.mark.parametrize(
    "address", ["", "127.0.0.1", ":53", "::1:53", "[::1]53", "h:65536", "h:0", "h:x", "h:-1"]
)
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="invalid address"):
        parse_server_address(address)


def servers(*ports: int) -> UdpLoadBalancer:
    return UdpLoadBalancer("lb", [UdpServer(f"h:{p}", "h", p) for p in ports])


def test_servers_take_turns_and_weights_are_smooth() -> None:
    lb = servers(1, 2, 3)
    assert [lb.next_server().port for _ in range(6)] == [1, 2, 3, 1, 2, 3]  # type: ignore[union-attr]
    weighted = UdpWeighted("w", [WeightedMember(servers(1), 5), WeightedMember(servers(2), 1)])
    picks = [weighted.next_server().port for _ in range(12)]  # type: ignore[union-attr]
    assert picks.count(1) == 10 and picks.count(2) == 2
    assert picks[:6].count(2) == 1  # spread out, not bunched


def test_empty_services_have_no_server() -> None:
    assert servers().next_server() is None
    assert UdpWeighted("w", [WeightedMember(servers(1), 0)]).next_server() is None
    assert UdpWeighted("w", [WeightedMember(servers(), 1)]).next_server() is None
