"""inFlightConn: at most ``amount`` simultaneous connections per source IP (Traefik v3)."""

from __future__ import annotations

from proxy.config.dynamic import TCPInFlightConn
from proxy.tcp.middlewares import TcpMiddlewareError


class InFlightConn:
    __slots__ = ("amount", "counts", "name")

    def __init__(self, name: str, options: TCPInFlightConn) -> None:
        if options.amount < 1:
            raise TcpMiddlewareError("amount must be at least 1", "amount")
        self.name = name
        self.amount = options.amount
        self.counts: dict[str, int] = {}

    def admit(self, client_ip: str) -> bool:
        count = self.counts.get(client_ip, 0)
        if count >= self.amount:
            return False
        self.counts[client_ip] = count + 1
        return True

    def release(self, client_ip: str) -> None:
        count = self.counts.get(client_ip, 0) - 1
        if count > 0:
            self.counts[client_ip] = count
        else:
            self.counts.pop(client_ip, None)  # no entry kept per address ever seen
