"""``whoami@internal``: a built-in service that answers with the request it received.

It is what the embedded default configuration routes to, so a fresh
``make run`` answers ``curl localhost:8000/anything`` with no backend to start.
The output follows traefik/whoami's text format.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from proxy.api.response import TEXT, send
from proxy.runtime.internal import InternalService

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

_HOSTNAME = socket.gethostname()


def whoami(exchange: Exchange) -> None:
    conn = exchange.conn
    lines = [
        f"Hostname: {_HOSTNAME}",
        f"IP: {exchange.client_ip}",
        f"RemoteAddr: {conn.remote_address}",
        f"{exchange.method} {exchange.target.decode('latin-1')} HTTP/{exchange.version}",
    ]
    if exchange.host_header is not None:
        lines.append(f"Host: {exchange.host_header.decode('latin-1')}")
    for lname, name, value in exchange.fields:
        if lname != b"host":
            lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
    body = ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
    send(exchange, 200, body, TEXT)


WHOAMI = InternalService("whoami@internal", whoami)
