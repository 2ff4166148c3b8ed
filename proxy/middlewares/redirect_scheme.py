"""redirectScheme: send the client to the same URL with another scheme (and port).

As Traefik v3: the current scheme is ``http`` (there is no TLS yet) unless a
trusted client's X-Forwarded-Proto says otherwise (``ws``/``wss`` read as
``http``/``https``); the port comes from
Host and is dropped when it is the scheme's default; the target URL keeps host
and request target, with ``port`` unless it is the new scheme's default. A
request already at the target URL passes through. Statuses as redirectRegex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config.dynamic import RedirectScheme
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler
from proxy.middlewares.goregexp import GoRegexp
from proxy.middlewares.redirect_regex import redirect_answer

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}
_URL = GoRegexp(r"^(https?:\/\/)?(\[[\w:.]+\]|[\w\._-]+)?(:\d+)?(.*)$")


def client_url(ex: Exchange) -> str:
    """Traefik's clientRequestURL: the URL as the client used it."""
    raw_host = (ex.host_header or b"").decode("latin-1")
    host, port = raw_host, ""
    colon = raw_host.rfind(":")
    if colon >= 0 and raw_host.rfind("]") < colon:
        host, port = raw_host[:colon], raw_host[colon:]
    scheme = "http"
    for proto in ex.header("x-forwarded-proto")[:1]:
        # An upgrade's ws/wss stands for http/https; any other value is taken as is.
        scheme = _WEBSOCKET_SCHEMES.get(proto.lower(), proto)
    if (scheme == "http" and port == ":80") or (scheme == "https" and port == ":443"):
        port = ""
    return scheme + "://" + host + port + ex.target.decode("utf-8", "surrogateescape")


class RedirectSchemeHandler(Handler):
    __slots__ = ("permanent", "pieces")

    def __init__(self, name: str, replacement: str, permanent: bool) -> None:
        super().__init__(name)
        self.pieces = _URL.template(replacement)
        self.permanent = permanent

    def on_request(self, ex: Exchange) -> Answer | None:
        old = client_url(ex)
        new = _URL.replace_all(old, self.pieces)
        if new == old:
            return None
        return redirect_answer(ex, new, self.permanent)


@register("redirect_scheme")
def build(name: str, config: RedirectScheme, context: BuildContext) -> Handler:
    if not config.scheme:
        raise BuildError("you must provide a target scheme", "scheme")
    if config.port and not (config.port.isdigit() and 0 < int(config.port) < 65536):
        raise BuildError(f"invalid port {config.port!r}", "port")
    port = ""
    default = (config.scheme == "http" and config.port == "80") or (
        config.scheme == "https" and config.port == "443"
    )
    if config.port and not default:
        port = ":" + config.port
    return RedirectSchemeHandler(name, config.scheme + "://${2}" + port + "${4}", config.permanent)
