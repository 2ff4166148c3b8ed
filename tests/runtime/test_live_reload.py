"""A real ``turnout run`` whose watched file is rewritten under steady load.

The issue's acceptance test: 50 rewrites alternating between two valid
routings and invalid ones, with requests flowing all along: no request fails,
every valid change is visible within 1 s, every invalid one is refused while
the old routing keeps answering.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.support import Load, NamedBackend, TurnoutProcess, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def backends() -> Iterator[dict[str, NamedBackend]]:
    started = {name: NamedBackend(name) for name in ("alpha", "beta")}
    yield started
    for backend in started.values():
        backend.stop()


def routing(backends: dict[str, NamedBackend], service: str) -> str:
    lines = [
        "[http.routers.app]",
        'rule = "Host(`app.example`)"',
        f'service = "{service}"',
    ]
    for name, backend in backends.items():
        lines += [
            f"[http.services.{name}.loadBalancer]",
            f"[[http.services.{name}.loadBalancer.servers]]",
            f'url = "{backend.url}"',
        ]
    return "\n".join(lines) + "\n"


def invalid_variants(backends: dict[str, NamedBackend]) -> list[tuple[str, str]]:
    good = routing(backends, "alpha")
    return [
        ("syntax error", good.replace("[http.routers.app]", "[http.routers.app", 1)),
        ("unknown service", good.replace('service = "alpha"', 'service = "gamma"')),
        ("rule syntax", good.replace("Host(`app.example`)", "Host(`app.example`")),
        ("unknown key", good.replace('rule = "', 'rul = "', 1)),
        (
            "one bad router among good ones",
            good + '[http.routers.more]\nrule = "HostRegexp(`[`)"\nservice = "beta"\n',
        ),
        ("go template", good + "# {{ .Name }}\n"),
        (
            "bad duration",
            good + '[http.serversTransports.t.forwardingTimeouts]\ndialTimeout = "5 parsecs"\n',
        ),
    ]


def write(path: Path, text: str, *, atomic: bool) -> None:
    if atomic:
        # What editors and config managers do: a temporary file renamed over the old one.
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
    else:
        with path.open("w") as file:  # truncate, then write: what `>` in a shell does
            file.write(text)


def test_fifty_rewrites_under_load(tmp_path: Path, backends: dict[str, NamedBackend]) -> None:
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text(routing(backends, "alpha"))
    proxy = TurnoutProcess(
        tmp_path, f'[providers.file]\nfilename = "{dynamic}"\nwatch = true\n'
    ).start()
    invalid = invalid_variants(backends)
    current = "alpha"
    visible_after: list[float] = []
    refused = 0
    try:
        assert proxy.body() == "alpha"
        with Load(proxy.port) as load:
            for index in range(50):
                atomic = index % 2 == 0
                if index % 3 == 2:
                    what, text = invalid[(index // 3) % len(invalid)]
                    before = proxy.count("refused")
                    write(dynamic, text, atomic=atomic)
                    assert wait_until(lambda b=before: proxy.count("refused") > b, 3), (
                        f"rewrite {index} ({what}) was not refused:\n{proxy.stderr()[-2000:]}"
                    )
                    refused += 1
                    assert proxy.body() == current, f"after rewrite {index} ({what})"
                    continue
                current = "beta" if current == "alpha" else "alpha"
                started = time.monotonic()
                write(dynamic, routing(backends, current), atomic=atomic)
                assert wait_until(lambda c=current: proxy.body() == c, 2), (
                    f"rewrite {index} to {current} not visible:\n{proxy.stderr()[-2000:]}"
                )
                visible_after.append(time.monotonic() - started)
        assert load.failures == [], load.failures[:10]
        assert load.sent > 200
        assert set(load.bodies) == {"alpha", "beta"}
    finally:
        code = proxy.stop()
    assert code == 0, proxy.stderr()[-2000:]
    assert refused == 16
    assert len(visible_after) == 34
    assert max(visible_after) < 1.0, sorted(visible_after)[-5:]


def test_sighup_rereads_an_unwatched_file(
    tmp_path: Path, backends: dict[str, NamedBackend]
) -> None:
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text(routing(backends, "alpha"))
    proxy = TurnoutProcess(
        tmp_path, f'[providers.file]\nfilename = "{dynamic}"\nwatch = false\n'
    ).start()
    try:
        dynamic.write_text(routing(backends, "beta"))
        time.sleep(0.5)
        assert proxy.body() == "alpha"  # not watched
        proxy.signal(signal.SIGHUP)
        assert wait_until(lambda: proxy.body() == "beta", 2)
        dynamic.write_text("[http.routers.app\n")
        proxy.signal(signal.SIGHUP)
        assert wait_until(lambda: proxy.count("refused") == 1, 2)
        assert f"{dynamic}: line 1:" in proxy.stderr()
        assert proxy.body() == "beta"
    finally:
        assert proxy.stop() == 0


def test_watched_directory(tmp_path: Path, backends: dict[str, NamedBackend]) -> None:
    folder = tmp_path / "dynamic"
    (folder / "sub").mkdir(parents=True)
    services = routing(backends, "alpha").split("[http.services", 1)[1]
    (folder / "services.toml").write_text("[http.services" + services)
    (folder / "sub" / "app.yaml").write_text(
        "http:\n  routers:\n    app:\n      rule: Host(`app.example`)\n      service: alpha\n"
    )
    proxy = TurnoutProcess(tmp_path, f'[providers.file]\ndirectory = "{folder}"\n').start()
    try:
        assert proxy.body() == "alpha"
        (folder / "sub" / "other.json").write_text(
            '{"http": {"routers": {"other": {"rule": "Host(`other.example`)", "service": "beta"}}}}'
        )
        assert wait_until(lambda: proxy.body("other.example") == "beta", 2)
        # The same router defined differently in two files: refused, naming both.
        (folder / "clash.toml").write_text(
            '[http.routers.app]\nrule = "Host(`app.example`)"\nservice = "beta"\n'
        )
        assert wait_until(lambda: proxy.count("refused") == 1, 2)
        assert "defined differently in" in proxy.stderr()
        assert proxy.body() == "alpha"
        (folder / "clash.toml").unlink()
        (folder / "sub" / "other.json").unlink()
        assert wait_until(lambda: proxy.body("other.example") == "404", 2)
    finally:
        assert proxy.stop() == 0
