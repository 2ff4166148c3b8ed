"""UDP services: which server a new session's datagrams go to.

Traefik v3's UDP servers carry no weight (``udp.services.N.loadBalancer.servers``
take turns), and weights come from ``weighted`` services, whose members may
be load balancers or other weighted services. Both rotate with smooth weighted
round-robin, shared with HTTP and TCP services. A choice is made once per
session (per client address), never per datagram.
"""

from __future__ import annotations

import socket

from proxy.services.loadbalancer import SmoothRotation


class UdpServer:
    __slots__ = ("address", "family", "host", "port", "weight")

    def __init__(self, address: str, host: str, port: int) -> None:
        self.address = address  # as configured, for logs
        self.host = host
        self.port = port
        self.weight = 1
        # An IP address is known at build time; a host name (family None) is
        # resolved when a session opens.
        self.family: int | None = None
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
            except OSError:
                continue
            self.family = family
            break


class UdpLoadBalancer:
    # The rotation is held, not inherited: SmoothRotation is compiled (proxy/native.py).
    __slots__ = ("name", "rotation")

    def __init__(self, name: str, servers: list[UdpServer]) -> None:
        self.name = name
        self.rotation = SmoothRotation(servers)

    def next_server(self) -> UdpServer | None:
        return self.rotation.pick()  # type: ignore[no-any-return]


class WeightedMember:
    __slots__ = ("service", "weight")

    def __init__(self, service: UdpService, weight: int) -> None:
        self.service = service
        self.weight = weight


class UdpWeighted:
    __slots__ = ("name", "rotation")

    def __init__(self, name: str, members: list[WeightedMember]) -> None:
        self.name = name
        self.rotation = SmoothRotation(members)

    def next_server(self) -> UdpServer | None:
        member = self.rotation.pick()
        return None if member is None else member.service.next_server()


UdpService = UdpLoadBalancer | UdpWeighted
