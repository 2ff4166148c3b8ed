"""The access log's record of a finished exchange, built on the request path.

Compiled with the hot path (``proxy/native.py``): it reads some twenty
attributes of the compiled exchange and its connection per logged request,
which interpreted code does through descriptors. ``accesslines`` documents
the record's fields (``HttpRecord``) and formats it into a line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.observability.accesslog import AccessLog

# A record's first item: its kind (accesslines: TCP = 1, REOPEN = 2).
HTTP: Final = 0


def http_record(ex: Exchange, ended: float, offset: float, with_headers: bool) -> tuple[Any, ...]:
    """The record of a finished exchange: attribute reads only, no formatting."""
    route = ex.route
    router = service = ""
    if route is not None:
        router = route.router
        stats = route.stats
        if stats is not None:
            service = stats.service
        elif route.service is not None:
            service = route.service.name
    conn = ex.conn
    started = ex.started
    original = ex.original_target
    return (
        HTTP,
        started + offset,
        ended - started,
        conn.remote_address,
        conn.client_ip,
        _forwarded_for(ex) if ex.xforwarded else None,
        ex.user,
        ex.status,
        ex.response_bytes,
        ex.server_url,
        router,
        service,
        ex.host_header,
        ex.method,
        ex.target if original is None else original,
        ex.version,
        ex.retry_attempts,
        ex.request_body_bytes,
        ex.fields if with_headers else None,
    )


def _forwarded_for(ex: Exchange) -> str | None:
    for name, _, value in ex.fields:
        if name == b"x-forwarded-for":
            return value.decode("latin-1")
    return None


class HttpRecorder:
    """An access log's per-request callable (``AccessLog.recorder``): the record,
    built now (holding the exchange until a flush would keep it, and its lists,
    alive past a garbage collection), and a flush asked for when a batch is full."""

    __slots__ = ("clock", "limit", "log", "pending", "with_headers")

    def __init__(self, log: AccessLog) -> None:
        self.log = log
        self.pending: list[tuple[Any, ...]] = log.pending  # cleared in place by flush()
        self.clock: Callable[[], float] = log._clock
        self.limit = log.limit
        self.with_headers = log.with_headers

    def __call__(self, ex: Exchange) -> None:
        pending = self.pending
        pending.append(http_record(ex, self.clock(), self.log.offset, self.with_headers))
        if len(pending) >= self.limit:
            self.log.batch_full()
