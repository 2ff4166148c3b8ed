"""A list request's criteria and page, as Traefik's API reads them (``pkg/api/criterion.go``).

``search`` (part of the name, or of the rule for routers, any case), ``status``,
``serviceName`` and ``middlewareName`` (routers) as Traefik's, ``provider``
(Turnout's); ``page`` from 1 and ``per_page`` (default 100) with the next page
number for ``X-Next-Page`` (1 after the last). A bad number or a page past the
end is a ``BadRequest`` with Traefik's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

DEFAULT_PER_PAGE = 100


class BadRequest(Exception):
    """A query the API answers 400 to."""


class Query:
    """A list request's criteria, as Traefik's ``searchCriterion`` plus ``provider``."""

    __slots__ = ("middleware", "page", "per_page", "provider", "search", "service", "status")

    def __init__(self, raw: str) -> None:
        values = parse_qs(raw, keep_blank_values=True) if raw else {}

        def first(key: str) -> str:
            found = values.get(key)
            return found[0] if found else ""

        self.search = first("search").lower()
        self.status = first("status").lower()
        self.service = first("serviceName")
        self.middleware = first("middlewareName")
        self.provider = first("provider").lower()
        self.per_page = _positive(first("per_page"), "per_page", DEFAULT_PER_PAGE)
        self.page = _positive(first("page"), "page", 1)

    def keep(self, item: Any, *searched: str) -> bool:
        if self.status and item.status.lower() != self.status:
            return False
        if self.provider and item.provider.lower() != self.provider:
            return False
        if self.search and not any(self.search in text.lower() for text in searched):
            return False
        if self.service and not _same_service(self.service, item):
            return False
        return not self.middleware or self.middleware in (getattr(item, "middlewares", ()) or ())

    def page_of(self, items: Sequence[Any]) -> tuple[Sequence[Any], int]:
        """The requested page and the next page number (1 after the last), or BadRequest."""
        start = (self.page - 1) * self.per_page
        if start != 0 and start >= len(items):
            raise BadRequest(f"invalid request: page: {self.page}, per_page: {self.per_page}")
        end = min(start + self.per_page, len(items))
        following = self.page + 1 if self.page * self.per_page < len(items) else 1
        return items[start:end], following


def _positive(raw: str, key: str, default: int) -> int:
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise BadRequest(f"invalid request: {key}: {value}")
    return value


def _same_service(wanted: str, item: Any) -> bool:
    """Traefik's ``filterService``: a router's service as written, qualified or not."""
    service = getattr(item, "service", "")
    if "@" in service:
        return wanted == service
    return wanted.partition("@")[0] == service
