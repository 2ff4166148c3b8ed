"""inFlightReq: at most ``amount`` requests in progress per source (Traefik's inflightreq).

Traefik builds it on oxy's connlimit: a request is refused with 429 when its
source already has ``amount`` requests in flight (so ``amount`` 0 refuses
everything, as there); the default source is the request's Host, not the
client address. A request holds its slot until its exchange ends however it
ends (answered, failed, or the client gone): ``on_done`` runs exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config.dynamic import InFlightReq, SourceCriterion
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler
from proxy.middlewares.source_criterion import SourceFunc, source_extractor

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

TOO_MANY = Answer(429, [(b"Content-Type", b"text/plain; charset=utf-8")], b"Too Many Requests")


class InFlightReqHandler(Handler):
    __slots__ = ("amount", "counts", "holding", "source")

    def __init__(self, name: str, amount: int, source: SourceFunc) -> None:
        super().__init__(name)
        self.amount = amount
        self.source = source
        self.counts: dict[str, int] = {}  # a source leaves the map when its count is 0
        self.holding: dict[Exchange, str] = {}  # exchanges holding a slot, and whose

    def on_request(self, ex: Exchange) -> Answer | None:
        route = ex.route
        assert route is not None
        # Traefik builds a middleware once per router: each router counts on its own.
        source = route.router + "\x00" + self.source(ex)
        count = self.counts.get(source, 0)
        if count >= self.amount:
            return TOO_MANY
        self.counts[source] = count + 1
        self.holding[ex] = source
        return None

    def on_done(self, ex: Exchange, status: int) -> None:
        source = self.holding.pop(ex, None)
        if source is None:
            return  # refused, or stopped before reaching this handler
        count = self.counts[source] - 1
        if count:
            self.counts[source] = count
        else:
            del self.counts[source]


@register("in_flight_req")
def build(name: str, config: InFlightReq, context: BuildContext) -> Handler:
    if config.amount < 0:
        raise BuildError("amount must not be negative", "amount")
    criterion = config.source_criterion
    if criterion is None or (
        criterion.ip_strategy is None
        and not criterion.request_header_name
        and not criterion.request_host
    ):
        criterion = SourceCriterion(request_host=True)  # Traefik's default here
    return InFlightReqHandler(name, config.amount, source_extractor(criterion))
