"""errors: answer some statuses with a page fetched from another service (Traefik's errors).

``status`` lists codes and inclusive ranges (``"404"``, ``"500-599"``, and as in
Traefik several in one entry: ``"404,418,500-599"``). When the service answers
one of them, its response is dropped and a GET for ``query`` is sent to a
server of ``service`` (a load-balancer service, named as a router names one:
``name`` in the same provider or ``name@provider``). The client gets the
original status (or its ``statusRewrites`` replacement) with the page's
headers and body; the page's own status is ignored, as in Traefik.

``query`` may hold ``{status}`` (the status sent, after any rewrite),
``{originalStatus}`` (the backend's) and ``{url}`` (the request target,
query-escaped). The page request carries the client's request headers (only
those named in ``errorRequestHeaders`` when it is set, so that Authorization or
Cookie need not reach another trust domain) and, as Traefik, the client's Host
unless the service has ``passHostHeader = false``.

When the page cannot be fetched, the client gets the status with the text the
error service's proxy would have produced ("Bad Gateway", "Gateway Timeout"),
as Traefik writes whatever its service handler wrote under the original code.

The service's own failures are caught too: a 502 when the backend cannot be
reached, a 504 when it does not answer in time (offered through
``on_upstream_error``; a retry placed after this middleware tries first).

As Traefik's errors middleware wraps everything after it in the chain, the
answers of the middlewares after it (a 401 of basicAuth, a 429 of rateLimit)
and the 503 of a load balancer without any server are caught too; the
middlewares before it, and the page's own answer, are not.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from proxy.config.dynamic import ErrorPage
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler, ResponseHead
from proxy.middlewares.chain import answer_from
from proxy.middlewares.subrequest import NOT_COPIED, SubrequestError, parse_target, send
from proxy.services.loadbalancer import LoadBalancer

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

TIMEOUT = 30.0
MAX_PAGE = 4 * 1024 * 1024

# Not copied from the client's request to the page request, nor from the page back.
HOP_BY_HOP = NOT_COPIED | {"expect"}

Ranges = tuple[tuple[int, int], ...]


def parse_ranges(entries: list[str] | tuple[str, ...]) -> Ranges:
    """Traefik's HTTPCodeRanges: "500", "500-599", and comma-separated lists of both."""
    ranges: list[tuple[int, int]] = []
    for entry in entries:
        for part in entry.split(","):
            low, dash, high = part.strip().partition("-")
            try:
                first = int(low)
                last = int(high) if dash else first
            except ValueError:
                raise ValueError(f"invalid status code or range {part.strip()!r}") from None
            if not (100 <= first <= 999 and 100 <= last <= 999):
                raise ValueError(f"status codes are 100 to 999, got {part.strip()!r}")
            ranges.append((first, last))
    return tuple(ranges)


def matches(ranges: Ranges, status: int) -> bool:
    return any(low <= status <= high for low, high in ranges)


class ErrorsHandler(Handler):
    __slots__ = ("forwarded", "query", "ranges", "rewrites", "service", "tasks")

    def __init__(
        self,
        name: str,
        ranges: Ranges,
        rewrites: tuple[tuple[Ranges, int], ...],
        service: str,
        query: str,
        forwarded: frozenset[str],
    ) -> None:
        super().__init__(name)
        self.ranges = ranges
        self.rewrites = rewrites
        self.service = service  # qualified; looked up in the exchange's snapshot
        self.query = query
        self.forwarded = forwarded  # lower-case names; empty: every header
        self.tasks: set[asyncio.Task[None]] = set()

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if self.catch(ex, head.status):
            head.replace()

    def on_upstream_error(self, ex: Exchange, error: Exception) -> bool:
        # The service's own 502/504 (backend unreachable, no answer in time), as
        # Traefik's proxy writes them under this middleware.
        return self.catch(ex, getattr(error, "status", 502))

    def catch(self, ex: Exchange, original: int) -> bool:
        """Start fetching the page if ``original`` is caught; True if it is."""
        if not matches(self.ranges, original):
            return False
        balancer = ex.snapshot.services.get(self.service)
        if not isinstance(balancer, LoadBalancer):
            return False  # cannot happen once built; let the response through
        status = original
        for ranges, code in self.rewrites:
            if matches(ranges, original):
                status = code
                break
        task = asyncio.ensure_future(self._page(ex, balancer, original, status))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    def page_path(self, ex: Exchange, original: int, status: int) -> str:
        if not self.query:
            return "/"
        query = "/" + self.query.lstrip("/")
        query = query.replace("{status}", str(status))
        query = query.replace("{originalStatus}", str(original))
        return query.replace("{url}", quote_plus(ex.target.decode("latin-1"), safe=""))

    async def _page(self, ex: Exchange, balancer: LoadBalancer, original: int, status: int) -> None:
        path = self.page_path(ex, original, status)
        forwarded = self.forwarded
        headers = [
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
            for lname, name, value in ex.fields
            if lname.decode("latin-1") not in HOP_BY_HOP
            and (not forwarded or lname.decode("latin-1") in forwarded)
        ]
        server = balancer.pick()
        try:
            if server is None:
                raise SubrequestError("no server")
            target = parse_target(server.url)
            prefix = target.path.partition("?")[0].rstrip("/")
            host = ""
            if balancer.pass_host_header and ex.host_header:
                host = ex.host_header.decode("latin-1")
            reply = await send(
                target,
                "GET",
                prefix + path,
                headers,
                timeout=TIMEOUT,
                max_body=MAX_PAGE,
                host=host,
            )
        except (SubrequestError, ValueError) as error:
            text = b"Gateway Timeout" if "within" in str(error) else b"Bad Gateway"
            if server is None:
                text = b"Service Unavailable"
            answer_from(ex, self, Answer(status, [], text))
            return
        page_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in reply.headers
            if name.lower() not in HOP_BY_HOP
        ]
        answer_from(ex, self, Answer(status, page_headers, reply.body))


@register("errors")
def build(name: str, config: ErrorPage, context: BuildContext) -> Handler:
    try:
        ranges = parse_ranges(config.status)
    except ValueError as error:
        raise BuildError(str(error), "status") from None
    rewrites: list[tuple[Ranges, int]] = []
    for key, code in config.status_rewrites.items():
        try:
            from_ranges = parse_ranges([key])
        except ValueError as error:
            raise BuildError(str(error), f"statusRewrites.{key}") from None
        if not 100 <= code <= 999:
            raise BuildError(f"status codes are 100 to 999, got {code}", f"statusRewrites.{key}")
        rewrites.append((from_ranges, code))
    if not config.service:
        raise BuildError("a service is required", "service")
    service = config.service if "@" in config.service else f"{config.service}@{context.provider}"
    found = context.services.get(service)
    if found is None:
        raise BuildError(f"unknown service {service!r}", "service")
    if not isinstance(found, LoadBalancer):
        raise BuildError(
            f"service {service!r} is not a load-balancer service (not supported yet)", "service"
        )
    for index, header in enumerate(config.error_request_headers):
        if not header or any(c in header for c in " :\r\n\t"):
            raise BuildError(f"invalid header name {header!r}", f"errorRequestHeaders[{index}]")
    forwarded = frozenset(h.lower() for h in config.error_request_headers)
    return ErrorsHandler(name, ranges, tuple(rewrites), service, config.query, forwarded)
