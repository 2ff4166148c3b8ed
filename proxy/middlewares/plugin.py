"""plugin: private middlewares written in Python (Traefik's local plugins).

Static configuration declares each plugin, ``experimental.localPlugins.NAME.moduleName``:
an importable module name (``my_company.auth``) or the path of a ``.py`` file
(relative to the current directory, as Traefik resolves paths). A middleware
``http.middlewares.M.plugin.NAME.{options}`` uses plugin NAME with those options.
The interface a plugin implements is :mod:`proxy.middlewares.plugin_api`.

Everything that can go wrong with a plugin before it serves (it is not
declared, does not import, lacks ``new``, refuses its options) is a
``BuildError`` naming the key, so the configuration update is refused and the
running proxy keeps its previous snapshot. At request time the plugin's
handler runs inside :class:`PluginAdapter`, which turns an exception of a hook
into a logged 500 for that request: a plugin bug never reaches the engine.

A module is loaded once per process, at the first build that uses it (off the
hot path); a load that failed is tried again by the next build.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.config.load import ConfigError, decode_struct
from proxy.http.exchange import FRAME_LENGTH
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BodyFilter, BuildContext, BuildError, Handler, Pending
from proxy.middlewares.plugin_api import internal_error

if TYPE_CHECKING:
    from proxy.config.static import Experimental
    from proxy.http.exchange import Exchange
    from proxy.middlewares.base import ResponseHead

log = logging.getLogger("turnout")

_loaded: dict[str, ModuleType] = {}  # moduleName as configured (a file: its absolute path)


def load_module(module_name: str, plugin: str) -> ModuleType:
    """Import a plugin's module; BuildError (key ``plugin``) when it cannot be imported."""
    is_file = module_name.endswith(".py") or "/" in module_name or os.sep in module_name
    key = os.path.abspath(module_name) if is_file else module_name
    module = _loaded.get(key)
    if module is not None:
        return module
    try:
        module = _import_file(key) if is_file else importlib.import_module(module_name)
    except BuildError:
        raise
    except (Exception, SystemExit) as error:
        raise BuildError(f"cannot import {module_name!r}: {_describe(error)}", plugin) from None
    _loaded[key] = module
    return module


def _import_file(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file {path}")
    # A name of its own in sys.modules: msgspec and typing resolve a module's
    # annotations through it.
    name = "_turnout_plugin_" + re.sub(r"\W", "_", path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _describe(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} (line {error.lineno})"
    return f"{type(error).__name__}: {error}"


def decode_options(raw: object, options_type: Any, plugin: str) -> Any:
    """The middleware's options as the plugin's ``Options``; BuildError naming the key."""
    if options_type is None:
        if isinstance(raw, dict) and raw:
            first = next(iter(raw))
            raise BuildError(
                f"unknown key; plugin {plugin!r} takes no options", f"{plugin}.{first}"
            )
        return None
    try:
        return decode_struct(raw if raw is not None else {}, "", options_type)
    except ConfigError as error:
        first, *others = error.issues
        message = first.message
        if others:
            message += f" (and {len(others)} more: {', '.join(i.path for i in others)})"
        raise BuildError(message, _join(plugin, first.path)) from None


def _join(plugin: str, path: str) -> str:
    if not path:
        return plugin
    return f"{plugin}{path}" if path.startswith("[") else f"{plugin}.{path}"


_MSGSPEC_PATH = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


class _Replace(BodyFilter):
    """Drops the body being sent and sends ``body`` instead."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def feed(self, data: bytes) -> bytes:
        return b""

    def finish(self) -> bytes:
        body, self.body = self.body, b""
        return body


class PluginAdapter(Handler):
    """Runs a plugin's handler; an exception of a hook is logged and becomes a 500.

    One subclass per combination of hooks (``adapter_for``) keeps the chain's
    "only call handlers that override a hook" rule: a plugin without
    ``on_response`` costs nothing on responses.
    """

    __slots__ = ("inner",)

    def __init__(self, name: str, inner: Handler) -> None:
        super().__init__(name)
        self.inner = inner

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        try:
            verdict = self.inner.on_request(ex)
        except Exception:
            log.exception("plugin middleware %s: on_request failed; answering 500", self.name)
            return internal_error()
        if verdict is None or isinstance(verdict, (Answer, Pending)):
            return verdict
        log.error(
            "plugin middleware %s: on_request returned %r, not None, an Answer or PENDING; "
            "answering 500",
            self.name,
            verdict,
        )
        return internal_error()

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        sniff = head.sniff
        try:
            self.inner.on_response(ex, head)
        except Exception:
            log.exception("plugin middleware %s: on_response failed; answering 500", self.name)
            error = internal_error()
            head.status = error.status
            head.lines = [name + b": " + value + b"\r\n" for name, value in error.headers]
            head.body_filter = _Replace(error.body)
            head.sniff = None
            return
        if head.sniff is not None and head.sniff is not sniff:
            head.sniff = self._guarded_sniff(ex, head.sniff)

    def _guarded_sniff(
        self, ex: Exchange, sniff: Callable[[ResponseHead, bytes], None]
    ) -> Callable[[ResponseHead, bytes], None]:
        """The plugin's ``head.sniff``, its exception turned into a 500 like the other hooks'."""

        def guarded(head: ResponseHead, first: bytes) -> None:
            try:
                sniff(head, first)
            except Exception:
                log.exception("plugin middleware %s: sniff failed; answering 500", self.name)
                error = internal_error()
                head.status = error.status
                lines = [name + b": " + value + b"\r\n" for name, value in error.headers]
                if ex.framing == FRAME_LENGTH:
                    # The framing is decided and the engine passes a body of known
                    # length as it is: keep the length, and that body.
                    length = head.get("Content-Length")
                    if length is not None:
                        lines.append(b"Content-Length: " + length.encode() + b"\r\n")
                else:
                    ex.body_filter = _Replace(error.body)
                head.lines = lines

        return guarded

    def on_upstream_error(self, ex: Exchange, error: Exception) -> bool:
        try:
            return bool(self.inner.on_upstream_error(ex, error))
        except Exception:
            log.exception("plugin middleware %s: on_upstream_error failed", self.name)
            return False  # the engine answers the backend failure as usual

    def on_done(self, ex: Exchange, status: int) -> None:
        try:
            self.inner.on_done(ex, status)
        except Exception:
            log.exception("plugin middleware %s: on_done failed", self.name)

    def close(self) -> Awaitable[None] | None:
        # Errors are logged by the caller (proxy.middlewares.retired).
        return self.inner.close()


_ADAPTERS: dict[tuple[bool, bool, bool, bool, bool], type[PluginAdapter]] = {}


def adapter_for(name: str, inner: Handler) -> PluginAdapter:
    hooks = (
        inner.has_request,
        inner.has_response,
        inner.has_done,
        inner.has_upstream_error,
        inner.has_close,
    )
    cls = _ADAPTERS.get(hooks)
    if cls is None:
        cls = type("PluginAdapter", (PluginAdapter,), {"__slots__": ()})
        # Set after creation: __init_subclass__ sees every hook overridden.
        (
            cls.has_request,
            cls.has_response,
            cls.has_done,
            cls.has_upstream_error,
            cls.has_close,
        ) = hooks
        _ADAPTERS[hooks] = cls
    return cls(name, inner)


def _undeclared(plugin: str, experimental: Experimental | None) -> BuildError:
    if experimental is not None and plugin in experimental.plugins:
        return BuildError(
            f"plugin {plugin!r} is declared in experimental.plugins (Traefik's catalogue of Go "
            "plugins), which Turnout does not load; declare a Python module in "
            f"experimental.localPlugins.{plugin}.moduleName",
            plugin,
        )
    return BuildError(
        f"unknown plugin {plugin!r}: not declared in the static configuration "
        f"(experimental.localPlugins.{plugin}.moduleName)",
        plugin,
    )


@register("plugin")
def build(name: str, config: dict[str, Any], context: BuildContext) -> Handler:
    if len(config) != 1:
        found = f"; found {', '.join(map(repr, config))}" if config else ""
        raise BuildError(f"a plugin middleware names exactly one plugin{found}")
    ((plugin, raw_options),) = config.items()
    static = context.extra.get("static")
    experimental: Experimental | None = getattr(static, "experimental", None)
    descriptor = experimental.local_plugins.get(plugin) if experimental is not None else None
    if descriptor is None:
        raise _undeclared(plugin, experimental)
    if not descriptor.module_name:
        raise BuildError(f"experimental.localPlugins.{plugin}.moduleName is empty", plugin)
    module = load_module(descriptor.module_name, plugin)
    factory = getattr(module, "new", None)
    if not callable(factory):
        raise BuildError(
            f"module {descriptor.module_name!r} is not a Turnout plugin: it defines no "
            "'new(name, options)' factory",
            plugin,
        )
    options_type = getattr(module, "Options", None)
    if options_type is not None and not (
        isinstance(options_type, type) and issubclass(options_type, msgspec.Struct)
    ):
        raise BuildError(
            f"module {descriptor.module_name!r}: Options must be a msgspec.Struct subclass",
            plugin,
        )
    options = decode_options(raw_options, options_type, plugin)
    try:
        inner = factory(name, options)
    except BuildError as error:
        raise BuildError(str(error), _join(plugin, error.key)) from None
    except msgspec.ValidationError as error:
        match = _MSGSPEC_PATH.match(str(error))
        if match is None:
            raise BuildError(str(error), plugin) from None
        path = match.group("path").lstrip(".")
        raise BuildError(match.group("message"), _join(plugin, path)) from None
    except Exception as error:
        raise BuildError(f"refused its options: {_describe(error)}", plugin) from None
    if not isinstance(inner, Handler):
        raise BuildError(
            f"module {descriptor.module_name!r}: new() returned {type(inner).__name__}, "
            "not a Handler",
            plugin,
        )
    return adapter_for(name, inner)
