"""The tcp section in a snapshot build: what is compiled, and every refusal naming its key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from proxy.config.load import decode_dynamic
from proxy.config.static import StaticConfig
from proxy.runtime.snapshot import build_snapshot
from proxy.tcp.in_flight_conn import InFlightConn
from proxy.tcp.ip_allow_list import IPAllowList
from tests.middlewares.support import check

SERVICE = '[[tcp.services.db.loadBalancer.servers]]\naddress = "127.0.0.1:5432"\n'
ROUTER = '[tcp.routers.db]\nrule = "HostSNI(`*`)"\nservice = "db"\n'


def build(text: str, entrypoints: tuple[str, ...] = ("web", "db")):  # type: ignore[no-untyped-def]
    dynamic = decode_dynamic(tomllib.loads(text), "dynamic.toml")
    return build_snapshot(
        dynamic, StaticConfig(), entrypoints=list(entrypoints), source="dynamic.toml"
    )


def issues(text: str) -> list[str]:
    return [str(issue) for issue in build(text)[1]]


def test_routers_split_into_plain_and_passthrough_per_entry_point() -> None:
    snapshot, found = build(
        ROUTER + SERVICE + '[tcp.routers.tls]\nrule = "HostSNI(`a.example`)"\nservice = "db"\n'
        'entryPoints = ["web"]\n[tcp.routers.tls.tls]\npassthrough = true\n'
    )
    assert found == []
    web, db = snapshot.tcp.entries["web"], snapshot.tcp.entries["db"]
    assert [r.name for r in web.plain.routes] == ["db@file"]  # type: ignore[union-attr]
    assert [r.name for r in web.tls.routes] == ["tls@file"]  # type: ignore[union-attr]
    assert not web.early  # a TLS router wants the ClientHello first
    assert db.tls is None and db.early  # HostSNI(`*`) alone: routed before any byte
    assert snapshot.tcp.targets["db@file"].service.pick_server().port == 5432  # type: ignore[union-attr]


def test_no_tcp_router_no_entry() -> None:
    snapshot, found = build('[http.routers.a]\nrule = "Path(`/`)"\nservice = "whoami@internal"\n')
    assert found == []
    assert snapshot.tcp.entries == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ROUTER + SERVICE + "[tcp.routers.db.tls]\n",
            "dynamic.toml: tcp.routers.db.tls: TLS termination is not supported by Turnout yet",
        ),
        (
            '[tcp.routers.db]\nrule = "HostSNI(`a.example`)"\nservice = "db"\n' + SERVICE,
            "dynamic.toml: tcp.routers.db.rule: HostSNI with a domain needs tls on the router",
        ),
        (
            '[tcp.routers.db]\nservice = "db"\n' + SERVICE,
            "tcp.routers.db.rule: a router needs a rule",
        ),
        (ROUTER, "dynamic.toml: tcp.routers.db.service: unknown service 'db'"),
        (
            ROUTER.replace("HostSNI(`*`)", "ClientIP(`300.1.1.1`)") + SERVICE,
            "tcp.routers.db.rule: rule: column 1: ClientIP: invalid IP address or CIDR",
        ),
        (
            ROUTER + 'entryPoints = ["nope"]\n' + SERVICE,
            "tcp.routers.db.entryPoints[0]: unknown entry point 'nope'",
        ),
        (
            ROUTER + 'middlewares = ["gone"]\n' + SERVICE,
            "tcp.routers.db.middlewares[0]: unknown middleware 'gone'",
        ),
        (
            ROUTER + '[[tcp.services.db.loadBalancer.servers]]\naddress = "127.0.0.1"\n',
            "tcp.services.db.loadBalancer.servers[0].address: invalid address '127.0.0.1': "
            "missing port",
        ),
        (
            ROUTER + SERVICE + '[tcp.services.db.loadBalancer]\nserversTransport = "t"\n',
            "tcp.services.db.loadBalancer.serversTransport: unknown serversTransport 't'",
        ),
        (
            ROUTER + SERVICE + "[tcp.services.db.loadBalancer.proxyProtocol]\nversion = 3\n",
            "tcp.services.db.loadBalancer.proxyProtocol.version: version must be 1 or 2",
        ),
        (
            ROUTER + '[[tcp.services.db.weighted.services]]\nname = "db"\n',
            "tcp.services.db.weighted: weighted services loop: db@file -> db@file",
        ),
        (
            ROUTER + '[[tcp.services.db.weighted.services]]\nname = "other"\n',
            "tcp.services.db.weighted.services[0].name: unknown service 'other'",
        ),
        (
            ROUTER + "[tcp.services.db]\n",
            "tcp.services.db: a TCP service needs exactly one of loadBalancer, weighted",
        ),
        (
            ROUTER + SERVICE + "[tcp.middlewares.m.inFlightConn]\namount = 0\n",
            "tcp.middlewares.m.inFlightConn.amount: amount must be at least 1",
        ),
        (
            ROUTER + SERVICE + '[tcp.middlewares.m.ipAllowList]\nsourceRange = ["10.0.0.0/99"]\n',
            "tcp.middlewares.m.ipAllowList.sourceRange[0]: invalid IP address or CIDR",
        ),
        (
            ROUTER + SERVICE + "[tcp.middlewares.m.ipAllowList]\n",
            "tcp.middlewares.m.ipAllowList.sourceRange: sourceRange is empty",
        ),
        (
            ROUTER
            + SERVICE
            + '[tcp.middlewares.m.ipAllowList]\nsourceRange = ["10.0.0.0/8"]\n'
            + "[tcp.middlewares.m.inFlightConn]\namount = 1\n",
            "tcp.middlewares.m: a TCP middleware needs exactly one type; found ipAllowList, "
            "inFlightConn",
        ),
        (
            ROUTER + SERVICE + "[tcp.services.db.loadBalancer.healthCheck]\n",
            "tcp.services.db.loadBalancer.healthCheck: TCP health checks is not supported",
        ),
        (
            ROUTER + SERVICE + '[tcp.serversTransports.t.tls]\nrootCAs = ["/nonexistent.pem"]\n',
            "tcp.serversTransports.t.tls.rootCAs[0]: cannot load '/nonexistent.pem'",
        ),
    ],
)
def test_refusals_name_the_key(text: str, expected: str) -> None:
    found = issues(text)
    assert any(expected in issue for issue in found), found


def test_middlewares_are_built_and_kept_across_rebuilds() -> None:
    text = (
        ROUTER
        + 'middlewares = ["few", "local", "legacy"]\n'
        + SERVICE
        + "[tcp.middlewares.few.inFlightConn]\namount = 2\n"
        + '[tcp.middlewares.local.ipAllowList]\nsourceRange = ["127.0.0.1/32", "::1"]\n'
        + '[tcp.middlewares.legacy.ipWhiteList]\nsourceRange = ["127.0.0.0/8"]\n'
    )
    snapshot, found = build(text)
    assert found == []
    few, local, legacy = snapshot.tcp.targets["db@file"].middlewares
    assert isinstance(few, InFlightConn) and isinstance(local, IPAllowList)
    assert isinstance(legacy, IPAllowList)
    assert few.admit("10.0.0.1") and few.admit("10.0.0.1") and not few.admit("10.0.0.1")
    assert few.admit("10.0.0.2")
    few.release("10.0.0.1")
    assert few.admit("10.0.0.1")
    assert local.admit("127.0.0.1") and local.admit("::1") and not local.admit("10.0.0.1")
    assert legacy.admit("127.0.0.9")
    from proxy.runtime.snapshot import ProviderConfig, build_merged

    dynamic = decode_dynamic(tomllib.loads(text), "dynamic.toml")
    again, _ = build_merged(
        [ProviderConfig("file", dynamic, "dynamic.toml")],
        StaticConfig(),
        entrypoints=["web", "db"],
        previous=snapshot,
    )
    assert again.tcp.targets["db@file"].middlewares[0] is few  # its counts carry over


def test_turnout_check_counts_tcp_and_refuses_with_exit_1(tmp_path: Path) -> None:
    code, output = check(tmp_path, ROUTER + SERVICE)
    assert code == 0, output
    assert "TCP: 1 router, 1 service, 0 middlewares" in output
    code, output = check(tmp_path, ROUTER + SERVICE + "[tcp.routers.db.tls]\n")
    assert code == 1
    assert "dynamic.toml: tcp.routers.db.tls: TLS termination is not supported" in output


def test_same_rule_and_priority_is_a_warning() -> None:
    snapshot, found = build(
        ROUTER + SERVICE + '[tcp.routers.twin]\nrule = "HostSNI(`*`)"\nservice = "db"\n'
    )
    assert found == []
    assert any(
        "tcp.routers.twin.rule: same rule and priority (12) as router 'db@file'" in str(w)
        for w in snapshot.warnings
    ), snapshot.warnings
