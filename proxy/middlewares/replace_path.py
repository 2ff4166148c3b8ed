"""replacePath: replace the whole path; the original goes upstream in X-Replaced-Path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config.dynamic import ReplacePath
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, BuildError, Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange


class ReplacePathHandler(Handler):
    __slots__ = ("path",)

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path

    def on_request(self, ex: Exchange) -> None:
        # Traefik sends the original path as it was escaped on the wire.
        ex.set_header("X-Replaced-Path", ex.raw_path)
        ex.set_path(self.path)


@register("replace_path")
def build(name: str, config: ReplacePath, context: BuildContext) -> Handler:
    if not config.path.startswith("/"):
        raise BuildError("path must start with '/'", "path")
    return ReplacePathHandler(name, config.path)
