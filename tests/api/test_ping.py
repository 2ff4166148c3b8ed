"""ping@internal: /ping answers 200 OK, and terminatingStatusCode during a graceful stop."""

from __future__ import annotations

import signal
import time

from tests.integration.harness import get, request

WHO = '[http.routers.who]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'


def test_ping_answers_ok_on_the_traefik_entrypoint(turnout) -> None:
    proxy = turnout(WHO, entrypoints=("web", "traefik"), static_extra="[ping]\n")
    port = proxy.ports["traefik"]
    response = get(port, "/ping")
    assert (response.status, response.body) == (200, b"OK")
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    head = request(port, b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (head.status, head.body, head.header("Content-Length")) == (200, b"", "2")
    assert get(port, "/ping/deeper").status == 404
    posted = request(port, b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert posted.status == 405
    # Routers without entryPoints stay off the internal entry point, and /ping
    # on the user's entry point goes to the user's router.
    assert get(proxy.ports["web"], "/ping").body.startswith(b"Hostname:")
    assert get(port, "/other").status == 404


def test_ping_on_a_user_entrypoint_wins_over_user_routers(turnout) -> None:
    proxy = turnout(WHO, static_extra='[ping]\nentryPoint = "web"\n')
    assert get(proxy.port, "/ping").body == b"OK"
    assert get(proxy.port, "/elsewhere").body.startswith(b"Hostname:")


def test_manual_routing_leaves_ping_to_a_user_router(turnout) -> None:
    dynamic = WHO + (
        '[http.routers.health]\nrule = "Path(`/healthz`)"\nservice = "ping@internal"\n'
    )
    proxy = turnout(dynamic, static_extra="[ping]\nmanualRouting = true\n")
    # The handler answers /ping only, as Traefik's; the user routes it where they like.
    dynamic_ping = get(proxy.port, "/ping")
    assert dynamic_ping.body.startswith(b"Hostname:")  # no internal router took /ping
    assert get(proxy.port, "/healthz").status == 404


def test_ping_answers_the_terminating_status_during_a_graceful_stop(turnout) -> None:
    proxy = turnout(
        WHO,
        entrypoints=("web", "traefik"),
        entrypoint_extra='transport.lifeCycle.requestAcceptGraceTimeout = "3s"',
        static_extra="[ping]\nterminatingStatusCode = 503\n",
    )
    port = proxy.ports["traefik"]
    assert get(port, "/ping").status == 200
    proxy.signal(signal.SIGTERM)
    deadline = time.monotonic() + 2
    statuses = []
    while time.monotonic() < deadline:
        response = get(port, "/ping")
        statuses.append(response.status)
        if response.status == 503:
            assert response.body == b"Service Unavailable"
            break
        time.sleep(0.05)
    assert statuses[-1] == 503, statuses
    # Meanwhile the instance still serves traffic: it is draining, not gone.
    assert get(proxy.ports["web"], "/x").status == 200
    assert proxy.wait(10) == 0, proxy.stderr()


def test_a_custom_terminating_status(turnout) -> None:
    proxy = turnout(
        WHO,
        entrypoint_extra='transport.lifeCycle.requestAcceptGraceTimeout = "2s"',
        static_extra='[ping]\nentryPoint = "web"\nterminatingStatusCode = 204\n',
    )
    proxy.signal(signal.SIGTERM)
    deadline = time.monotonic() + 1.5
    status = 0
    while time.monotonic() < deadline and status != 204:
        status = get(proxy.port, "/ping").status
        time.sleep(0.05)
    assert status == 204
    assert proxy.wait(10) == 0, proxy.stderr()
