"""failover services through a real Turnout: switch to the fallback and back."""

from __future__ import annotations

from tests.integration.harness import get, wait_until
from tests.middlewares.support import check
from tests.services.support import FAST_HEALTH, balancer, bodies, named, router


def failover(name: str, main: str, fallback: str, health: bool = False) -> str:
    text = f'[http.services.{name}.failover]\nservice = "{main}"\nfallback = "{fallback}"\n'
    if health:
        text += f"[http.services.{name}.failover.healthCheck]\n"
    return text


def backend_names(port: int, count: int) -> list[str]:
    return [get(port).header("X-Backend") or str(get(port).status) for _ in range(count)]


def test_switches_to_the_fallback_and_back(processes, turnout):
    main, spare = processes("main"), processes("spare")
    proxy = turnout(
        router("site")
        + failover("site", "primary", "backup")
        + balancer("primary", main.url, health=FAST_HEALTH)
        + balancer("backup", spare.url)
    )
    assert backend_names(proxy.port, 3) == ["main"] * 3
    main.kill()
    assert wait_until(lambda: "of service primary@file is DOWN" in proxy.stderr(), 3)
    assert backend_names(proxy.port, 3) == ["spare"] * 3
    processes("main", port=main.port)
    assert wait_until(lambda: "of service primary@file is UP" in proxy.stderr(), 3)
    assert backend_names(proxy.port, 3) == ["main"] * 3


def test_with_health_check_both_down_is_503_and_a_parent_skips_it(processes, backend, turnout):
    main, spare = processes("main"), processes("spare")
    other = backend(responder=named("other"))
    proxy = turnout(
        router("site")
        + router("top", name="top", rule="Host(`top`) && PathPrefix(`/`)")
        + failover("site", "primary", "backup", health=True)
        + balancer("primary", main.url, health=FAST_HEALTH)
        + balancer("backup", spare.url, health=FAST_HEALTH)
        + balancer("elsewhere", other.url, health=FAST_HEALTH)
        + "[http.services.top.weighted.healthCheck]\n"
        + '[[http.services.top.weighted.services]]\nname = "site"\n'
        + '[[http.services.top.weighted.services]]\nname = "elsewhere"\n'
    )
    main.kill()
    spare.kill()
    assert wait_until(lambda: proxy.stderr().count("is DOWN") == 2, 3)
    response = get(proxy.port)
    assert response.status == 503
    # The weighted parent sees the failover as down and sends everything elsewhere.
    assert bodies(proxy.port, 4, host="top") == ["other"] * 4
    processes("spare", port=spare.port)
    assert wait_until(lambda: "of service backup@file is UP" in proxy.stderr(), 3)
    assert backend_names(proxy.port, 2) == ["spare"] * 2
    assert sorted(bodies(proxy.port, 4, host="top")) == ["ok", "ok", "other", "other"]


def test_refusals(tmp_path):
    config = (
        failover("a", "plain", "plain")
        + failover("b", "checked", "plain", health=True)
        + failover("c", "checked", "nowhere")
        + '[http.services.d.failover]\nservice = "checked"\nfallback = "plain"\n'
        + '[http.services.d.failover.errors]\nstatus = ["500-504"]\n'
        + balancer("plain", "http://127.0.0.1:9")
        + balancer("checked", "http://127.0.0.1:9", health=FAST_HEALTH)
    )
    code, output = check(tmp_path, config)
    assert code == 1
    for line in (
        "http.services.a.failover.service: service 'plain' has no healthCheck, "
        "so it cannot report its health to 'a@file'",
        "http.services.b.failover.fallback: service 'plain' has no healthCheck, "
        "so it cannot report its health to 'b@file'",
        "http.services.c.failover.fallback: unknown service 'nowhere'",
        "http.services.d.failover.errors: failover on errors is not supported by Turnout yet",
    ):
        assert f"dynamic.toml: {line}" in output, output
