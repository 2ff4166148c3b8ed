"""The dashboard's files (``proxy/api/dashboard/``), read once and served from memory.

``/dashboard`` and ``/`` redirect to ``/dashboard/`` (after ``X-Forwarded-Prefix``
when a router strips one), as Traefik's dashboard handler does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from proxy.api.response import TEXT, send, send_prepared, status_line

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange


DASHBOARD_DIR = Path(__file__).with_name("dashboard")
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
# The page loads nothing from elsewhere, and says so to the browser.
_SECURITY = (
    b"Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
    b"Content-Security-Policy: default-src 'self'; img-src 'self' data:\r\n"
)


def _load_assets() -> dict[str, tuple[bytes, bytes]]:
    """``/dashboard/NAME`` -> (prepared head, body), read once."""
    assets: dict[str, tuple[bytes, bytes]] = {}
    if not DASHBOARD_DIR.is_dir():
        return assets
    for path in sorted(DASHBOARD_DIR.iterdir()):
        content_type = _TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        head = status_line(200) + b"Content-Type: " + content_type + b"\r\n" + _SECURITY
        assets[f"/dashboard/{path.name}"] = (head, path.read_bytes())
    if "/dashboard/index.html" in assets:
        assets["/dashboard/"] = assets["/dashboard/index.html"]
    return assets


_ASSETS = _load_assets()


def _redirect_to_dashboard(exchange: Exchange) -> None:
    # Behind a router that strips a prefix, X-Forwarded-Prefix keeps the link right.
    prefix = ""
    for value in exchange.header("X-Forwarded-Prefix")[:1]:
        prefix = value.rstrip("/")
    location = f"{prefix}/dashboard/".encode("latin-1", "replace")
    send(exchange, 302, b"", TEXT, b"Location: " + location + b"\r\n")


def serve(exchange: Exchange, path: str) -> bool:
    """Serve a dashboard path; False when ``path`` is not one."""
    if path in ("/dashboard", "/"):
        _redirect_to_dashboard(exchange)
        return True
    asset = _ASSETS.get(path)
    if asset is not None:
        send_prepared(exchange, 200, asset[0], asset[1])
        return True
    if path.startswith("/dashboard/"):
        send(exchange, 404, b"404 page not found\n", TEXT)
        return True
    return False
