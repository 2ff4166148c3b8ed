"""weighted services through a real Turnout: canary shares, and children that go down."""

from __future__ import annotations

from tests.integration.harness import wait_until
from tests.middlewares.support import check
from tests.services.support import FAST_HEALTH, balancer, bodies, named, router


def weighted(name: str, children: dict[str, int], health: bool = False) -> str:
    text = f"[http.services.{name}.weighted]\n"
    for child, weight in children.items():
        text += f'[[http.services.{name}.weighted.services]]\nname = "{child}"\nweight = {weight}\n'
    if health:
        text += f"[http.services.{name}.weighted.healthCheck]\n"
    return text


def test_weights_split_the_traffic_exactly(backend, turnout):
    stable, canary = backend(responder=named("stable")), backend(responder=named("canary"))
    proxy = turnout(
        router("release")
        + weighted("release", {"v1": 9, "v2": 1})
        + balancer("v1", stable.url)
        + balancer("v2", canary.url)
    )
    answers = bodies(proxy.port, 50)
    assert (answers.count("stable"), answers.count("canary")) == (45, 5)
    # Smooth: the canary's turns are spread, one in every ten requests.
    for start in range(0, 50, 10):
        assert answers[start : start + 10].count("canary") == 1, answers
    assert (len(stable.requests), len(canary.requests)) == (45, 5)


def test_weight_zero_and_nested_weighted_services(backend, turnout):
    a, b, c = (backend(responder=named(n)) for n in "abc")
    proxy = turnout(
        router("outer")
        + weighted("outer", {"inner": 1, "lbc": 1, "lba": 0})
        + weighted("inner", {"lba": 1, "lbb": 1})
        + balancer("lba", a.url)
        + balancer("lbb", b.url)
        + balancer("lbc", c.url)
    )
    answers = bodies(proxy.port, 8)
    assert (answers.count("a"), answers.count("b"), answers.count("c")) == (2, 2, 4)


def test_with_health_check_a_child_that_is_down_is_skipped(processes, turnout):
    one, two = processes("one"), processes("two")
    proxy = turnout(
        router("release")
        + weighted("release", {"v1": 1, "v2": 1}, health=True)
        + balancer("v1", one.url, health=FAST_HEALTH)
        + balancer("v2", two.url, health=FAST_HEALTH)
    )
    assert sorted(bodies(proxy.port, 4)) == ["ok", "ok", "ok", "ok"]
    two.kill()
    assert wait_until(lambda: f"server {two.url} of service v2@file is DOWN" in proxy.stderr(), 3)
    assert bodies(proxy.port, 6) == ["ok"] * 6  # no 503 from the child that is down
    one.kill()
    assert wait_until(lambda: f"server {one.url} of service v1@file is DOWN" in proxy.stderr(), 3)
    assert bodies(proxy.port, 2) == ["503", "503"]
    processes("two", port=two.port)
    assert wait_until(lambda: f"server {two.url} of service v2@file is UP" in proxy.stderr(), 3)
    assert bodies(proxy.port, 3) == ["ok"] * 3


def test_without_health_check_a_child_that_is_down_keeps_its_turns(processes, turnout):
    # As in Traefik: without weighted.healthCheck the parent does not follow its
    # children, and the child that has no server answers 503 itself.
    one, two = processes("one"), processes("two")
    proxy = turnout(
        router("release")
        + weighted("release", {"v1": 1, "v2": 1})
        + balancer("v1", one.url, health=FAST_HEALTH)
        + balancer("v2", two.url, health=FAST_HEALTH)
    )
    two.kill()
    assert wait_until(lambda: "is DOWN" in proxy.stderr(), 3)
    assert sorted(bodies(proxy.port, 4)) == ["503", "503", "ok", "ok"]


def test_refusals(tmp_path):
    config = (
        router("w")
        + weighted("w", {"plain": 1, "missing": 1}, health=True)
        + balancer("plain", "http://127.0.0.1:9")
        + '[http.services.s.weighted.sticky.cookie]\nname = "c"\n'
        + '[[http.services.s.weighted.services]]\nname = "plain"\n'
        + '[[http.services.n.weighted.services]]\nname = "plain"\nweight = -1\n'
    )
    code, output = check(tmp_path, config)
    assert code == 1
    for line in (
        "http.services.w.weighted.services[0].name: service 'plain' has no healthCheck, "
        "so it cannot report its health to 'w@file'",
        "http.services.w.weighted.services[1].name: unknown service 'missing'",
        "http.services.s.weighted.sticky: sticky is not supported by Turnout yet",
        "http.services.n.weighted.services[0].weight: weight must not be negative",
    ):
        assert f"dynamic.toml: {line}" in output, output
