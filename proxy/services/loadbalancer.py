"""The loadBalancer service: smooth weighted round-robin over a list of servers.

Smooth WRR (the algorithm of nginx and of Traefik's wrr strategy) spreads a
server's turns evenly instead of in bursts: weights 5:1:1 give
a a b a c a a, not a a a a a b c.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http.errors import ServiceUnavailable
from proxy.http.exchange import forward_head

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.http.upstream import ServerPool


class Server:
    __slots__ = ("host_header", "pool", "url", "weight")

    def __init__(self, url: str, pool: ServerPool, host_header: bytes, weight: int) -> None:
        self.url = url
        self.pool = pool
        self.host_header = host_header  # Host sent when passHostHeader is false or Host is absent
        self.weight = weight


class LoadBalancer:
    __slots__ = ("_current", "_next", "_total", "_uniform", "name", "pass_host_header", "servers")

    def __init__(self, name: str, servers: list[Server], pass_host_header: bool) -> None:
        self.name = name
        # Weight 0 takes a server out of rotation, as in Traefik.
        self.servers = [server for server in servers if server.weight > 0]
        self.pass_host_header = pass_host_header
        self._current = [0] * len(self.servers)
        self._total = sum(server.weight for server in self.servers)
        self._uniform = len({server.weight for server in self.servers}) <= 1
        self._next = 0

    def pick(self) -> Server | None:
        servers = self.servers
        if not servers:
            return None
        if self._uniform:
            # Equal weights: smooth WRR degenerates to plain rotation; skip the arithmetic.
            index = self._next
            self._next = (index + 1) % len(servers)
            return servers[index]
        current = self._current
        best = 0
        best_value = None
        for index, server in enumerate(servers):
            current[index] += server.weight
            if best_value is None or current[index] > best_value:
                best, best_value = index, current[index]
        current[best] -= self._total
        return servers[best]

    def serve(self, exchange: Exchange) -> None:
        server = self.pick()
        if server is None:
            exchange.conn.exchange_failed(exchange, ServiceUnavailable("no available server"))
            return
        head = forward_head(exchange, server.host_header, self.pass_host_header)
        exchange.forward(server.pool, head)
