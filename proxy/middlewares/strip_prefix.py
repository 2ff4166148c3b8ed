"""stripPrefix: remove the first matching prefix from the path (Traefik's stripprefix).

The removed prefix goes upstream in X-Forwarded-Prefix, so a backend can build
its own links; the path left always starts with "/".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config.dynamic import StripPrefix
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, BuildError, Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange


class StripPrefixHandler(Handler):
    __slots__ = ("prefixes",)

    def __init__(self, name: str, prefixes: tuple[str, ...]) -> None:
        super().__init__(name)
        self.prefixes = prefixes

    def on_request(self, ex: Exchange) -> None:
        path = ex.path
        if not path.startswith(self.prefixes):
            return  # one call for the common case, no prefix at all
        for prefix in self.prefixes:
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                ex.set_path(rest if rest.startswith("/") else "/" + rest)
                ex.set_header("X-Forwarded-Prefix", prefix)
                return


@register("strip_prefix")
def build(name: str, config: StripPrefix, context: BuildContext) -> Handler:
    for index, prefix in enumerate(config.prefixes):
        if not prefix:
            raise BuildError("a prefix must not be empty", f"prefixes[{index}]")
    return StripPrefixHandler(name, tuple(config.prefixes))
