"""``turnout check -c STATIC [DYNAMIC ...] [--json] [--live]`` on good and bad configurations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main

COMPAT = Path(__file__).resolve().parents[1].parent / "shared" / "compat" / "traefik"
FIXTURES = COMPAT / "pkg" / "provider" / "file" / "fixtures"

GOOD = """
[http.routers.app]
rule = "Host(`app.example`) && PathPrefix(`/`)"
service = "app"
[http.routers.api]
rule = "Host(`app.example`) && PathPrefix(`/api`)"
service = "app"
entryPoints = ["web"]
[http.services.app.loadBalancer]
[[http.services.app.loadBalancer.servers]]
url = "http://127.0.0.1:9001"
"""


def write(tmp_path: Path, dynamic: str, name: str = "dynamic.toml", extra: str = "") -> Path:
    (tmp_path / name).write_text(dynamic)
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n[entryPoints.admin]\naddress = "127.0.0.1:0"\n'
        f'[providers.file]\nfilename = "{tmp_path / name}"\n{extra}'
    )
    return static


def check(capsys, *args: str) -> tuple[int, str, list[str]]:  # type: ignore[no-untyped-def]
    code = main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line]


def test_a_good_configuration(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = check(capsys, "-c", str(write(tmp_path, GOOD)))
    assert code == 0
    assert out == "configuration OK: 2 routers, 1 service, 0 middlewares\n"
    assert err == []


CASES = {
    "syntax": (
        "[http.routers.app\n",
        "dynamic.toml: line 1: Expected ']' at the end of a table declaration (column 18)",
    ),
    "unknown-key": (
        GOOD.replace('rule = "Host', 'rul = "Host', 1),
        "dynamic.toml:3: http.routers.app.rul: unknown key; did you mean 'rule'?",
    ),
    "wrong-type": (
        GOOD + "[http.routers.x]\nrule = 5\nservice = []\n",
        "dynamic.toml:14: http.routers.x.service: expected a string, got a list",
    ),
    "bad-duration": (
        GOOD + '[http.serversTransports.t.forwardingTimeouts]\ndialTimeout = "3 fortnights"\n',
        "dynamic.toml:13: http.serversTransports.t.forwardingTimeouts.dialTimeout: ",
    ),
    "rule-syntax": (
        GOOD.replace("PathPrefix(`/api`)", "PathPrefix(`/api`"),
        "dynamic.toml:6: http.routers.api.rule: router 'api@file': rule: column 41: expected ','",
    ),
    "bad-regexp": (
        GOOD + '[http.routers.re]\nrule = "PathRegexp(`(`)"\nservice = "app"\n',
        "dynamic.toml:13: http.routers.re.rule: "
        "router 're@file': rule: column 1: PathRegexp: invalid",
    ),
    "missing-service": (
        GOOD.replace('service = "app"\nentryPoints', 'service = "nope"\nentryPoints'),
        "dynamic.toml:7: http.routers.api.service: unknown service 'nope'",
    ),
    "missing-middleware": (
        GOOD + '[http.routers.m]\nrule = "Host(`m`)"\nservice = "app"\nmiddlewares = ["gone"]\n',
        "dynamic.toml:15: http.routers.m.middlewares[0]: unknown middleware 'gone'",
    ),
    "unknown-entrypoint": (
        GOOD.replace('entryPoints = ["web"]', 'entryPoints = ["websecure"]'),
        "dynamic.toml:8: http.routers.api.entryPoints[0]: unknown entry point 'websecure'",
    ),
    "chain-cycle": (
        GOOD
        + '[http.middlewares.a.chain]\nmiddlewares = ["b"]\n'
        + '[http.middlewares.b.chain]\nmiddlewares = ["a"]\n',
        "dynamic.toml:13: http.middlewares.a.chain.middlewares: chain cycle: a@file -> b@file",
    ),
    "template": (GOOD + "# {{ .Port }}\n", "dynamic.toml: line 12: Go templates are not supported"),
}


@pytest.mark.parametrize(("dynamic", "expected"), list(CASES.values()), ids=list(CASES))
def test_each_kind_of_error(tmp_path, capsys, dynamic: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = check(capsys, "-c", str(write(tmp_path, dynamic)))
    assert code == 1
    assert out == ""
    prefix = f"{tmp_path}/"
    lines = [line.removeprefix(prefix) for line in err if not line.startswith("warning: ")]
    assert any(line.startswith(expected) for line in lines), lines


def test_same_rule_and_priority_is_a_warning(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    dynamic = (
        GOOD
        + '[http.routers.twin]\nrule = "Host(`app.example`) && PathPrefix(`/`)"\nservice = "app"\n'
    )
    code, out, err = check(capsys, "-c", str(write(tmp_path, dynamic)))
    assert code == 0
    assert out.startswith("configuration OK: 3 routers")
    assert err == [
        f"warning: {tmp_path}/dynamic.toml:13: http.routers.twin.rule: same rule and priority (38) "
        "as router 'app@file'; which of the two answers is not defined"
    ]


def test_dynamic_arguments_replace_the_file_provider(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    static = write(tmp_path, "[http.routers.broken\n")
    (tmp_path / "candidate.toml").write_text(GOOD)
    (tmp_path / "more.yaml").write_text(
        "http:\n  routers:\n    more:\n      rule: Host(`more`)\n      service: app\n"
    )
    code, out, _ = check(
        capsys, "-c", str(static), str(tmp_path / "candidate.toml"), str(tmp_path / "more.yaml")
    )
    assert code == 0
    assert out.startswith("configuration OK: 3 routers")
    # The same resource defined differently in two files names both.
    (tmp_path / "clash.toml").write_text(
        '[http.routers.app]\nrule = "Host(`x`)"\nservice = "app"\n'
    )
    code, _, err = check(
        capsys, "-c", str(static), str(tmp_path / "candidate.toml"), str(tmp_path / "clash.toml")
    )
    assert code == 1
    assert err == [
        f"{tmp_path}/clash.toml:1: http.routers.app: "
        f"defined differently in {tmp_path}/candidate.toml"
    ]


def test_json_report(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = check(capsys, "-c", str(write(tmp_path, GOOD)), "--json")
    assert code == 0 and err == []
    report = json.loads(out)
    assert report["ok"] is True
    assert (report["routers"], report["services"], report["middlewares"]) == (2, 1, 0)
    assert report["sources"] == [{"provider": "file", "source": str(tmp_path / "dynamic.toml")}]
    code, out, _ = check(capsys, "-c", str(write(tmp_path, "\n\n[http.routers.app\n")), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["errors"][0]["line"] == 3
    assert report["errors"][0]["path"] == "line 3"


def test_remote_providers_are_read_only_with_live(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.providers.servers import RedisServer

    redis = RedisServer(tmp_path / "redis").start()
    try:
        redis.set("traefik/http/routers/r/rule", "Host(`r.example`)")
        redis.set("traefik/http/routers/r/service", "app@file")
        extra = f'[providers.redis]\nendpoints = ["127.0.0.1:{redis.port}"]\n'
        dynamic = GOOD.replace('service = "app"\nentryPoints', 'service = "s@redis"\nentryPoints')
        static = write(tmp_path, dynamic, extra=extra)
        code, out, err = check(capsys, "-c", str(static))
        assert code == 0, err  # s@redis cannot be checked without reading Redis: a warning
        assert any("provider redis not read (add --live" in line for line in err)
        code, out, err = check(capsys, "-c", str(static), "--live")
        assert code == 1
        assert err == [
            f"{tmp_path}/dynamic.toml:7: http.routers.api.service: unknown service 's@redis'"
        ]
        redis.set("traefik/http/services/s/loadBalancer/servers/0/url", "http://127.0.0.1:9")
        code, out, err = check(capsys, "-c", str(static), "--live")
        assert code == 0, err
        assert out.startswith("configuration OK: 3 routers, 2 services")
        redis.stop()
        code, out, err = check(capsys, "-c", str(static), "--live")
        assert code == 1
        assert any("cannot read" in line for line in err)
    finally:
        redis.stop()


@pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="the compatibility corpus (../shared/compat) is absent"
)
def test_traefiks_own_file_provider_fixtures(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Real Traefik v3 dynamic files pass, or fail only on what the README lists as unsupported
    (TLS termination, Go templates) or on what Traefik itself rejects: a router without a
    rule, a TCP/UDP server address it cannot dial ("http://172.17.0.9:80": Traefik logs an
    error and drops the server), a UDP router with no UDP entry point (Traefik disables it)."""
    static = write(tmp_path, "")
    allowed = (
        "not supported by Turnout yet",
        "Go templates are not supported",
        "a router needs a rule",
        "address: invalid address 'http://",
        "no UDP entry point to serve this router",
    )
    checked = 0
    for fixture in sorted(FIXTURES.glob("*/*")):
        code, out, err = check(capsys, "-c", str(static), str(fixture))
        checked += 1
        if code == 0:
            assert out.startswith("configuration OK")
            continue
        for line in err:
            assert any(reason in line for reason in allowed), (fixture.name, line)
    assert checked >= 10


def test_exit_codes_as_a_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    static = write(
        tmp_path, GOOD.replace('service = "app"\nentryPoints', 'service = "x"\nentryPoints')
    )
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-c", str(static)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith("http.routers.api.service: unknown service 'x'")
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "--jsn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2


def test_unusable_trusted_ips_are_refused_with_their_key(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Traefik's reference files decode (placeholders and all); using them is refused."""
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        '[entryPoints.web.forwardedHeaders]\ntrustedIPs = ["10.0.0.0/8", "foobar"]\n'
    )
    assert main(["check", "-c", str(static)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{static}:4: entryPoints.web.forwardedHeaders.trustedIPs[1]: "
        "'foobar' is not an IP address or CIDR range"
    ) in err
