"""``turnout explain`` for TCP: which router a tcp:// or tls://SNI connection would take."""

from __future__ import annotations

from pathlib import Path

from proxy.cli import main

DYNAMIC = """
[tcp.routers.pg]
rule = "HostSNI(`*`)"
entryPoints = ["db"]
service = "pg"
[[tcp.services.pg.loadBalancer.servers]]
address = "127.0.0.1:5432"
[tcp.routers.secure]
rule = "HostSNI(`db1.example.com`) && ALPN(`postgresql`)"
entryPoints = ["web"]
service = "pg"
[tcp.routers.secure.tls]
passthrough = true
"""


def explain(tmp_path: Path, capsys, *args: str) -> str:  # type: ignore[no-untyped-def]
    (tmp_path / "dynamic.toml").write_text(DYNAMIC)
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.db]\naddress = ":5433"\n[entryPoints.web]\naddress = ":8443"\n'
        f'[providers.file]\nfilename = "{tmp_path / "dynamic.toml"}"\n'
    )
    assert main(["explain", "-c", str(static), *args]) == 0
    return capsys.readouterr().out


def test_tls_sni_and_alpn_choose_the_passthrough_router(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = explain(
        tmp_path, capsys, "--entrypoint", "web", "GET", "tls://DB1.example.com?alpn=postgresql"
    )
    assert "Chosen: secure@file  priority 48" in out
    assert "Service pg@file -> 127.0.0.1:5432" in out
    out = explain(tmp_path, capsys, "--entrypoint", "web", "GET", "tls://db1.example.com")
    assert "No TLS TCP router matches." in out and "closed" in out


def test_non_tls_bytes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = explain(tmp_path, capsys, "--entrypoint", "db", "GET", "tcp://")
    assert "routed at once, before the client sends" in out
    assert "Chosen: pg@file  priority 12  HostSNI(`*`)" in out
    out = explain(tmp_path, capsys, "--entrypoint", "web", "GET", "tcp://")
    assert "The bytes go to the HTTP routers." in out
