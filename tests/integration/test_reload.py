"""The file provider at run time: ``providers.file.{filename, directory, watch}``.

Issue 2, section 3, and the design's snapshot contract: a new configuration is
validated whole and swapped in; a failed build changes nothing, and the
process never crashes on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.integration.harness import dynamic_for, get, ok_response, wait_until


def named(name: str):
    return lambda received: ok_response(name.encode())


def replace_file(path: Path, text: str) -> None:
    """Save the way editors do: write a temporary file and rename it over the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def answered_by(port: int, name: str) -> bool:
    response = get(port)
    return response.status == 200 and response.body == name.encode()


def test_watched_file_change_switches_routing(backend, turnout):
    a, b = backend(responder=named("a")), backend(responder=named("b"))
    proxy = turnout(dynamic_for(a.url))
    assert answered_by(proxy.port, "a")
    replace_file(proxy.dynamic_path, dynamic_for(b.url))
    assert wait_until(lambda: answered_by(proxy.port, "b"), 5), "the change was not applied"
    assert proxy.process.poll() is None


def test_broken_change_keeps_the_previous_routing(backend, turnout):
    a, b = backend(responder=named("a")), backend(responder=named("b"))
    proxy = turnout(dynamic_for(a.url))
    broken = dynamic_for(b.url).replace('rule = "', 'rul = "')
    replace_file(proxy.dynamic_path, broken)
    assert wait_until(lambda: "http.routers.app.rul" in proxy.stderr(), 5), proxy.stderr()
    # Refused as a whole: the old configuration still serves, nothing of the new one.
    for _ in range(3):
        assert answered_by(proxy.port, "a")
    assert b.connections == 0
    replace_file(proxy.dynamic_path, dynamic_for(b.url))
    assert wait_until(lambda: answered_by(proxy.port, "b"), 5), "the fixed change was not applied"


def test_router_with_missing_service_in_a_change_is_refused(backend, turnout):
    a = backend(responder=named("a"))
    proxy = turnout(dynamic_for(a.url))
    replace_file(
        proxy.dynamic_path,
        dynamic_for(a.url) + '[http.routers.extra]\nrule = "Path(`/x`)"\nservice = "ghost"\n',
    )
    assert wait_until(lambda: "http.routers.extra.service" in proxy.stderr(), 5), proxy.stderr()
    assert answered_by(proxy.port, "a")


def test_directory_provider_merges_its_files(backend, turnout):
    server = backend(responder=named("dir"))
    proxy = turnout(
        {
            "routers.toml": '[http.routers.app]\nrule = "PathPrefix(`/`)"\nservice = "app"\n',
            "services.yaml": (
                "http:\n  services:\n    app:\n      loadBalancer:\n        servers:\n"
                f"          - url: {server.url}\n"
            ),
        }
    )
    assert answered_by(proxy.port, "dir")
