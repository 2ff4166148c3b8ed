"""redirectRegex: redirect when a regexp matches the request URL (Traefik's redirect).

The URL matched is ``http://`` + Host + the request target, as Traefik builds
it (``rawURL``); the replacement is a Go template (``$1``, ``${name}``). A URL
the replacement leaves unchanged is not redirected. Status: 302, or 307 for
any method but GET; with ``permanent``, 301 or 308.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy.config.dynamic import RedirectRegex
from proxy.http.headers import has_ctl
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, BuildError, Handler
from proxy.middlewares.goregexp import GoRegexp, RegexpError

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

_TEXT_PLAIN = (b"Content-Type", b"text/plain; charset=utf-8")
# (permanent, GET?) -> status: only GET may be turned into a GET by the client.
_STATUS = {(False, True): 302, (False, False): 307, (True, True): 301, (True, False): 308}


def redirect_answer(ex: Exchange, location: str, permanent: bool) -> Answer:
    """Traefik's moveHandler: the status depends on the method, the body is its text."""
    status = _STATUS[permanent, ex.method == "GET"]
    raw = location.encode("utf-8", "surrogateescape")
    if has_ctl(raw):
        # Go's url.Parse refuses it and Traefik answers with its error handler.
        return Answer(500, [_TEXT_PLAIN], b"Internal Server Error")
    return Answer(status, [(b"Location", raw), _TEXT_PLAIN], HTTPStatus(status).phrase.encode())


def request_url(ex: Exchange) -> str:
    host = (ex.host_header or b"").decode("latin-1")
    return "http://" + host + ex.target.decode("utf-8", "surrogateescape")


class RedirectRegexHandler(Handler):
    __slots__ = ("permanent", "pieces", "regexp")

    def __init__(self, name: str, regexp: GoRegexp, replacement: str, permanent: bool) -> None:
        super().__init__(name)
        self.regexp = regexp
        self.pieces = regexp.template(replacement)
        self.permanent = permanent

    def on_request(self, ex: Exchange) -> Answer | None:
        old = request_url(ex)
        if not self.regexp.search(old):
            return None
        new = self.regexp.replace_all(old, self.pieces)
        if new == old:
            return None
        return redirect_answer(ex, new, self.permanent)


@register("redirect_regex")
def build(name: str, config: RedirectRegex, context: BuildContext) -> Handler:
    try:
        regexp = GoRegexp(config.regex)
    except RegexpError as error:
        raise BuildError(f"invalid regexp {config.regex!r}: {error}", "regex") from None
    return RedirectRegexHandler(name, regexp, config.replacement, config.permanent)
