"""The http provider: ``providers.http.{endpoint, pollInterval, pollTimeout, headers, tls}``.

Turnout polls the endpoint every ``pollInterval`` (default 5 s) with a
deadline of ``pollTimeout`` (default 5 s). The body is a dynamic configuration
in JSON (or YAML, which Traefik's decoder accepts too). The provider sends
``If-None-Match`` with the last ``ETag`` it saw, and a ``304 Not Modified``
costs nothing; a 200 whose body did not change is not handed on either.
``maxResponseBodySize`` bounds the body (unset or negative: no limit).
A failed poll keeps the last good configuration live and is retried at the
next interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import yaml

from proxy.config.dynamic import DynamicConfig
from proxy.config.load import ConfigError, ConfigIssue, decode_dynamic
from proxy.config.static import HTTPProvider as HTTPProviderConfig
from proxy.providers import httpclient
from proxy.providers.base import Provider, ProviderUnavailable, Sink, client_ssl_context

log = logging.getLogger("turnout")


class HTTPProvider(Provider):
    name = "http"

    def __init__(self, config: HTTPProviderConfig) -> None:
        self.config = config
        self.source = config.endpoint
        self._ssl = client_ssl_context(config.tls)
        self._etag: str | None = None
        self._digest: bytes | None = None
        limit = config.max_response_body_size
        self._limit = None if limit is None or limit < 0 else limit

    async def _get(self, conditional: bool) -> httpclient.HttpResponse:
        if not self.config.endpoint:
            raise ProviderUnavailable("providers.http.endpoint is empty")
        headers = dict(self.config.headers)
        if conditional and self._etag:
            headers["If-None-Match"] = self._etag
        try:
            response = await httpclient.request(
                "GET",
                self.config.endpoint,
                headers=headers,
                timeout=float(self.config.poll_timeout),
                ssl_context=self._ssl,
                max_body=self._limit,
            )
        except TimeoutError:
            raise ProviderUnavailable(
                f"no answer within pollTimeout ({float(self.config.poll_timeout):g}s)"
            ) from None
        except httpclient.HttpClientError as error:
            raise ProviderUnavailable(str(error)) from None
        if response.status not in (200, 304):
            raise ProviderUnavailable(f"answered {response.status}, expected 200")
        return response

    def _decode(self, body: bytes) -> DynamicConfig:
        try:
            raw = json.loads(body) if body.strip() else {}
        except ValueError:
            try:
                raw = yaml.safe_load(body)
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                where = f"line {mark.line + 1}" if mark is not None else ""
                raise ConfigError(
                    [
                        ConfigIssue(
                            self.source, where, "not JSON or YAML: " + str(error).split("\n")[0]
                        )
                    ]
                ) from None
        return decode_dynamic(raw, self.source)

    async def fetch(self) -> DynamicConfig:
        response = await self._get(conditional=False)
        self._remember(response)
        return self._decode(response.body)

    def _remember(self, response: httpclient.HttpResponse) -> bool:
        """Keep the ETag and digest; True when the body is new."""
        self._etag = response.header("etag")
        digest = hashlib.blake2b(response.body, digest_size=16).digest()
        new = digest != self._digest
        self._digest = digest
        return new

    async def watch(self, sink: Sink) -> None:
        interval = float(self.config.poll_interval)
        if interval <= 0:
            await super().watch(sink)
            return
        while True:
            await asyncio.sleep(interval)
            try:
                response = await self._get(conditional=True)
            except ProviderUnavailable as error:
                sink.unreachable(self.name, f"cannot read {self.source}: {error}")
                continue
            sink.unreachable(self.name, None)
            if response.status == 304 or not self._remember(response):
                continue
            try:
                update: DynamicConfig | ConfigError = self._decode(response.body)
            except ConfigError as error:
                update = error
            sink.submit(self.name, update)
