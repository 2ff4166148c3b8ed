"""Backend host name resolution: aiodns (c-ares) with a cache that honours TTLs.

Resolution happens only when a new upstream connection is dialled, never per
request on a pooled connection, so the cache exists to keep dial bursts (an
autoscaled fleet reconnecting at once) from turning into DNS bursts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import aiodns

# c-ares reports TTL 0 for /etc/hosts entries; a floor keeps those from being
# looked up on every dial while still following changes within seconds.
MIN_TTL = 5.0
MAX_TTL = 300.0


class ResolveError(OSError):
    pass


class Resolver:
    def __init__(self) -> None:
        # Created now, not at the first lookup: c-ares opens what it keeps (an
        # inotify watch on resolv.conf, its event machinery) once, at start-up,
        # so the descriptors a running Turnout holds do not grow with traffic.
        self._resolver: aiodns.DNSResolver | None = aiodns.DNSResolver()
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._inflight: dict[str, asyncio.Future[list[str]]] = {}
        self._rotation: dict[str, int] = {}

    async def resolve(self, host: str) -> str:
        """One address for host, rotating over the records of a multi-address name."""
        return (await self.candidates(host))[0]

    async def candidates(self, host: str) -> list[str]:
        """Every address of host, in the order to try them when dialling.

        The first one rotates over the records of a multi-address name (so new
        connections spread over them); the others follow as fallbacks, as Go's
        dialer tries each address in turn: ``localhost`` resolves to ::1 and
        127.0.0.1, and a backend that listens on only one of them must not fail
        every other dial.
        """
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached is not None and cached[0] > now:
            addresses = cached[1]
        else:
            addresses = await self._lookup(host)
        index = self._rotation.get(host, 0)
        self._rotation[host] = index + 1
        start = index % len(addresses)
        return addresses[start:] + addresses[:start]

    async def _lookup(self, host: str) -> list[str]:
        # Concurrent dials to the same name share one query.
        pending = self._inflight.get(host)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._inflight[host] = future
        try:
            addresses, ttl = await self._query(host)
            self._cache[host] = (time.monotonic() + ttl, addresses)
            future.set_result(addresses)
            return addresses
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[host]

    async def _query(self, host: str) -> tuple[list[str], float]:
        if self._resolver is None:
            self._resolver = aiodns.DNSResolver()
        try:
            result = await self._resolver.getaddrinfo(
                host, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM
            )
        except aiodns.error.DNSError as exc:
            raise ResolveError(f"cannot resolve {host!r}: {exc.args[-1]}") from None
        addresses: list[str] = []
        ttl = MAX_TTL
        for node in result.nodes:
            address = node.addr[0]
            if isinstance(address, bytes):
                address = address.decode()
            if address not in addresses:
                addresses.append(address)
            ttl = min(ttl, float(node.ttl))
        if not addresses:
            raise ResolveError(f"cannot resolve {host!r}: no address")
        # IPv4 first: loopback services here, like most backends, listen on v4.
        addresses.sort(key=lambda a: ":" in a)
        return addresses, max(MIN_TTL, ttl)

    def close(self) -> None:
        if self._resolver is not None:
            self._resolver.cancel()
