"""Private plugins through a real turnout: the example plugin, options, refusals, failing hooks.

Plugins are declared in the static configuration
(``experimental.localPlugins.NAME.moduleName``), as a file path (relative to
the current directory, which the harness sets to the repository) or as an
importable module name, and used by ``http.middlewares.M.plugin.NAME``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Backend, Received, Turnout, get, wait_until
from tests.middlewares.support import (  # noqa: F401  (fixtures)
    app_backend_fixture,
    last,
    proxy_factory_fixture,
    router,
    service,
)

# A plugin written for these tests: each path exercises one way a plugin can fail.
FAULTY = """
from __future__ import annotations

import asyncio

from proxy.middlewares.plugin_api import (
    Answer, Exchange, PluginHandler, PluginOptions, ResponseHead, answer_from,
)


class Options(PluginOptions):
    fail_build: bool = False
    delay_ms: int = 10


class Faulty(PluginHandler):
    __slots__ = ("delay",)

    def __init__(self, name: str, options: Options) -> None:
        super().__init__(name)
        self.delay = options.delay_ms / 1000

    def on_request(self, ex: Exchange):
        if ex.path == "/raise-request":
            raise RuntimeError("boom in on_request")
        if ex.path == "/bad-verdict":
            return 42
        if ex.path.startswith("/async"):
            return self.later(ex, self.work(ex))
        return None

    async def work(self, ex: Exchange) -> Answer | None:
        await asyncio.sleep(self.delay)
        if ex.path == "/async-raise":
            raise LookupError("boom in async work")
        if ex.path == "/async-deny":
            return Answer(403, [(b"X-Denied-By", b"faulty")], b"no")
        ex.set_header("X-Async", "done")
        return None

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if ex.path == "/raise-response":
            raise RuntimeError("boom in on_response")
        if ex.path == "/raise-sniff":
            head.sniff = self.bad_sniff
        if ex.path == "/sniff":
            head.sniff = self.sniff
        if ex.path == "/replace":
            head.replace()
            asyncio.get_running_loop().call_soon(
                answer_from, ex, self, Answer(203, [(b"X-Replaced", b"yes")], b"replaced")
            )
        head.set("X-Faulty", "seen")

    def sniff(self, head: ResponseHead, first: bytes) -> None:
        head.set("X-First", first[:2])

    def bad_sniff(self, head: ResponseHead, first: bytes) -> None:
        raise RuntimeError("boom in sniff")

    def on_done(self, ex: Exchange, status: int) -> None:
        if ex.path == "/raise-done":
            raise RuntimeError("boom in on_done")


def new(name: str, options: Options) -> Faulty:
    if options.fail_build:
        raise ValueError("the factory said no")
    return Faulty(name, options)
"""

BROKEN = "def new(name, options:\n"  # a syntax error
NO_INTERFACE = "VALUE = 1\n"
KEYS = {"ci": "ci-secret-1", "alice": "alice-secret-2"}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("plugins")
    (directory / "faulty.py").write_text(FAULTY)
    (directory / "broken.py").write_text(BROKEN)
    (directory / "no_interface.py").write_text(NO_INTERFACE)
    return directory


def declarations(plugin_dir: Path) -> str:
    return (
        # The example plugin as a file relative to the current directory, and as a module.
        '[experimental.localPlugins.apikey]\nmoduleName = "examples/plugins/api_key.py"\n'
        '[experimental.localPlugins.apikeymod]\nmoduleName = "examples.plugins.api_key"\n'
        f'[experimental.localPlugins.faulty]\nmoduleName = "{plugin_dir / "faulty.py"}"\n'
        f'[experimental.localPlugins.broken]\nmoduleName = "{plugin_dir / "broken.py"}"\n'
        "[experimental.localPlugins.bare]\n"
        f'moduleName = "{plugin_dir / "no_interface.py"}"\n'
        '[experimental.localPlugins.missing]\nmoduleName = "no_such_company.auth"\n'
        '[experimental.plugins.demo]\nmoduleName = "github.com/traefik/plugindemo"\n'
        'version = "v0.2.1"\n'
    )


MIDDLEWARES = """
[http.middlewares.keys.plugin.apikey.keys]
ci = "ci-secret-1"
alice = "alice-secret-2"

# Option keys are matched case-insensitively, as Turnout's own.
[http.middlewares.token.plugin.apikeymod]
HEADER = "X-Token"
clientheader = ""
keys = { ci = "ci-secret-1" }
"""

FAULTY_MIDDLEWARE = """
[http.middlewares.faulty.plugin.faulty]
delayMs = "20"
"""


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., Turnout], app_backend: Backend, plugin_dir: Path) -> Turnout:
    routers = router("keys", ["keys"]) + router("token", ["token"])
    return proxy_factory(
        MIDDLEWARES + routers + service(app_backend.url),
        static_extra=declarations(plugin_dir),
    )


async def chunked(received: Received) -> bytes:
    if received.target == "/async":
        assert received.header("X-Async") == "done"  # set by the plugin's asynchronous work
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


@pytest.fixture(scope="module")
def faulty_proxy(tmp_path_factory: pytest.TempPathFactory, plugin_dir: Path) -> Iterator[Turnout]:
    """A turnout whose plugin fails on purpose: its log holds the plugin's tracebacks."""
    # Chunked answers: a response of known length is passed on by the engine as it is.
    backend = Backend(responder=chunked).start()
    dynamic = FAULTY_MIDDLEWARE + router("faulty", ["faulty"]) + router("open", [])
    running = Turnout(
        tmp_path_factory.mktemp("turnout"),
        dynamic + service(backend.url),
        static_extra=declarations(plugin_dir),
    ).start()
    yield running
    backend.stop()
    running.signal(signal.SIGTERM)
    assert running.wait(15) == 0, running.stderr()
    log = running.stderr()
    # Every traceback is one the plugin adapter logged; none escaped to the event loop.
    assert "Exception in callback" not in log, log
    assert log.count("Traceback") == len(re.findall(r"plugin middleware \S+: [^\n]*failed", log))


# -- the example plugin -----------------------------------------------------------


def test_example_plugin_refuses_a_request_without_a_valid_key(
    proxy: Turnout, app_backend: Backend
) -> None:
    before = len(app_backend.requests)
    for headers in ("", "X-Api-Key: wrong-secret\r\n", "X-Api-Key: ci-secret-\r\n"):
        response = get(proxy.port, host="keys.test", headers=headers)
        assert response.status == 401
        assert response.header("WWW-Authenticate") == "ApiKey"
        assert response.body == b'{"error":"a valid API key is required"}'
        assert response.header("Cache-Control") == "private"
    assert len(app_backend.requests) == before


def test_example_plugin_passes_a_known_client_without_its_key(
    proxy: Turnout, app_backend: Backend
) -> None:
    for client, key in KEYS.items():
        response = get(proxy.port, host="keys.test", headers=f"X-Api-Key: {key}\r\n")
        assert response.status == 200
        assert response.body == b"ok"
        assert response.header("Cache-Control") == "private"  # set by its on_response
        received = last(app_backend)
        assert received.header("X-Api-Key") is None
        assert received.header_all("X-Api-Client") == [client]


def test_example_plugin_as_a_module_with_case_insensitive_options(
    proxy: Turnout, app_backend: Backend
) -> None:
    assert get(proxy.port, host="token.test", headers="X-Api-Key: ci-secret-1\r\n").status == 401
    response = get(proxy.port, host="token.test", headers="X-Token: ci-secret-1\r\n")
    assert response.status == 200
    received = last(app_backend)
    assert received.header("X-Token") is None
    assert received.header("X-Api-Client") is None  # clientHeader = "" turns it off


# -- hooks with the powers of a built-in middleware, and their failures -------------


def test_hooks_run_and_asynchronous_work_resumes_or_answers(faulty_proxy: Turnout) -> None:
    response = get(faulty_proxy.port, "/plain", host="faulty.test")
    assert response.status == 200
    assert response.header("X-Faulty") == "seen"
    response = get(faulty_proxy.port, "/async", host="faulty.test")
    assert (response.status, response.body) == (200, b"ok")  # the backend checked X-Async
    response = get(faulty_proxy.port, "/async-deny", host="faulty.test")
    assert (response.status, response.body) == (403, b"no")
    assert response.header("X-Denied-By") == "faulty"
    # As a built-in's answer: it passes the on_response of the handlers before it only.
    assert response.header("X-Faulty") is None
    response = get(faulty_proxy.port, "/sniff", host="faulty.test")
    assert (response.status, response.header("X-First"), response.body) == (200, "ok", b"ok")
    response = get(faulty_proxy.port, "/replace", host="faulty.test")
    assert (response.status, response.body) == (203, b"replaced")
    assert response.header("X-Replaced") == "yes"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/raise-request", "on_request failed"),
        ("/raise-response", "on_response failed"),
        ("/bad-verdict", "on_request returned 42"),
        ("/async-raise", "asynchronous work failed"),
        ("/raise-sniff", "sniff failed"),
    ],
)
def test_a_failing_hook_answers_500_and_turnout_keeps_serving(
    faulty_proxy: Turnout, path: str, logged: str
) -> None:
    response = get(faulty_proxy.port, path, host="faulty.test")
    assert response.status == 500
    assert response.body == b"Internal Server Error"
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert wait_until(
        lambda: f"plugin middleware faulty@file: {logged}" in faulty_proxy.stderr(), 5
    )
    assert faulty_proxy.process is not None and faulty_proxy.process.poll() is None
    # The next request on the same router, and on another one: served.
    assert get(faulty_proxy.port, "/after", host="faulty.test").status == 200
    assert get(faulty_proxy.port, host="open.test").status == 200


def test_a_failing_on_done_is_logged_only(faulty_proxy: Turnout) -> None:
    assert get(faulty_proxy.port, "/raise-done", host="faulty.test").status == 200
    assert wait_until(lambda: "boom in on_done" in faulty_proxy.stderr(), 5)
    assert get(faulty_proxy.port, "/after", host="faulty.test").status == 200


def test_the_exception_and_its_traceback_are_in_the_log(faulty_proxy: Turnout) -> None:
    get(faulty_proxy.port, "/raise-request", host="faulty.test")
    assert wait_until(lambda: "RuntimeError: boom in on_request" in faulty_proxy.stderr(), 5)
    assert "Traceback" in faulty_proxy.stderr()


# -- configuration errors -----------------------------------------------------------


def check(tmp_path: Path, plugin_dir: Path, dynamic: str) -> tuple[int, str]:
    """``turnout check`` as a process, with the plugins declared; "FILE: key: message" lines."""
    dynamic_path = tmp_path / "dynamic.toml"
    dynamic_path.write_text(dynamic)
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        f'[providers.file]\nfilename = "{dynamic_path}"\n' + declarations(plugin_dir)
    )
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-c", str(static)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, re.sub(r"dynamic\.toml:\d+: ", "dynamic.toml: ", done.stderr)


def one_middleware(options: str) -> str:
    return (
        router("r", ["m"])
        + service("http://127.0.0.1:9")
        + "[http.middlewares.m.plugin]\n"
        + options
    )


GOOD = 'apikey = { keys = { ci = "ci-secret-1" } }\n'


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            'apikey = { kees = { ci = "ci-secret-1" } }\n',
            "http.middlewares.m.plugin.apikey.kees: unknown key; did you mean 'keys'?",
        ),
        (
            "apikey = { keys = 5 }\n",
            "http.middlewares.m.plugin.apikey.keys: expected a table of names, got 5",
        ),
        (
            'apikey = { keys = { ci = "short" } }\n',
            "http.middlewares.m.plugin.apikey.keys.ci: a key needs at least 8 characters",
        ),
        (
            "apikey = {}\n",
            "http.middlewares.m.plugin.apikey.keys: at least one client key is required",
        ),
        (
            'faulty = { delayMs = "soon" }\n',
            "http.middlewares.m.plugin.faulty.delayMs: expected an integer, got 'soon'",
        ),
        (
            "faulty = { failBuild = true }\n",
            "http.middlewares.m.plugin.faulty: refused its options: "
            "ValueError: the factory said no",
        ),
        (
            "nope = {}\n",
            "http.middlewares.m.plugin.nope: unknown plugin 'nope': not declared in the "
            "static configuration (experimental.localPlugins.nope.moduleName)",
        ),
        (
            "demo = {}\n",
            "http.middlewares.m.plugin.demo: plugin 'demo' is declared in experimental.plugins",
        ),
        (
            "missing = {}\n",
            "http.middlewares.m.plugin.missing: cannot import 'no_such_company.auth': "
            "ModuleNotFoundError: No module named 'no_such_company'",
        ),
        (
            "bare = { any = 1 }\n",
            "is not a Turnout plugin: it defines no 'new(name, options)' factory",
        ),
        (
            "apikey = {}\nfaulty = {}\n",
            "http.middlewares.m.plugin: a plugin middleware names exactly one plugin; "
            "found 'apikey', 'faulty'",
        ),
    ],
)
def test_check_names_the_key_of_a_refused_plugin(
    tmp_path: Path, plugin_dir: Path, options: str, expected: str
) -> None:
    code, output = check(tmp_path, plugin_dir, one_middleware(options))
    assert code == 1, output
    assert expected in output, output


def test_check_reports_an_import_failure_with_its_cause(tmp_path: Path, plugin_dir: Path) -> None:
    code, output = check(tmp_path, plugin_dir, one_middleware("broken = {}\n"))
    assert code == 1
    assert (
        f"dynamic.toml: http.middlewares.m.plugin.broken: cannot import "
        f"'{plugin_dir / 'broken.py'}': SyntaxError: "
    ) in output, output


def test_check_accepts_good_plugins_and_warns_only_about_the_catalogue(
    tmp_path: Path, plugin_dir: Path
) -> None:
    code, output = check(tmp_path, plugin_dir, one_middleware(GOOD))
    assert code == 0, output
    assert "localPlugins" not in output
    assert "experimental.plugins: not supported by Turnout yet" in output


# -- a refused update leaves the running proxy as it was ----------------------------


def replace_file(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.mark.parametrize("plugin", ["broken", "missing", "faulty"])
def test_a_plugin_refused_on_reload_keeps_the_previous_routing(
    proxy_factory: Callable[..., Turnout], app_backend: Backend, plugin_dir: Path, plugin: str
) -> None:
    dynamic = router("keys", ["keys"]) + service(app_backend.url) + MIDDLEWARES.split("#")[0]
    running = proxy_factory(dynamic, static_extra=declarations(plugin_dir))
    good = "X-Api-Key: ci-secret-1\r\n"
    assert get(running.port, host="keys.test", headers=good).status == 200
    options = "failBuild = true" if plugin == "faulty" else ""
    replace_file(
        running.dynamic_path,
        dynamic.replace('"keys"]', '"keys", "extra"]')
        + router("new", [])
        + f"[http.middlewares.extra.plugin.{plugin}]\n{options}\n",
    )
    where = f"http.middlewares.extra.plugin.{plugin}: "
    assert wait_until(lambda: where in running.stderr(), 5), running.stderr()
    assert running.process is not None and running.process.poll() is None
    # The update was refused whole: the old chain still answers, the new router is not there.
    assert get(running.port, host="keys.test", headers=good).status == 200
    assert get(running.port, host="keys.test").status == 401
    assert get(running.port, host="new.test").status == 404
