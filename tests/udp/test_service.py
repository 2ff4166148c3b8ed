"""The rotation a new UDP session's server comes from."""

from __future__ import annotations

from proxy.udp.service import (
    UdpLoadBalancer,
    UdpServer,
    UdpWeighted,
    WeightedMember,
)


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
