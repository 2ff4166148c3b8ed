"""ipAllowList (and its deprecated name ipWhiteList): only connections from ``sourceRange``.

The ranges are the ClientIP matcher's (an address or a CIDR, IPv4-mapped IPv6
compared as IPv4), so one parser serves both.
"""

from __future__ import annotations

from proxy.config.dynamic import TCPIPAllowList
from proxy.rules.matcher import _build_client_ip
from proxy.rules.tcp import ConnInfo
from proxy.tcp.middlewares import TcpMiddlewareError


class IPAllowList:
    __slots__ = ("checks", "name", "probe")

    def __init__(self, name: str, options: TCPIPAllowList) -> None:
        if not options.source_range:
            raise TcpMiddlewareError("sourceRange is empty", "sourceRange")
        checks = []
        for index, spec in enumerate(options.source_range):
            try:
                checks.append(_build_client_ip((spec.strip(),)))
            except ValueError as error:
                raise TcpMiddlewareError(str(error), f"sourceRange[{index}]") from None
        self.name = name
        self.checks = tuple(checks)
        self.probe = ConnInfo()

    def admit(self, client_ip: str) -> bool:
        probe = self.probe
        probe.client_ip = client_ip
        return any(check(probe) for check in self.checks)  # type: ignore[arg-type]

    def release(self, client_ip: str) -> None:
        pass
