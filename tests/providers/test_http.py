"""The http provider: polling an endpoint, ETag / 304, headers, failures."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from proxy.config.load import ConfigError
from proxy.config.static import HTTPProvider as HTTPConfig
from proxy.providers.base import ProviderUnavailable
from proxy.providers.http import HTTPProvider

pytestmark = pytest.mark.timeout(30)


class ConfigServer:
    """Serves ``self.body`` with an ETag; records each request's headers and status."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.status = 200
        self.log: list[tuple[dict[str, str], int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag = '"' + hashlib.sha1(outer.body).hexdigest() + '"'
                headers = {k.lower(): v for k, v in self.headers.items()}
                if outer.status != 200:
                    status, body = outer.status, b"oops"
                elif headers.get("if-none-match") == etag:
                    status, body = 304, b""
                else:
                    status, body = 200, outer.body
                outer.log.append((headers, status))
                self.send_response(status)
                self.send_header("ETag", etag)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/config"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, config: dict) -> None:
        self.body = json.dumps(config).encode()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def config_server():  # type: ignore[no-untyped-def]
    server = ConfigServer()
    yield server
    server.stop()


def routing(host: str) -> dict:
    return {"http": {"routers": {"r": {"rule": f"Host(`{host}`)", "service": "whoami@internal"}}}}


async def test_fetch_sends_the_headers_and_decodes_json_or_yaml(config_server) -> None:
    config_server.set(routing("a.example"))
    provider = HTTPProvider(HTTPConfig(endpoint=config_server.url, headers={"X-Token": "abc"}))
    config = await provider.fetch()
    assert config.http.routers["r"].rule == "Host(`a.example`)"
    assert config_server.log[-1][0]["x-token"] == "abc"
    config_server.body = b"http:\n  routers:\n    y:\n      rule: Host(`y`)\n      service: s\n"
    assert set((await provider.fetch()).http.routers) == {"y"}


async def test_polling_honours_etag_and_follows_changes(config_server, recorder) -> None:
    config_server.set(routing("a.example"))
    provider = HTTPProvider(HTTPConfig(endpoint=config_server.url, poll_interval=0.05))
    await provider.fetch()
    task = asyncio.create_task(provider.watch(recorder))
    try:
        await asyncio.sleep(0.3)
        assert recorder.updates == []  # unchanged: nothing handed on
        assert {status for _, status in config_server.log[1:]} == {304}
        config_server.set(routing("b.example"))
        await recorder.wait_for(lambda: len(recorder.updates) == 1, 2)
        assert recorder.routers()["r"].rule == "Host(`b.example`)"
        config_server.body = b'{"http": {"routers": {"r": {"rul": "x"}}}}'
        await recorder.wait_for(lambda: isinstance(recorder.updates[-1], ConfigError), 2)
        config_server.status = 503
        await recorder.wait_for(lambda: recorder.unreachable_messages, 2)
        assert "answered 503" in recorder.unreachable_messages[-1]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_body_size_limit_and_unreachable_endpoint(config_server) -> None:
    config_server.set(routing("a" * 1000))
    provider = HTTPProvider(HTTPConfig(endpoint=config_server.url, max_response_body_size=100))
    with pytest.raises(ProviderUnavailable, match="over 100 bytes"):
        await provider.fetch()
    from tests.runtime.support import free_port

    dead = HTTPProvider(HTTPConfig(endpoint=f"http://127.0.0.1:{free_port()}/"))
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        await dead.fetch()
