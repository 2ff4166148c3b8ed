"""Which "source" a request counts against: Traefik's sourceCriterion.

Shared by rateLimit and inFlightReq; ``ipStrategy`` (depth, excludedIPs,
ipv6Subnet) is ipAllowList's. Traefik's precedence: ``ipStrategy`` when
set, else ``requestHeaderName``, else ``requestHost``; none of them means the
client's address. The X-Forwarded-For read by ``ipStrategy`` is the one left
after the entry point's forwardedHeaders filter, as in Traefik: from an
untrusted client it is absent, so a depth strategy yields "" (one shared source).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config.dynamic import SourceCriterion
from proxy.middlewares.ip_allow_list import ip_strategy

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

SourceFunc = Callable[["Exchange"], str]


def client_ip(ex: Exchange) -> str:
    return ex.client_ip


def source_extractor(criterion: SourceCriterion | None, key: str = "sourceCriterion") -> SourceFunc:
    """The function giving a request's source key, as Traefik's GetSourceExtractor."""
    if criterion is None or (
        criterion.ip_strategy is None
        and not criterion.request_header_name
        and not criterion.request_host
    ):
        return client_ip
    if criterion.ip_strategy is not None:
        return ip_strategy(criterion.ip_strategy, f"{key}.ipStrategy")
    if criterion.request_header_name:
        name = criterion.request_header_name.lower()

        def by_header(ex: Exchange) -> str:
            values = ex.header(name)
            return values[0] if values else ""

        return by_header

    def by_host(ex: Exchange) -> str:
        # Go's req.Host: the Host header as sent, port included.
        raw = ex.host_header
        return raw.decode("latin-1") if raw is not None else ""

    return by_host
