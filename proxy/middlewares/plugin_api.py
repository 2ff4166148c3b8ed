"""What a private plugin imports: the whole interface between Turnout and a plugin.

A plugin is a Python module declared in the static configuration::

    [experimental.localPlugins.apikey]
    moduleName = "my_company.apikey"        # an importable module, or
    # moduleName = "plugins/apikey.py"      # a .py file (relative: to the current directory)

and used by middlewares of the dynamic configuration::

    [http.middlewares.keys.plugin.apikey]
    header = "X-Api-Key"
    keys = ["s3cret"]

The module defines:

``Options`` (optional)
    A ``msgspec.Struct`` subclass: the middleware's options are decoded into it
    as Turnout decodes its own configuration (keys matched case-insensitively,
    ``"42"`` read as 42 where an int is expected, unknown keys refused). Subclass
    :class:`PluginOptions` to get camelCase keys and unknown-key refusal. A
    module without ``Options`` accepts no options.

``new(name: str, options: Options) -> Handler``
    The factory (a function, or the ``Handler`` subclass itself), called once
    per configuration that changes the middleware's options; ``name`` is the
    middleware's qualified name (``keys@file``). It may refuse the options by
    raising :class:`BuildError` (``BuildError("must not be empty", "keys")``)
    or any other exception: the configuration update is then refused, naming
    the key, and the running proxy keeps its previous configuration.

The ``Handler`` it returns is the one built-in middlewares subclass (see
:mod:`proxy.middlewares.base` for the full contract); override only the hooks
you need:

- ``on_request(ex)`` returns ``None`` (go on), an :class:`Answer` (respond
  now), or :data:`PENDING` after scheduling asynchronous work that ends with
  :func:`resume` or :func:`answer`; :meth:`PluginHandler.later` does that for a
  coroutine. ``ex`` offers ``method``, ``path``, ``raw_query``, ``host``,
  ``client_ip``, ``header(lower_case_name) -> list[str]`` (the name must be
  lower case), ``set_header``,
  ``add_header``, ``remove_header``, ``set_path(path)``, and ``route.router``
  (the router's name). Nothing else of the exchange is a stable interface.
- ``on_response(ex, head)``: change ``head.status`` and the headers
  (``head.get/set/add/remove``), set ``head.body_filter`` to a
  :class:`BodyFilter` that rewrites the body as it streams, set ``head.sniff``
  to see the first body bytes before the head is sent, or call
  ``head.replace()`` and answer later with :func:`answer_from`.
- ``on_upstream_error(ex, error) -> bool``: the backend failed before anything
  was sent; return True to take the exchange over (then :func:`redispatch` or
  :func:`answer_from`).
- ``on_done(ex, status)``: once per exchange, however it ended (0: no response).
- ``close()``: release what the handler opened (clients, timers; open them on
  first use, not in ``new``). Called once, sync or returning an awaitable, when
  a configuration change dropped the handler and no request runs through it
  any more, and at shutdown.

Hooks run on the event loop: they must not block (no blocking I/O, no long
computation; use :meth:`PluginHandler.later` with ``asyncio`` or a thread).
An exception raised by a hook is logged with the plugin's name and the request
is answered 500 (``on_done``: logged only); Turnout keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec

from proxy.config.durations import Duration
from proxy.http.exchange import Exchange
from proxy.middlewares import chain
from proxy.middlewares.base import (
    PENDING,
    Answer,
    BodyFilter,
    BuildError,
    Handler,
    Pending,
    ResponseHead,
)
from proxy.middlewares.chain import answer, redispatch, resume

__all__ = [
    "PENDING",
    "Answer",
    "BodyFilter",
    "BuildError",
    "Duration",
    "Exchange",
    "Handler",
    "Pending",
    "PluginHandler",
    "PluginOptions",
    "ResponseHead",
    "answer",
    "answer_from",
    "internal_error",
    "redispatch",
    "resume",
]

log = logging.getLogger("turnout")


class PluginOptions(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """A convenient base for a plugin's ``Options``: camelCase keys, unknown keys refused."""


def internal_error() -> Answer:
    """The answer given when a plugin fails: 500, as Traefik answers a panicking handler."""
    return Answer(500, [(b"Content-Type", b"text/plain; charset=utf-8")], b"Internal Server Error")


def answer_from(ex: Exchange, handler: Handler, response: Answer) -> None:
    """Answer for ``handler`` after its ``on_response`` called ``head.replace()``.

    The answer passes through the handlers outside ``handler``, as the
    backend's response would have (``proxy.middlewares.chain.answer_from`` for
    a plugin's handler, which the chain holds inside an adapter).
    """
    route = ex.route
    if route is not None and route.chain is not None:
        for held in route.chain.handlers:
            if getattr(held, "inner", None) is handler:
                handler = held
                break
    chain.answer_from(ex, handler, response)


_running: set[asyncio.Future[Any]] = set()  # strong references to the tasks of ``later``


class PluginHandler(Handler):
    """A ``Handler`` with a helper for asynchronous work; subclassing it is optional."""

    __slots__ = ()

    def later(self, ex: Exchange, work: Coroutine[Any, Any, Answer | None]) -> Pending:
        """Run ``work`` and return PENDING: ``return self.later(ex, self.check(ex))``.

        When the coroutine returns None the chain goes on; an Answer is sent; an
        exception is logged and answered 500. If the client left meanwhile, the
        result is dropped.
        """
        task = asyncio.ensure_future(work)
        _running.add(task)
        task.add_done_callback(lambda done: self._finished(ex, done))
        return PENDING

    def _finished(self, ex: Exchange, task: asyncio.Future[Answer | None]) -> None:
        _running.discard(task)
        if task.cancelled():
            answer(ex, internal_error())
            return
        error = task.exception()
        if error is not None:
            log.error(
                "plugin middleware %s: asynchronous work failed",
                self.name,
                exc_info=(type(error), error, error.__traceback__),
            )
            answer(ex, internal_error())
            return
        result = task.result()
        if result is None:
            resume(ex)
        else:
            answer(ex, result)
