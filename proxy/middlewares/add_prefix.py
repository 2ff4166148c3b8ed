"""addPrefix: prepend a prefix to the request path (Traefik's addprefix)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config.dynamic import AddPrefix
from proxy.middlewares import register
from proxy.middlewares.base import BuildContext, BuildError, Handler

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange


class AddPrefixHandler(Handler):
    __slots__ = ("prefix", "raw_prefix")

    def __init__(self, name: str, prefix: str) -> None:
        super().__init__(name)
        self.prefix = prefix
        self.raw_prefix = prefix.encode("utf-8")

    def on_request(self, ex: Exchange) -> None:
        # Traefik prefixes both the path and its raw form (RawPath).
        ex.set_path(self.prefix + ex.path, self.raw_prefix + ex.raw_path)


@register("add_prefix")
def build(name: str, config: AddPrefix, context: BuildContext) -> Handler:
    if not config.prefix:
        raise BuildError("prefix must not be empty", "prefix")
    if not config.prefix.startswith("/"):
        raise BuildError("prefix must start with '/'", "prefix")
    return AddPrefixHandler(name, config.prefix)
