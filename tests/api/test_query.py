"""List criteria and pages, checked against the behaviour of Traefik's pkg/api/criterion.go."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from proxy.api.query import BadRequest, Query


@dataclass
class Item:
    name: str
    status: str = "enabled"
    provider: str = "file"
    service: str = ""
    middlewares: list[str] = field(default_factory=list)


def test_pages_and_next_page() -> None:
    items = list(range(5))
    assert Query("per_page=2").page_of(items) == ([0, 1], 2)
    assert Query("per_page=2&page=2").page_of(items) == ([2, 3], 3)
    assert Query("per_page=2&page=3").page_of(items) == ([4], 1)
    assert Query("").page_of(items) == (items, 1)
    # Page 1 of nothing is an empty page, not an error (Traefik: startIndex 0).
    assert Query("").page_of([]) == ([], 1)
    assert Query("per_page=5").page_of(items) == (items, 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("per_page=2&page=4", "invalid request: page: 4, per_page: 2"),
        ("page=2", "invalid request: page: 2, per_page: 100"),
        ("per_page=0", "invalid request: per_page: 0"),
        ("per_page=-3", "invalid request: per_page: -3"),
        ("page=abc", "invalid request: page: 0"),
    ],
)
def test_bad_pages_are_refused_with_traefiks_message(raw: str, message: str) -> None:
    with pytest.raises(BadRequest) as error:
        Query(raw).page_of(list(range(5)))
    assert str(error.value) == message


def test_status_search_and_provider() -> None:
    item = Item("Shop@file", status="warning")
    assert Query("status=WARNING").keep(item, item.name)
    assert not Query("status=enabled").keep(item, item.name)
    assert Query("search=shop").keep(item, item.name)
    assert Query("search=host(`a").keep(item, item.name, "Host(`a.example`)")
    assert not Query("search=blog").keep(item, item.name)
    assert Query("provider=FILE").keep(item, item.name)
    assert not Query("provider=redis").keep(item, item.name)


def test_service_name_as_traefik_compares_it() -> None:
    unqualified = Item("r@file", service="shop")
    qualified = Item("r@file", service="shop@redis")
    assert Query("serviceName=shop@file").keep(unqualified)
    assert Query("serviceName=shop").keep(unqualified)
    assert Query("serviceName=shop@redis").keep(qualified)
    assert not Query("serviceName=shop").keep(qualified)  # qualified: compared whole
    assert not Query("serviceName=blog").keep(unqualified)


def test_middleware_name_matches_as_written() -> None:
    item = Item("r@file", middlewares=["auth", "strip@redis"])
    assert Query("middlewareName=auth").keep(item)
    assert Query("middlewareName=strip@redis").keep(item)
    assert not Query("middlewareName=auth@file").keep(item)
