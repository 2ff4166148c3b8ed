"""A stand-in for Consul's HTTP API, written from Consul's public API documentation.

Consul cannot be installed from the registries this project reaches, so the
consulCatalog provider is tested against this: an HTTP/1.1 server on a free
loopback port that keeps a catalog and answers the two endpoints the provider
uses, with Consul's blocking-query protocol.

- ``GET /v1/catalog/services`` -> ``{"name": ["tag", ...]}`` (tags of all instances).
- ``GET /v1/health/service/NAME`` -> ``[{"Node": {...}, "Service": {...}, "Checks": [...]}]``;
  with ``?passing`` only entries whose every check is ``passing``.
- Both answer ``X-Consul-Index``. With ``?index=N``: if the data's index is
  above N the answer is immediate, else the request blocks until it changes
  or ``wait`` (``10s``, ``100ms``; default 5m, as Consul) runs out, and then
  answers with the unchanged index.
- ``?dc=`` must name the datacenter (``dc1``), else 500 as Consul answers;
  ``X-Consul-Token`` is required when the stand-in has a token (403 otherwise).

Every change bumps one raft-like global index; the catalog endpoint reports
the last index at which the service list or tags changed, a service's health
endpoint the last index at which that service's instances or checks changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(text)
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


@dataclass
class _Instance:
    id: str
    service: str
    node: str
    address: str
    port: int
    tags: list[str]
    status: str = "passing"
    service_address: str = ""


@dataclass
class ConsulStandIn:
    datacenter: str = "dc1"
    token: str = ""
    instances: dict[str, _Instance] = field(default_factory=dict)
    index: int = 10
    services_index: int = 10
    health_index: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _changed: asyncio.Condition | None = None
    _server: asyncio.base_events.Server | None = None
    port: int = 0

    async def start(self) -> ConsulStandIn:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        # Blocked requests end with the server, as when Consul goes away.
        for task in list(self._tasks):
            task.cancel()
        await self._server.wait_closed()

    _tasks: set[asyncio.Task] = field(default_factory=set)

    # -- catalog changes -----------------------------------------------------------

    async def _bump(self, service: str, *, services_too: bool) -> None:
        assert self._changed is not None
        self.index += 1
        self.health_index[service] = self.index
        if services_too:
            self.services_index = self.index
        async with self._changed:
            self._changed.notify_all()

    async def register(
        self,
        service: str,
        instance_id: str,
        port: int,
        tags: list[str],
        *,
        address: str = "127.0.0.1",
        node: str = "node1",
        status: str = "passing",
    ) -> None:
        self.instances[instance_id] = _Instance(
            instance_id, service, node, "127.0.0.1", port, list(tags), status, address
        )
        await self._bump(service, services_too=True)

    async def deregister(self, instance_id: str) -> None:
        instance = self.instances.pop(instance_id)
        await self._bump(instance.service, services_too=True)

    async def set_status(self, instance_id: str, status: str) -> None:
        instance = self.instances[instance_id]
        instance.status = status
        await self._bump(instance.service, services_too=False)

    # -- HTTP ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                self.requests.append(target)
                status, index, body = await self._answer(method, target, headers)
                payload = json.dumps(body).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"X-Consul-Index: {index}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, method: str, target: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        if method != "GET":
            return 405, self.index, {"error": "method not allowed"}
        if self.token and headers.get("x-consul-token") != self.token:
            return 403, self.index, "ACL not found"
        if "dc" in query and query["dc"][0] != self.datacenter:
            return 500, self.index, f"No path to datacenter {query['dc'][0]}"
        wait = _seconds(query["wait"][0]) if "wait" in query else 300.0
        wanted = int(query["index"][0]) if "index" in query else 0
        path = parts.path
        if path == "/v1/catalog/services":
            await self._block(lambda: self.services_index, wanted, wait)
            return 200, self.services_index, self._catalog()
        if path.startswith("/v1/health/service/"):
            name = unquote(path[len("/v1/health/service/") :])
            await self._block(lambda: self.health_index.get(name, 1), wanted, wait)
            return 200, self.health_index.get(name, 1), self._health(name, "passing" in query)
        return 404, self.index, "not found"

    async def _block(self, current, wanted: int, wait: float) -> None:  # type: ignore[no-untyped-def]
        assert self._changed is not None
        if wanted <= 0 or current() > wanted:
            return
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: current() > wanted), timeout=wait
                )

    def _catalog(self) -> dict[str, list[str]]:
        catalog: dict[str, list[str]] = {"consul": []}
        for instance in self.instances.values():
            tags = catalog.setdefault(instance.service, [])
            tags.extend(tag for tag in instance.tags if tag not in tags)
        return catalog

    def _health(self, name: str, passing_only: bool) -> list[dict]:
        entries = []
        for instance in sorted(self.instances.values(), key=lambda i: i.id):
            if instance.service != name:
                continue
            checks = [
                {
                    "Node": instance.node,
                    "CheckID": "serfHealth",
                    "Status": "passing",
                    "ServiceID": "",
                },
                {
                    "Node": instance.node,
                    "CheckID": f"service:{instance.id}",
                    "Status": instance.status,
                    "ServiceID": instance.id,
                },
            ]
            if passing_only and any(check["Status"] != "passing" for check in checks):
                continue
            entries.append(
                {
                    "Node": {
                        "ID": f"id-{instance.node}",
                        "Node": instance.node,
                        "Address": instance.address,
                        "Datacenter": self.datacenter,
                    },
                    "Service": {
                        "ID": instance.id,
                        "Service": instance.service,
                        "Tags": instance.tags,
                        "Address": instance.service_address,
                        "Port": instance.port,
                        "Meta": {},
                    },
                    "Checks": checks,
                }
            )
        return entries
