"""An example Turnout plugin: require an API key in a request header.

Static configuration (either form)::

    [experimental.localPlugins.apikey]
    moduleName = "examples/plugins/api_key.py"     # a file, relative to the current directory
    # moduleName = "examples.plugins.api_key"      # or an importable module

Dynamic configuration::

    [http.middlewares.keys.plugin.apikey]
    header = "X-Api-Key"                 # where the client puts its key (the default)
    clientHeader = "X-Api-Client"        # tells the backend who called (the default; "" = no)
    [http.middlewares.keys.plugin.apikey.keys]
    ci = "0b3f9c..."                     # client name = key
    alice = "77d1e0..."

A request without a known key gets 401; with one it goes on without the key
header (the backend never sees a key) and with ``clientHeader`` naming the client.
"""

from __future__ import annotations

import hmac

from proxy.middlewares.plugin_api import (
    Answer,
    BuildError,
    Exchange,
    Handler,
    PluginOptions,
    ResponseHead,
)


class Options(PluginOptions):
    keys: dict[str, str] = {}
    header: str = "X-Api-Key"
    client_header: str = "X-Api-Client"


class ApiKey(Handler):
    __slots__ = ("client_header", "header", "keys", "lower_header")

    def __init__(self, name: str, options: Options) -> None:
        super().__init__(name)
        self.header = options.header
        self.lower_header = options.header.lower()  # ex.header() takes lower-case names
        self.client_header = options.client_header
        self.keys = [(client, key.encode()) for client, key in options.keys.items()]

    def on_request(self, ex: Exchange) -> Answer | None:
        given = ex.header(self.lower_header)
        client = self.client_for(given[0].encode("utf-8", "surrogateescape")) if given else None
        if client is None:
            return Answer(
                401,
                [
                    (b"Content-Type", b"application/json"),
                    (b"WWW-Authenticate", b"ApiKey"),
                    (b"Cache-Control", b"private"),
                ],
                b'{"error":"a valid API key is required"}',
            )
        ex.remove_header(self.header)
        if self.client_header:
            ex.set_header(self.client_header, client)
        return None

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        # The backend's answers depend on who asked. (on_response does not see
        # this handler's own 401: an answer passes the handlers before it only.)
        head.set("Cache-Control", "private")

    def client_for(self, given: bytes) -> str | None:
        found = None
        for client, key in self.keys:  # no early exit: every key is compared
            if hmac.compare_digest(given, key):
                found = client
        return found


def new(name: str, options: Options) -> Handler:
    if not options.keys:
        raise BuildError("at least one client key is required", "keys")
    for client, key in options.keys.items():
        if len(key) < 8:
            raise BuildError("a key needs at least 8 characters", f"keys.{client}")
    if not options.header:
        raise BuildError("must not be empty", "header")
    return ApiKey(name, options)
