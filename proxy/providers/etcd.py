"""The etcd provider: ``providers.etcd.{endpoints, rootKey, username, password, tls}``.

etcd v3 through its gRPC gateway, which every etcd server since 3.3 serves on
the client port: JSON over HTTP/1.1 with base64 keys and values
(``POST /v3/kv/range``, ``POST /v3/watch``, ``POST /v3/auth/authenticate``).
That keeps the provider to Turnout's own small HTTP client instead of a gRPC
stack, and it works with any etcd a user runs.

The provider reads the whole prefix at one revision, then watches from the
next revision, applying PUT and DELETE events to its copy of the keys, so a
change costs one event and never a full read. A cancelled watch (the revision
was compacted) or a lost connection (the server restarted) leads to a full
read again; meanwhile the last good configuration stays live.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError
from proxy.config.static import EtcdProvider as EtcdProviderConfig
from proxy.providers import httpclient
from proxy.providers.base import Backoff, Provider, ProviderUnavailable, Sink, client_ssl_context
from proxy.providers.kv import decode_kv, prefix_end

log = logging.getLogger("turnout")

TIMEOUT = 5.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode("utf-8", "surrogateescape")


class EtcdProvider(Provider):
    name = "etcd"

    def __init__(self, config: EtcdProviderConfig) -> None:
        self.config = config
        self.root = config.root_key.strip("/") or "traefik"
        scheme = "https" if config.tls is not None else "http"
        self.bases = [
            endpoint.rstrip("/") if "://" in endpoint else f"{scheme}://{endpoint}"
            for endpoint in config.endpoints or ["127.0.0.1:2379"]
        ]
        self.source = f"{self.bases[0].replace('http', 'etcd', 1)} {self.root}/"
        self._ssl = client_ssl_context(config.tls)
        self._prefix = (self.root + "/").encode()
        self._pairs: dict[str, str] | None = None

    # -- calls -------------------------------------------------------------------

    async def _call(
        self, base: str, path: str, payload: dict[str, Any], token: str | None
    ) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        try:
            response = await httpclient.request(
                "POST",
                base + path,
                headers=headers,
                body=json.dumps(payload).encode(),
                timeout=TIMEOUT,
                ssl_context=self._ssl,
            )
        except (httpclient.HttpClientError, TimeoutError) as error:
            raise ProviderUnavailable(f"{base}: {error or 'timed out'}") from None
        try:
            data = json.loads(response.body or b"{}")
        except ValueError:
            data = {}
        if response.status != 200:
            message = data.get("message") or data.get("error") or response.body[:200].decode()
            raise ProviderUnavailable(f"{base}{path}: {response.status} {message}")
        return data

    async def _login(self, base: str) -> str | None:
        if not self.config.username:
            return None
        data = await self._call(
            base,
            "/v3/auth/authenticate",
            {"name": self.config.username, "password": self.config.password},
            None,
        )
        return data.get("token")

    async def _connect(self) -> tuple[str, str | None, dict[str, str], int]:
        """The first endpoint that answers: (base URL, auth token, pairs, revision)."""
        errors = []
        for base in self.bases:
            try:
                token = await self._login(base)
                pairs, revision = await self._range(base, token)
            except ProviderUnavailable as error:
                errors.append(str(error))
                continue
            return base, token, pairs, revision
        raise ProviderUnavailable("; ".join(errors))

    async def _range(self, base: str, token: str | None) -> tuple[dict[str, str], int]:
        data = await self._call(
            base,
            "/v3/kv/range",
            {"key": _b64(self._prefix), "range_end": _b64(prefix_end(self._prefix))},
            token,
        )
        pairs = {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in data.get("kvs", [])}
        return pairs, int(data.get("header", {}).get("revision", 0))

    def _decode(self, pairs: dict[str, str]) -> DynamicConfig:
        return decode_kv(pairs, self.root, self.source)

    async def fetch(self) -> DynamicConfig:
        _, _, pairs, _ = await self._connect()
        self._pairs = dict(pairs)
        return self._decode(pairs)

    def _publish(self, sink: Sink, pairs: dict[str, str]) -> None:
        if pairs == self._pairs:
            return
        self._pairs = dict(pairs)
        try:
            update: DynamicConfig | ConfigError = self._decode(pairs)
        except ConfigError as error:
            update = error
        sink.submit(self.name, update)

    # -- following -----------------------------------------------------------------

    async def watch(self, sink: Sink) -> None:
        backoff = Backoff()
        while True:
            try:
                base, token, pairs, revision = await self._connect()
                self._publish(sink, pairs)
                backoff.reset()
                sink.unreachable(self.name, None)
                await self._follow(sink, base, token, pairs, revision)
                # The watch was cancelled by the server (compaction): read again now.
            except (ProviderUnavailable, httpclient.HttpClientError, TimeoutError) as error:
                sink.unreachable(self.name, f"cannot read {self.source}: {error}")
                await asyncio.sleep(backoff.next())

    async def _follow(
        self, sink: Sink, base: str, token: str | None, pairs: dict[str, str], revision: int
    ) -> None:
        create = {
            "create_request": {
                "key": _b64(self._prefix),
                "range_end": _b64(prefix_end(self._prefix)),
                "start_revision": str(revision + 1),
            }
        }
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        buffer = ""
        decoder = json.JSONDecoder()
        async for part in httpclient.stream(
            "POST",
            base + "/v3/watch",
            headers=headers,
            body=json.dumps(create).encode(),
            connect_timeout=TIMEOUT,
            ssl_context=self._ssl,
        ):
            if isinstance(part, httpclient.HttpResponse):
                if part.status != 200:
                    raise ProviderUnavailable(f"{base}/v3/watch: {part.status}")
                continue
            buffer += part.decode("utf-8", "surrogateescape")
            while True:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    message, end = decoder.raw_decode(buffer)
                except ValueError:
                    break  # the rest of this message is still on its way
                buffer = buffer[end:]
                if "error" in message:
                    raise ProviderUnavailable(f"{base}/v3/watch: {message['error']}")
                result = message.get("result", {})
                if result.get("canceled"):
                    log.info(
                        "provider etcd: watch cancelled (%s); reading again",
                        result.get("cancel_reason") or "compacted",
                    )
                    return
                events = result.get("events") or []
                for event in events:
                    kv = event.get("kv", {})
                    key = _unb64(kv.get("key", ""))
                    if event.get("type") == "DELETE":
                        pairs.pop(key, None)
                    else:
                        pairs[key] = _unb64(kv.get("value", ""))
                if events:
                    self._publish(sink, pairs)
        raise httpclient.HttpClientError(f"{base} ended the watch")
