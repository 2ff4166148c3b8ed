"""The Redis provider: ``providers.redis.{endpoints, rootKey, username, password, db, tls}``.

Reads every key under ``rootKey/`` (SCAN, then MGET in batches) and decodes
them with Traefik's key-value layout (``proxy.providers.kv``). Changes are
followed with keyspace notifications: the provider turns them on for keys
(``CONFIG SET notify-keyspace-events`` adding ``K$g``, as Traefik's store
does) and re-reads the keys after each burst of events. Where CONFIG is not
allowed (managed Redis), it polls once per ``POLL_INTERVAL`` instead.

A restarted server is noticed by its ``run_id`` (the client library may
reconnect on its own) or by a failed command; either way the provider reads
everything again. While Redis is away the last good configuration stays live.
Endpoints are tried in order; the first that answers is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError
from proxy.config.static import RedisProvider as RedisProviderConfig
from proxy.providers.base import (
    Backoff,
    Provider,
    ProviderUnavailable,
    Sink,
    split_endpoint,
)
from proxy.providers.kv import decode_kv

log = logging.getLogger("turnout")

# Without keyspace notifications: how often the keys are read again.
POLL_INTERVAL = 1.0
# With them: how often the server's run_id is checked (a restart loses subscriptions).
LIVENESS_INTERVAL = 1.0
# After a notification, wait this long for the rest of a multi-key write.
SETTLE = 0.02
MGET_BATCH = 500

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisProvider(Provider):
    name = "redis"

    def __init__(self, config: RedisProviderConfig) -> None:
        self.config = config
        self.root = config.root_key.strip("/") or "traefik"
        self.endpoints = [split_endpoint(e, 6379) for e in config.endpoints] or [
            ("127.0.0.1", 6379)
        ]
        host, port = self.endpoints[0]
        self.source = f"redis://{host}:{port}/{config.db} {self.root}/"
        self._client: aioredis.Redis | None = None
        self._pairs: dict[str, str] | None = None
        self._closing = False

    # -- connecting and reading ----------------------------------------------

    async def _connect(self) -> aioredis.Redis:
        errors = []
        for host, port in self.endpoints:
            client = aioredis.Redis(
                host=host,
                port=port,
                db=self.config.db,
                username=self.config.username or None,
                password=self.config.password or None,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                # Failures must surface here (to resynchronise), not be retried away.
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
                **self._tls_options(),
            )
            try:
                await client.ping()
            except (RedisError, OSError) as error:
                errors.append(f"{host}:{port}: {error}")
                await client.aclose()
                continue
            return client
        raise ProviderUnavailable("; ".join(errors))

    def _tls_options(self) -> dict[str, object]:
        tls = self.config.tls
        if tls is None:
            return {}
        return {
            "ssl": True,
            "ssl_ca_certs": tls.ca or None,
            "ssl_certfile": tls.cert or None,
            "ssl_keyfile": tls.key or None,
            "ssl_cert_reqs": "none" if tls.insecure_skip_verify else "required",
            "ssl_check_hostname": not tls.insecure_skip_verify,
        }

    async def _read(self, client: aioredis.Redis) -> dict[str, str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.root) + "/*"
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        pairs: dict[str, str] = {}
        for start in range(0, len(keys), MGET_BATCH):
            batch = keys[start : start + MGET_BATCH]
            for key, value in zip(batch, await client.mget(batch), strict=True):
                if value is not None:  # deleted meanwhile, or not a string
                    pairs[key] = value
        return pairs

    def _decode(self, pairs: dict[str, str]) -> DynamicConfig:
        return decode_kv(pairs, self.root, self.source)

    async def fetch(self) -> DynamicConfig:
        client = await self._connect()
        try:
            pairs = await self._read(client)
        except (RedisError, OSError) as error:
            raise ProviderUnavailable(str(error)) from error
        finally:
            await client.aclose()
        self._pairs = pairs
        return self._decode(pairs)

    def _publish(self, sink: Sink, pairs: dict[str, str]) -> None:
        if pairs == self._pairs:
            return
        self._pairs = pairs
        try:
            update: DynamicConfig | ConfigError = self._decode(pairs)
        except ConfigError as error:
            update = error
        sink.submit(self.name, update)

    # -- following -------------------------------------------------------------

    async def _enable_notifications(self, client: aioredis.Redis) -> bool:
        try:
            current = (await client.config_get("notify-keyspace-events")).get(
                "notify-keyspace-events", ""
            )
            wanted = set("K$g")
            if not (wanted <= set(current) or ("K" in current and "A" in current)):
                await client.config_set(
                    "notify-keyspace-events", "".join(sorted(set(current) | wanted))
                )
            return True
        except ResponseError as error:
            log.warning(
                "provider redis: keyspace notifications unavailable (%s); polling every %gs",
                error,
                POLL_INTERVAL,
            )
            return False

    async def watch(self, sink: Sink) -> None:
        backoff = Backoff()
        while not self._closing:
            client: aioredis.Redis | None = None
            pubsub = None
            try:
                client = self._client = await self._connect()
                notifications = await self._enable_notifications(client)
                if notifications:
                    pubsub = client.pubsub()
                    await pubsub.psubscribe(
                        f"__keyspace@{self.config.db}__:"
                        + _GLOB_SPECIAL.sub(r"\\\1", self.root)
                        + "/*"
                    )
                run_id = (await client.info("server")).get("run_id")
                self._publish(sink, await self._read(client))
                backoff.reset()
                sink.unreachable(self.name, None)
                while not self._closing:
                    if pubsub is not None:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=LIVENESS_INTERVAL
                        )
                        if message is None:
                            now_id = (await client.info("server")).get("run_id")
                            if now_id == run_id:
                                continue
                            run_id = now_id  # restarted: read everything again
                        else:
                            await asyncio.sleep(SETTLE)
                            while await pubsub.get_message(
                                ignore_subscribe_messages=True, timeout=0
                            ):
                                pass
                    else:
                        await asyncio.sleep(POLL_INTERVAL)
                    self._publish(sink, await self._read(client))
            except (RedisError, OSError, ProviderUnavailable) as error:
                if self._closing:
                    return
                sink.unreachable(self.name, f"cannot read {self.source}: {error}")
                await asyncio.sleep(backoff.next())
            finally:
                if pubsub is not None:
                    await _quietly(pubsub.aclose())
                if client is not None:
                    await _quietly(client.aclose())
                self._client = None

    async def close(self) -> None:
        # redis-py can swallow a cancellation inside a read; the flag ends the loop anyway.
        self._closing = True
        if self._client is not None:
            await _quietly(self._client.aclose())


async def _quietly(awaitable) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(RedisError, OSError, RuntimeError, TimeoutError):
        async with asyncio.timeout(1.0):
            await awaitable
