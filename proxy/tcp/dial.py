"""Dialling a TCP backend: resolve, connect within dialTimeout, keep-alive, PROXY header."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from proxy.tcp.proxy_protocol import encode_v1, encode_v2

if TYPE_CHECKING:
    from proxy.http.resolver import Resolver
    from proxy.tcp.service import TcpServer

__all__ = ["dial", "proxy_header"]


async def dial(resolver: Resolver | None, server: TcpServer) -> socket.socket:
    """A connected non-blocking socket to ``server``; raises OSError or TimeoutError."""
    host = server.host
    addresses = await resolver.candidates(host) if resolver is not None else [host]
    timeout = server.transport.dial_timeout
    async with asyncio.timeout(timeout if timeout > 0 else None):
        for index, address in enumerate(addresses):
            try:
                return await _connect(address, server)
            except OSError:
                # The next address of the name, as Go's dialer does.
                if index == len(addresses) - 1:
                    raise
    raise OSError(f"no address for {host!r}")  # unreachable: candidates is never empty


async def _connect(address: str, server: TcpServer) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keep_alive = server.transport.keep_alive
        if keep_alive > 0:
            # Go's dialer KeepAlive: probes start after, and repeat every, keep_alive seconds.
            seconds = max(1, int(keep_alive))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, seconds)
        await asyncio.get_running_loop().sock_connect(sock, (address, server.port))
    except BaseException:
        sock.close()
        raise
    return sock


def proxy_header(
    version: int, client: tuple[str, int] | None, transport: asyncio.BaseTransport
) -> bytes:
    """The PROXY protocol header naming the client and the address it connected to."""
    local = transport.get_extra_info("sockname")
    destination = (local[0].split("%", 1)[0], local[1]) if local else None
    if version == 1:
        return encode_v1(client, destination)
    return encode_v2(client, destination)
