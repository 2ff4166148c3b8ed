"""What the API answers, as msgspec Structs with Traefik's field names and shapes.

Each ``*Info`` extends the configuration Struct it describes (so the JSON is
the object's configuration plus Traefik's runtime fields: ``status``,
``error``, ``using`` / ``usedBy``, ``name``, ``provider``, and for services
``serverStatus`` and ``type``), and leaves out empty fields as Traefik's
``omitempty`` does. They are built once per snapshot (see ``view.py``) and a
response is one ``msgspec.json.encode`` of the ones it shows.
"""

from __future__ import annotations

import msgspec

from proxy.config.durations import Duration
from proxy.config.dynamic import (
    Middleware,
    Router,
    Service,
    TCPMiddleware,
    TCPRouter,
    TCPService,
    UDPRouter,
    UDPService,
)
from proxy.config.static import EntryPoint

ENABLED = "enabled"
WARNING = "warning"  # serving, with something to look at
DISABLED = "disabled"  # not serving: its configuration was refused


class RouterInfo(Router, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    using: list[str] | None = None
    name: str = ""
    provider: str = ""


class ServiceInfo(Service, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    used_by: list[str] | None = None
    server_status: dict[str, str] | None = None
    name: str = ""
    provider: str = ""
    type: str = ""
    # Turnout: why each DOWN server is DOWN (the last failed health check).
    server_reasons: dict[str, str] | None = None
    # Turnout: requests being answered by this service right now.
    in_flight_requests: int | None = None


class MiddlewareInfo(Middleware, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    used_by: list[str] | None = None
    name: str = ""
    provider: str = ""
    type: str = ""


class TCPRouterInfo(TCPRouter, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    using: list[str] | None = None
    name: str = ""
    provider: str = ""


class TCPServiceInfo(TCPService, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    used_by: list[str] | None = None
    name: str = ""
    provider: str = ""
    type: str = ""


class TCPMiddlewareInfo(TCPMiddleware, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    used_by: list[str] | None = None
    name: str = ""
    provider: str = ""
    type: str = ""


class UDPRouterInfo(UDPRouter, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    using: list[str] | None = None
    name: str = ""
    provider: str = ""


class UDPServiceInfo(UDPService, omit_defaults=True):
    error: list[str] | None = None
    status: str = ""
    used_by: list[str] | None = None
    name: str = ""
    provider: str = ""
    type: str = ""


class EntryPointInfo(EntryPoint):
    name: str = ""


# -- /api/overview --------------------------------------------------------------


class Section(msgspec.Struct):
    total: int = 0
    warnings: int = 0
    errors: int = 0


class SchemeOverview(msgspec.Struct, omit_defaults=True):
    routers: Section | None = None
    services: Section | None = None
    middlewares: Section | None = None


class Features(msgspec.Struct, rename="camel"):
    tracing: str = ""
    metrics: str = ""
    access_log: bool = False
    hub: bool = False


class Overview(msgspec.Struct):
    http: SchemeOverview
    tcp: SchemeOverview
    udp: SchemeOverview
    features: Features
    providers: list[str]


# -- /api/version -----------------------------------------------------------------


class Version(msgspec.Struct, omit_defaults=True):
    Version: str  # Traefik's keys, as they are
    Codename: str
    startDate: str
    disableDashboardAd: bool = False


# -- /api/rawdata -----------------------------------------------------------------


class RawData(msgspec.Struct, rename="camel", omit_defaults=True):
    routers: dict[str, RouterInfo] | None = None
    middlewares: dict[str, MiddlewareInfo] | None = None
    services: dict[str, ServiceInfo] | None = None
    tcp_routers: dict[str, TCPRouterInfo] | None = None
    tcp_middlewares: dict[str, TCPMiddlewareInfo] | None = None
    tcp_services: dict[str, TCPServiceInfo] | None = None
    udp_routers: dict[str, UDPRouterInfo] | None = None
    udp_services: dict[str, UDPServiceInfo] | None = None


# -- Turnout's own: providers and refused configurations -----------------------------


class Issue(msgspec.Struct):
    file: str
    path: str
    line: int | None
    message: str


class Refusal(msgspec.Struct):
    time: float  # Unix time
    errors: list[Issue]


class ProviderStatus(msgspec.Struct, rename="camel"):
    name: str
    source: str
    accepted_at: float | None
    updates: int
    refusals: int
    unreachable: str | None
    last_error: Refusal | None


class Message(msgspec.Struct):
    message: str


def _duration(seconds: float) -> str:
    """Go's ``time.Duration`` text: 30s, 1m30s, 100ms."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        millis = seconds * 1000
        return f"{sign}{millis:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = f"{int(hours)}h" if hours else ""
    if hours or minutes:
        text += f"{int(minutes)}m"
    return f"{sign}{text}{rest:g}s"


def _enc_hook(value: object) -> object:
    if isinstance(value, Duration):
        return _duration(float(value))
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
