"""TCP middlewares: the shape they share and the registry the snapshot builds them from.

A TCP middleware decides once per connection, before the backend is dialled:
``admit(client_ip)`` says whether the connection may go on, and ``release``
is called when an admitted connection ends (``inFlightConn`` counts with it).
A refused connection is closed, as Traefik closes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["REGISTRY", "TcpMiddleware", "TcpMiddlewareError"]


class TcpMiddlewareError(ValueError):
    """Bad options; ``key`` is the option's camelCase name, appended to the error's path."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class TcpMiddleware(Protocol):
    name: str

    def admit(self, client_ip: str) -> bool: ...

    def release(self, client_ip: str) -> None: ...


def _registry() -> dict[str, Callable[[str, Any], TcpMiddleware]]:
    from proxy.tcp.in_flight_conn import InFlightConn
    from proxy.tcp.ip_allow_list import IPAllowList

    return {
        "ip_allow_list": IPAllowList,
        "ip_white_list": IPAllowList,  # the deprecated name Traefik v3 still reads
        "in_flight_conn": InFlightConn,
    }


REGISTRY = _registry
