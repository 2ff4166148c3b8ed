"""What every provider is: a source of complete dynamic configurations for one namespace.

A provider never touches live routing. ``fetch`` reads its source once (the
start-up load and ``turnout check --live``); ``watch`` follows the source until
cancelled and hands each new complete configuration to a ``Sink`` (the
aggregator), reconnecting and resynchronising by itself when the source goes
away. Content that does not decode is handed over as the ``ConfigError`` it
raised, so that it is refused and reported like any other bad update; a source
that cannot be reached is reported with ``Sink.unreachable`` and changes
nothing.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import ssl
from typing import Protocol

from proxy.config.common import ClientTLS
from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError

log = logging.getLogger("turnout")


class ProviderUnavailable(Exception):
    """The provider's source cannot be read right now (connection refused, timeout, 5xx...)."""


class Sink(Protocol):
    def submit(self, name: str, update: DynamicConfig | ConfigError) -> None: ...

    def unreachable(self, name: str, message: str | None) -> None:
        """The source cannot be read (why), or ``None``: it can be read again."""


class Provider(abc.ABC):
    name: str  # the namespace of its resources: NAME@name
    source: str  # names the source in messages

    @abc.abstractmethod
    async def fetch(self) -> DynamicConfig:
        """Read the whole configuration once; raises ConfigError or ProviderUnavailable."""

    async def watch(self, sink: Sink) -> None:
        """Follow the source until cancelled. The default is not to follow it."""
        await asyncio.Event().wait()

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release connections; called before ``watch`` is cancelled."""


class Backoff:
    """Exponential backoff with jitter for reconnecting: 0.1 s doubling up to ``ceiling``."""

    def __init__(self, first: float = 0.1, ceiling: float = 5.0) -> None:
        self.first = first
        self.ceiling = ceiling
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.ceiling)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.delay = self.first


def client_ssl_context(tls: ClientTLS | None) -> ssl.SSLContext | None:
    """Traefik's ``tls.{ca, cert, key, insecureSkipVerify}`` towards a provider's server."""
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca or None)
    if tls.cert:
        context.load_cert_chain(tls.cert, tls.key or None)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def split_endpoint(endpoint: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[::1]:port``, ``host`` or ``scheme://host:port`` -> (host, port)."""
    text = endpoint.split("://", 1)[-1].rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host, int(port)
