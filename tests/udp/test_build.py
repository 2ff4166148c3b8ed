"""The udp section compiled into a snapshot: routes per UDP entry point, errors naming keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from proxy.config.load import ConfigIssue, decode_dynamic
from proxy.config.static import EntryPoint, StaticConfig
from proxy.runtime.snapshot import ProviderConfig, Snapshot, build_merged
from proxy.udp.service import UdpLoadBalancer, UdpWeighted
from tests.integration.harness import REPO

STATIC = StaticConfig(
    entry_points={
        "web": EntryPoint(address=":8000"),
        "dns": EntryPoint(address=":5353/udp"),
        "syslog": EntryPoint(address="127.0.0.1:5514/UDP"),
    }
)
ENTRYPOINTS = ["web", "dns", "syslog"]


def build(raw: dict, *more: tuple[str, dict]) -> tuple[Snapshot, list[ConfigIssue]]:
    configs = [ProviderConfig("file", decode_dynamic(raw, "dynamic.toml"), "dynamic.toml")]
    for name, other in more:
        configs.append(ProviderConfig(name, decode_dynamic(other, name), name))
    return build_merged(configs, STATIC, entrypoints=ENTRYPOINTS)


def servers(*addresses: str) -> dict:
    return {"loadBalancer": {"servers": [{"address": a} for a in addresses]}}


def messages(issues: list[ConfigIssue]) -> list[str]:
    return [f"{issue.path}: {issue.message}" for issue in issues]


def test_a_router_serves_the_entry_points_it_names_or_every_udp_one() -> None:
    snapshot, issues = build(
        {
            "udp": {
                "routers": {
                    "dns": {"entryPoints": ["dns"], "service": "dns"},
                    "any": {"service": "logs"},
                },
                "services": {"dns": servers("127.0.0.1:53"), "logs": servers("[::1]:514")},
            }
        }
    )
    assert issues == []
    # "any" names no entry point: it is on both UDP ones, and "dns" (first by
    # name, any@file < dns@file) loses its entry point to it with a warning.
    routes = snapshot.udp.routes
    assert set(routes) == {"dns", "syslog"}
    assert routes["syslog"].router == "any@file"
    assert routes["dns"].router == "any@file"
    assert messages(snapshot.warnings) == [
        "udp.routers.dns.entryPoints: entry point 'dns' already has UDP router 'any@file'; "
        "one UDP router per entry point is used, this one is not"
    ]
    balancer = routes["syslog"].service
    assert isinstance(balancer, UdpLoadBalancer)
    server = balancer.next_server()
    assert server is not None and (server.host, server.port) == ("::1", 514)
    # HTTP routers without entryPoints are not put on UDP entry points.
    assert set(snapshot.tables) == {"web"}


def test_load_balancer_servers_take_turns_and_weighted_services_follow_weights() -> None:
    snapshot, issues = build(
        {
            "udp": {
                "routers": {"r": {"entryPoints": ["dns"], "service": "mix"}},
                "services": {
                    "pair": servers("127.0.0.1:1001", "127.0.0.1:1002"),
                    "single": servers("127.0.0.1:2001"),
                    "mix": {
                        "weighted": {
                            "services": [
                                {"name": "pair", "weight": 3},
                                {"name": "single"},  # weight 1 by default
                                {"name": "other@redis", "weight": 0},  # out of rotation
                            ]
                        }
                    },
                },
            }
        },
        ("redis", {"udp": {"services": {"other": servers("127.0.0.1:3001")}}}),
    )
    assert issues == []
    mix = snapshot.udp.routes["dns"].service
    assert isinstance(mix, UdpWeighted)
    ports = [mix.next_server().port for _ in range(8)]  # type: ignore[union-attr]
    # Smooth WRR 3:1 over (pair, single); pair alternates its two servers.
    assert sorted(ports) == [1001, 1001, 1001, 1002, 1002, 1002, 2001, 2001]
    assert ports[:4].count(2001) == 1


def test_unchanged_load_balancers_keep_their_rotation_across_builds() -> None:
    raw = {
        "udp": {
            "routers": {"r": {"entryPoints": ["dns"], "service": "s"}},
            "services": {"s": servers("127.0.0.1:1", "127.0.0.1:2")},
        }
    }
    first, _ = build(raw)
    configs = list(first.providers)
    second, issues = build_merged(configs, STATIC, entrypoints=ENTRYPOINTS, previous=first)
    assert issues == []
    assert second.udp.services["s@file"] is first.udp.services["s@file"]


def test_configuration_errors_name_their_keys() -> None:
    snapshot, issues = build(
        {
            "http": {
                "routers": {
                    "h": {"rule": "PathPrefix(`/`)", "service": "x", "entryPoints": ["dns"]}
                },
                "services": {"x": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
            },
            "udp": {
                "routers": {
                    "on-tcp": {"entryPoints": ["web"], "service": "ok"},
                    "nowhere": {"entryPoints": ["nope"], "service": "ok"},
                    "no-service": {"entryPoints": ["dns"]},
                    "unknown-service": {"entryPoints": ["syslog"], "service": "missing"},
                },
                "services": {
                    "ok": servers("127.0.0.1:53"),
                    "bad-address": servers("127.0.0.1", "[::1:53", "host:0", ":53"),
                    "both": {**servers("127.0.0.1:1"), "weighted": {"services": []}},
                    "neither": {},
                    "loop-a": {"weighted": {"services": [{"name": "loop-b"}]}},
                    "loop-b": {"weighted": {"services": [{"name": "loop-a"}]}},
                    "negative": {"weighted": {"services": [{"name": "ok", "weight": -1}]}},
                    "dangling": {"weighted": {"services": [{"name": "ghost"}]}},
                },
            },
        }
    )
    assert all(issue.file == "dynamic.toml" for issue in issues)
    found = messages(issues)
    expected = [
        "http.routers.h.entryPoints[0]: entry point 'dns' is a UDP entry point",
        "udp.routers.on-tcp.entryPoints[0]: entry point 'web' is not a UDP entry point "
        "(its address needs the /udp suffix, e.g. ':5353/udp')",
        "udp.routers.nowhere.entryPoints[0]: unknown entry point 'nope'",
        "udp.routers.no-service.service: a router needs a service",
        "udp.routers.unknown-service.service: unknown UDP service 'missing'",
        "udp.services.bad-address.loadBalancer.servers[0].address: invalid address "
        "'127.0.0.1': missing port in address",
        "udp.services.bad-address.loadBalancer.servers[1].address: invalid address "
        "'[::1:53': expected [host]:port",
        "udp.services.bad-address.loadBalancer.servers[2].address: invalid address "
        "'host:0': invalid port '0'",
        "udp.services.bad-address.loadBalancer.servers[3].address: invalid address ':53': no host",
        "udp.services.both: a UDP service needs exactly one of loadBalancer, weighted",
        "udp.services.neither: a UDP service needs exactly one of loadBalancer, weighted",
        "udp.services.loop-b.weighted.services[0].name: service cycle: "
        "loop-a@file -> loop-b@file -> loop-a@file",
        "udp.services.negative.weighted.services[0].weight: weight must not be negative",
        "udp.services.dangling.weighted.services[0].name: unknown UDP service 'ghost'",
    ]
    assert sorted(found) == sorted(expected)
    assert snapshot.udp.routes == {}


def test_turnout_check_counts_udp_routers_and_refuses_bad_ones(tmp_path: Path) -> None:
    static = tmp_path / "static.toml"
    dynamic = tmp_path / "dynamic.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        '[entryPoints.dns]\naddress = "127.0.0.1:0/udp"\n'
        f'[providers.file]\nfilename = "{dynamic}"\n'
    )
    dynamic.write_text(
        '[udp.routers.dns]\nentryPoints = ["dns"]\nservice = "dns"\n'
        '[[udp.services.dns.loadBalancer.servers]]\naddress = "127.0.0.1:53"\n'
    )

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy.cli", "check", "-c", str(static)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = check()
    assert done.returncode == 0, done.stderr
    assert "configuration OK: 0 routers, 0 services, 0 middlewares; UDP: 1 router, 1 service" in (
        done.stdout
    )
    dynamic.write_text(
        '[udp.routers.dns]\nentryPoints = ["web"]\nservice = "dns"\n'
        '[[udp.services.dns.loadBalancer.servers]]\naddress = "127.0.0.1:53"\n'
    )
    done = check()
    assert done.returncode == 1
    assert (
        f"{dynamic}:2: udp.routers.dns.entryPoints[0]: entry point 'web' is not a UDP entry point"
    ) in done.stderr


def test_udp_entry_point_settings_out_of_range_are_refused(tmp_path: Path) -> None:
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.dns]\naddress = "127.0.0.1:0/udp"\n'
        'udp.timeout = "0s"\nudp.maxDatagramBytes = 70000\n'
        # The udp section of a TCP entry point is not used: not checked.
        '[entryPoints.web]\naddress = "127.0.0.1:0"\nudp.timeout = "0s"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-c", str(static)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = [line.split(": ", 1)[1] for line in done.stderr.splitlines()]
    assert lines == [
        "entryPoints.dns.udp.timeout: must be greater than zero",
        "entryPoints.dns.udp.maxDatagramBytes: must be 1-65535",
    ]
