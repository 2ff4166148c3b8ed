"""Turnout's own services (``NAME@internal``), their routers and the ``traefik`` entry point.

Traefik serves its API, dashboard, ping and Prometheus endpoint through
ordinary routing: an internal provider contributes routers such as
``api@internal`` (``PathPrefix(`/api`)`` on entry point ``traefik``) that lead
to internal services, and the static configuration creates the ``traefik``
entry point on ``:8080`` when one of them needs it and the user did not
configure it. With ``manualRouting`` (or, for the API, without
``api.insecure``) no router is made and the user routes the service with a
router of their own, e.g. ``rule = "PathPrefix(`/api`) || PathPrefix(`/dashboard`)"``,
``service = "api@internal"``.

Turnout does the same. Each feature is one ``InternalService``: its qualified
name, the handler that answers an exchange, whether the static configuration
enables it, the routers it creates and whether it needs the ``traefik`` entry
point. ``features()`` lists them all; a new one (``prometheus@internal``) is a
value in that list. The routers are compiled with every build as the
configuration of provider ``internal`` (``internal_config``), so ``turnout
check`` and ``turnout explain`` see what ``turnout run`` routes.

A handler reads the running proxy through ``exchange.conn.entrypoint.runtime``
(the ``Instance``; None when nothing runs it, e.g. in unit tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.config.dynamic import DynamicConfig, HTTPConfiguration, Router
from proxy.config.static import EntryPoint as EntryPointConfig

if TYPE_CHECKING:
    from proxy.config.static import StaticConfig
    from proxy.http.exchange import Exchange

PROVIDER = "internal"
ENTRYPOINT = "traefik"  # Traefik's DefaultInternalEntryPointName
ADDRESS = ":8080"
# Go's math.MaxInt: internal routers win over any user router on their entry point.
MAX_PRIORITY = 2**63 - 1

Handler = Callable[["Exchange"], None]


def _never(static: StaticConfig) -> bool:
    return False


def _always(static: StaticConfig) -> bool:
    return True


def _no_routers(static: StaticConfig) -> dict[str, Router]:
    return {}


@dataclass(frozen=True, slots=True)
class InternalService:
    """One built-in service and what Traefik sets up around it."""

    name: str  # qualified: "api@internal"
    handler: Handler
    enabled: Callable[[StaticConfig], bool] = _always
    # The routers Traefik creates for it, by unqualified name (provider "internal").
    routers: Callable[[StaticConfig], dict[str, Router]] = _no_routers
    # Whether those routers need the ``traefik`` entry point created on :8080.
    needs_entrypoint: Callable[[StaticConfig], bool] = _never


def features() -> tuple[InternalService, ...]:
    """Every internal service Turnout knows (imported here: they import the runtime)."""
    from proxy.api.ping import PING
    from proxy.api.service import API, DASHBOARD
    from proxy.observability.prometheus import PROMETHEUS
    from proxy.services.whoami import WHOAMI

    return (WHOAMI, API, DASHBOARD, PING, PROMETHEUS)


def internal_services(static: StaticConfig) -> dict[str, Handler]:
    """The internal services this static configuration enables, by qualified name."""
    return {feature.name: feature.handler for feature in features() if feature.enabled(static)}


def internal_config(static: StaticConfig) -> DynamicConfig | None:
    """Provider ``internal``'s routers for this static configuration (None: there are none)."""
    routers: dict[str, Router] = {}
    for feature in features():
        if feature.enabled(static):
            routers.update(feature.routers(static))
    if not routers:
        return None
    return DynamicConfig(http=HTTPConfiguration(routers=routers))


def with_internal_entrypoint(
    static: StaticConfig, entrypoints: dict[str, EntryPointConfig]
) -> dict[str, EntryPointConfig]:
    """``entrypoints``, plus ``traefik`` on :8080 if an internal router needs it."""
    if ENTRYPOINT in entrypoints:
        return entrypoints
    if any(f.enabled(static) and f.needs_entrypoint(static) for f in features()):
        return {**entrypoints, ENTRYPOINT: EntryPointConfig(address=ADDRESS)}
    return entrypoints


def default_entrypoints(static: StaticConfig, entrypoints: Sequence[str]) -> list[str]:
    """Where a router without ``entryPoints`` listens, as in Traefik.

    The entry points marked ``asDefault``; when none is, every entry point
    except the internal ``traefik`` one, which only internal routers and
    routers that name it use.
    """
    configured = static.entry_points
    marked = [name for name in entrypoints if name in configured and configured[name].as_default]
    if marked:
        return marked
    return [name for name in entrypoints if name != ENTRYPOINT]


def router(rule: str, service: str, entrypoint: str, priority: int) -> Router:
    """An internal router (a helper for ``InternalService.routers``)."""
    return Router(entry_points=[entrypoint], service=service, rule=rule, priority=priority)
