"""The API over real sockets against a running turnout: every endpoint, 404s, queries, refusals."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from tests.integration.harness import Response, connect, get, request, wait_until

DYNAMIC = """
[http.routers.shop]
rule = "Host(`shop.example`)"
service = "shop"
middlewares = ["strip", "auth"]
[http.routers.blog]
rule = "Host(`blog.example`) && PathPrefix(`/posts`)"
service = "blog"
[http.routers.who]
rule = "PathPrefix(`/who`)"
service = "whoami@internal"
[http.middlewares.strip.stripPrefix]
prefixes = ["/shop"]
[http.middlewares.auth.basicAuth]
users = ["alice:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"]
[http.services.shop.loadBalancer]
[[http.services.shop.loadBalancer.servers]]
url = "{shop}"
[[http.services.shop.loadBalancer.servers]]
url = "http://127.0.0.1:9"
weight = 0
[http.services.blog.loadBalancer]
[[http.services.blog.loadBalancer.servers]]
url = "{blog}"
"""

API = "[api]\ninsecure = true\n"


def api(proxy, path: str) -> tuple[int, object, Response]:
    response = get(proxy.ports["traefik"], path)
    assert response.header("Content-Type") == "application/json", response.raw_head
    return response.status, json.loads(response.body), response


@pytest.fixture
def running(turnout, backend):
    shop, blog = backend(), backend()
    proxy = turnout(
        DYNAMIC.format(shop=shop.url, blog=blog.url),
        entrypoints=("web", "traefik"),
        static_extra=API,
    )
    proxy.backends = (shop, blog)
    return proxy


def names(items: object) -> list[str]:
    assert isinstance(items, list)
    return [item["name"] for item in items]


def test_overview_counts_and_features(running) -> None:
    status, body, _ = api(running, "/api/overview")
    assert status == 200
    # 3 user routers + api@internal + dashboard@internal
    assert body["http"]["routers"] == {"total": 5, "warnings": 0, "errors": 0}
    assert body["http"]["middlewares"] == {"total": 2, "warnings": 0, "errors": 0}
    assert body["http"]["services"]["total"] == 2 + 3  # shop, blog + api, dashboard, whoami
    assert body["tcp"]["routers"] == {"total": 0, "warnings": 0, "errors": 0}
    assert set(body["udp"]) == {"routers", "services"}
    assert body["features"] == {"tracing": "", "metrics": "", "accessLog": False, "hub": False}
    assert body["providers"] == ["File"]


def test_routers_list_and_one(running) -> None:
    status, body, response = api(running, "/api/http/routers")
    assert status == 200
    assert response.header("X-Next-Page") == "1"
    assert names(body) == sorted(
        ["api@internal", "blog@file", "dashboard@internal", "shop@file", "who@file"]
    )
    status, shop, _ = api(running, "/api/http/routers/shop@file")
    assert status == 200
    assert shop == {
        "middlewares": ["strip", "auth"],
        "service": "shop",
        "rule": "Host(`shop.example`)",
        "status": "enabled",
        "using": ["web"],
        "name": "shop@file",
        "provider": "file",
    }
    _, internal, _ = api(running, "/api/http/routers/api@internal")
    assert internal["entryPoints"] == ["traefik"]
    assert internal["priority"] == 2**63 - 2
    assert internal["provider"] == "internal"


def test_services_carry_server_status_in_flight_and_users(running) -> None:
    shop, _ = running.backends
    status, body, _ = api(running, "/api/http/services/shop@file")
    assert status == 200
    assert body["type"] == "loadbalancer"
    assert body["usedBy"] == ["shop@file"]
    assert body["serverStatus"] == {shop.url: "UP", "http://127.0.0.1:9": "UP"}
    assert body["inFlightRequests"] == 0
    assert body["loadBalancer"]["servers"][0]["url"] == shop.url
    _, services, _ = api(running, "/api/http/services")
    internal = {item["name"]: item for item in services}["whoami@internal"]
    assert internal == {
        "status": "enabled",
        "usedBy": ["who@file"],
        "name": "whoami@internal",
        "provider": "internal",
    }


def test_in_flight_requests_are_counted_while_a_backend_holds_them(turnout, backend) -> None:
    release = threading.Event()

    async def slow(received):
        while not release.is_set():
            await asyncio.sleep(0.01)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    held = backend(responder=slow)
    proxy = turnout(
        DYNAMIC.format(shop=held.url, blog=held.url),
        entrypoints=("web", "traefik"),
        static_extra=API,
    )
    clients = [connect(proxy.ports["web"]) for _ in range(3)]
    try:
        for sock in clients:
            sock.sendall(b"GET /posts/1 HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        assert wait_until(lambda: len(held.requests) == 3)
        _, body, _ = api(proxy, "/api/http/services/blog@file")
        assert body["inFlightRequests"] == 3
    finally:
        release.set()
        for sock in clients:
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.close()
    assert wait_until(
        lambda: api(proxy, "/api/http/services/blog@file")[1]["inFlightRequests"] == 0
    )


def test_middlewares_list_and_one(running) -> None:
    _, body, _ = api(running, "/api/http/middlewares")
    assert names(body) == ["auth@file", "strip@file"]
    status, strip, _ = api(running, "/api/http/middlewares/strip@file")
    assert status == 200
    assert strip["type"] == "stripprefix"
    assert strip["stripPrefix"]["prefixes"] == ["/shop"]
    assert strip["usedBy"] == ["shop@file"]
    assert strip["status"] == "enabled"


def test_entrypoints(running) -> None:
    _, body, response = api(running, "/api/entrypoints")
    assert names(body) == ["traefik", "web"]
    assert response.header("X-Next-Page") == "1"
    status, web, _ = api(running, "/api/entrypoints/web")
    assert status == 200
    assert web["address"] == f"127.0.0.1:{running.ports['web']}"
    assert web["transport"]["lifeCycle"]["graceTimeOut"] == "10s"


def test_tcp_and_udp_lists_are_empty_without_such_routers(running) -> None:
    for path in (
        "/api/tcp/routers",
        "/api/tcp/services",
        "/api/tcp/middlewares",
        "/api/udp/routers",
        "/api/udp/services",
    ):
        status, body, response = api(running, path)
        assert (status, body, response.header("X-Next-Page")) == (200, [], "1"), path


def test_rawdata_and_version(running) -> None:
    status, raw, _ = api(running, "/api/rawdata")
    assert status == 200
    assert set(raw) == {"routers", "middlewares", "services"}
    assert raw["routers"]["blog@file"]["rule"] == "Host(`blog.example`) && PathPrefix(`/posts`)"
    assert raw["services"]["blog@file"]["serverStatus"] == {running.backends[1].url: "UP"}
    status, version, _ = api(running, "/api/version")
    assert status == 200
    assert set(version) == {"Version", "Codename", "startDate"}
    assert version["startDate"].startswith(time.strftime("%Y-", time.gmtime()))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/http/routers/nope@file", "router not found: nope@file"),
        ("/api/http/services/nope", "service not found: nope"),
        ("/api/http/middlewares/nope@file", "middleware not found: nope@file"),
        ("/api/tcp/routers/nope", "router not found: nope"),
        ("/api/tcp/services/nope", "service not found: nope"),
        ("/api/tcp/middlewares/nope", "middleware not found: nope"),
        ("/api/udp/routers/nope", "router not found: nope"),
        ("/api/udp/services/nope", "service not found: nope"),
        ("/api/entrypoints/nope", "entry point not found: nope"),
        ("/api/http/routers/a%2Fb@file", "router not found: a/b@file"),
        ("/api/nothing", "not found: /api/nothing"),
        ("/api/udp/middlewares", "not found: /api/udp/middlewares"),
    ],
)
def test_unknown_names_answer_404_json(running, path: str, message: str) -> None:
    status, body, _ = api(running, path)
    assert (status, body) == (404, {"message": message})


def test_only_get_and_head(running) -> None:
    port = running.ports["traefik"]
    response = request(port, b"DELETE /api/overview HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 405
    assert response.header("Allow") == "GET, HEAD"
    head = request(port, b"HEAD /api/overview HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.status == 200 and head.body == b""
    assert int(head.header("Content-Length") or 0) > 100


def test_search_status_provider_and_service_filters(running) -> None:
    _, body, _ = api(running, "/api/http/routers?search=SHOP")
    assert names(body) == ["shop@file"]
    _, body, _ = api(running, "/api/http/routers?search=posts")  # the rule is searched too
    assert names(body) == ["blog@file"]
    _, body, _ = api(running, "/api/http/routers?provider=internal")
    assert names(body) == ["api@internal", "dashboard@internal"]
    _, body, _ = api(running, "/api/http/routers?status=disabled")
    assert body == []
    _, body, _ = api(running, "/api/http/routers?status=enabled&provider=file")
    assert names(body) == ["blog@file", "shop@file", "who@file"]
    _, body, _ = api(running, "/api/http/routers?serviceName=shop@file")
    assert names(body) == ["shop@file"]
    _, body, _ = api(running, "/api/http/routers?middlewareName=auth")
    assert names(body) == ["shop@file"]
    _, body, _ = api(running, "/api/http/services?search=who")
    assert names(body) == ["whoami@internal"]
    _, body, _ = api(running, "/api/http/middlewares?search=str")
    assert names(body) == ["strip@file"]


def test_pages(running) -> None:
    _, first, response = api(running, "/api/http/routers?per_page=2")
    assert names(first) == ["api@internal", "blog@file"]
    assert response.header("X-Next-Page") == "2"
    _, second, response = api(running, "/api/http/routers?per_page=2&page=2")
    assert names(second) == ["dashboard@internal", "shop@file"]
    assert response.header("X-Next-Page") == "3"
    _, third, response = api(running, "/api/http/routers?per_page=2&page=3")
    assert names(third) == ["who@file"]
    assert response.header("X-Next-Page") == "1"
    for query, message in (
        ("per_page=2&page=4", "invalid request: page: 4, per_page: 2"),
        ("per_page=0", "invalid request: per_page: 0"),
        ("page=x", "invalid request: page: 0"),
    ):
        status, body, _ = api(running, f"/api/http/routers?{query}")
        assert (status, body) == (400, {"message": message}), query


def test_a_refused_update_is_shown_with_its_errors(running) -> None:
    shop, blog = running.backends
    broken = (
        DYNAMIC.format(shop=shop.url, blog=blog.url).replace(
            'rule = "Host(`blog.example`) && PathPrefix(`/posts`)"',
            'rule = "Host(`blog.example`) &&"',
        )
        + '[http.routers.extra]\nrule = "Path(`/extra`)"\nservice = "missing"\n'
    )
    running.dynamic_path.write_text(broken)

    def refused() -> bool:
        return api(running, "/api/providers")[1][0]["lastError"] is not None

    assert wait_until(refused, 10), running.stderr()
    _, providers, _ = api(running, "/api/providers")
    (file,) = providers
    assert file["name"] == "file"
    assert file["refusals"] == 1
    errors = {(e["path"], e["message"]) for e in file["lastError"]["errors"]}
    assert ("http.routers.extra.service", "unknown service 'missing'") in errors
    assert any(path == "http.routers.blog.rule" for path, _ in errors), errors
    assert all(e["file"] == str(running.dynamic_path) for e in file["lastError"]["errors"])
    # The live router keeps serving its previous rule: a warning with the refusal.
    _, blog_router, _ = api(running, "/api/http/routers/blog@file")
    assert blog_router["status"] == "warning"
    assert blog_router["rule"] == "Host(`blog.example`) && PathPrefix(`/posts`)"
    assert blog_router["error"][0].startswith("refused update: rule: ")
    # The router only the refused update has is shown, disabled, with its error.
    _, extra, _ = api(running, "/api/http/routers/extra@file")
    assert extra["status"] == "disabled"
    assert extra["error"] == ["refused update: service: unknown service 'missing'"]
    _, overview, _ = api(running, "/api/overview")
    assert overview["http"]["routers"] == {"total": 6, "warnings": 1, "errors": 1}
    _, disabled, _ = api(running, "/api/http/routers?status=disabled")
    assert names(disabled) == ["extra@file"]
    # Routing did not change.
    assert get(running.ports["web"], "/posts/1", host="blog.example").status == 200
    # A fixed update clears it all.
    running.dynamic_path.write_text(DYNAMIC.format(shop=shop.url, blog=blog.url))
    assert wait_until(lambda: not refused(), 10)
    _, blog_router, _ = api(running, "/api/http/routers/blog@file")
    assert blog_router["status"] == "enabled" and "error" not in blog_router
    assert api(running, "/api/http/routers/extra@file")[0] == 404


def test_api_routed_by_a_user_router_without_insecure(turnout) -> None:
    dynamic = (
        "[http.routers.dash]\n"
        'rule = "PathPrefix(`/api`) || PathPrefix(`/dashboard`)"\n'
        'service = "api@internal"\n'
    )
    proxy = turnout(dynamic, static_extra="[api]\n")
    response = get(proxy.port, "/api/http/routers/dash@file")
    assert response.status == 200
    assert json.loads(response.body)["service"] == "api@internal"
    # api@internal also serves the dashboard, as in Traefik v3.
    redirect = get(proxy.port, "/dashboard")
    assert (redirect.status, redirect.header("Location")) == (302, "/dashboard/")
    page = get(proxy.port, "/dashboard/")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    # No traefik entry point is created without api.insecure.
    _, body, _ = 0, json.loads(get(proxy.port, "/api/entrypoints").body), None
    assert names(body) == ["web"]


def test_a_server_failing_its_health_check_is_down(turnout, backend) -> None:
    alive = backend()
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port here
    dynamic = (
        '[http.routers.app]\nrule = "PathPrefix(`/`)"\nservice = "app"\n'
        "[http.services.app.loadBalancer.healthCheck]\n"
        'path = "/health"\ninterval = "100ms"\ntimeout = "1s"\n'
        f'[[http.services.app.loadBalancer.servers]]\nurl = "{alive.url}"\n'
        f'[[http.services.app.loadBalancer.servers]]\nurl = "{dead}"\n'
    )
    proxy = turnout(dynamic, entrypoints=("web", "traefik"), static_extra=API)

    def states() -> dict[str, str]:
        return api(proxy, "/api/http/services/app@file")[1]["serverStatus"]

    assert wait_until(lambda: states()[dead] == "DOWN", 10), states()
    _, body, _ = api(proxy, "/api/http/services/app@file")
    assert body["serverStatus"] == {alive.url: "UP", dead: "DOWN"}
    assert set(body["serverReasons"]) == {dead}
    assert body["serverReasons"][dead]  # says why


def test_traffic_counts_requests_per_router_from_the_metrics_registry(turnout, backend) -> None:
    alive = backend()
    dynamic = DYNAMIC.format(shop="http://127.0.0.1:9", blog=alive.url)
    proxy = turnout(dynamic, entrypoints=("web", "traefik"), static_extra=API)
    for _ in range(7):
        assert get(proxy.ports["web"], "/posts/1", host="blog.example").status == 200
    for _ in range(3):
        assert get(proxy.ports["web"], "/who", host="x").status == 200
    assert get(proxy.ports["web"], "/nowhere", host="x").status == 404
    status, body, _ = api(proxy, "/api/traffic")
    assert status == 200
    assert body["available"] is True
    assert body["routers"]["blog@file"] == {
        "requests": 7,
        "clientErrors": 0,
        "serverErrors": 0,
        "duration": body["routers"]["blog@file"]["duration"],
    }
    assert body["routers"]["who@file"]["requests"] == 3
    assert body["services"]["blog@file"]["requests"] == 7
    assert body["entrypoints"]["web"]["requests"] == 11
    assert body["entrypoints"]["web"]["clientErrors"] == 1
    assert body["entrypoints"]["traefik"]["openConnections"] == 1  # this request's
    assert "openConnections" not in body["routers"]["blog@file"]
    assert 0 < body["routers"]["blog@file"]["duration"] < 7


def test_tcp_routers_and_services_are_listed(turnout) -> None:
    dynamic = (
        '[http.routers.who]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'
        '[tcp.routers.db]\nentryPoints = ["db"]\nrule = "HostSNI(`*`)"\nservice = "db"\n'
        "[[tcp.services.db.loadBalancer.servers]]\n"
        'address = "127.0.0.1:9"\n'
    )
    proxy = turnout(dynamic, entrypoints=("web", "traefik", "db"), static_extra=API)
    status, routers, _ = api(proxy, "/api/tcp/routers")
    assert status == 200
    assert routers == [
        {
            "entryPoints": ["db"],
            "service": "db",
            "rule": "HostSNI(`*`)",
            "status": "enabled",
            "using": ["db"],
            "name": "db@file",
            "provider": "file",
        }
    ]
    _, service, _ = api(proxy, "/api/tcp/services/db@file")
    assert service["type"] == "loadbalancer"
    assert service["usedBy"] == ["db@file"]
    assert service["loadBalancer"]["servers"][0]["address"] == "127.0.0.1:9"
    _, overview, _ = api(proxy, "/api/overview")
    assert overview["tcp"]["routers"]["total"] == 1
    assert overview["tcp"]["services"]["total"] == 1


def test_debug_vars_with_api_debug(turnout) -> None:
    who = '[http.routers.who]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'
    proxy = turnout(who, entrypoints=("web", "traefik"), static_extra=API + "debug = true\n")
    status, body, _ = api(proxy, "/debug/vars")
    assert status == 200
    assert body["connections"]["traefik"] >= 1  # this very request
    assert body["fds"] > 0 and body["tasks"] > 0 and body["rss_kib"] > 0
    assert len(body["gc"]) == 3
    assert api(proxy, "/debug/pprof/")[0] == 404
    _, routers, _ = api(proxy, "/api/http/routers?provider=internal")
    assert "debug@internal" in names(routers)


def test_no_debug_endpoint_without_api_debug(running) -> None:
    response = get(running.ports["traefik"], "/debug/vars")
    assert response.status == 404
    assert b"fds" not in response.body


def test_a_weighted_service_is_listed_with_its_type(turnout, backend) -> None:
    alive = backend()
    dynamic = (
        '[http.routers.canary]\nrule = "PathPrefix(`/`)"\nservice = "canary"\n'
        '[[http.services.canary.weighted.services]]\nname = "v1"\nweight = 3\n'
        '[[http.services.canary.weighted.services]]\nname = "v2"\nweight = 1\n'
        f'[[http.services.v1.loadBalancer.servers]]\nurl = "{alive.url}"\n'
        f'[[http.services.v2.loadBalancer.servers]]\nurl = "{alive.url}"\n'
    )
    proxy = turnout(dynamic, entrypoints=("web", "traefik"), static_extra=API)
    assert get(proxy.ports["web"], "/").status == 200
    status, body, _ = api(proxy, "/api/http/services/canary@file")
    assert status == 200
    assert body["type"] == "weighted"
    assert body["usedBy"] == ["canary@file"]
    assert body["inFlightRequests"] == 0
    assert [s["name"] for s in body["weighted"]["services"]] == ["v1", "v2"]
    assert "serverStatus" not in body
    _, v1, _ = api(proxy, "/api/http/services/v1@file")
    assert v1["serverStatus"] == {alive.url: "UP"}


def test_udp_routers_and_services_are_listed(turnout) -> None:
    from tests.integration.harness import free_port

    dns = free_port()
    dynamic = (
        '[http.routers.who]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'
        '[udp.routers.dns]\nentryPoints = ["dns"]\nservice = "dns"\n'
        '[[udp.services.dns.loadBalancer.servers]]\naddress = "127.0.0.1:9"\n'
    )
    proxy = turnout(
        dynamic,
        entrypoints=("web", "traefik"),
        static_extra=API + f'[entryPoints.dns]\naddress = "127.0.0.1:{dns}/udp"\n',
    )
    status, routers, _ = api(proxy, "/api/udp/routers")
    assert status == 200
    assert routers == [
        {
            "entryPoints": ["dns"],
            "service": "dns",
            "status": "enabled",
            "using": ["dns"],
            "name": "dns@file",
            "provider": "file",
        }
    ]
    _, service, _ = api(proxy, "/api/udp/services/dns@file")
    assert (service["type"], service["usedBy"]) == ("loadbalancer", ["dns@file"])
    _, entrypoints, _ = api(proxy, "/api/entrypoints")
    assert names(entrypoints) == ["dns", "traefik", "web"]
    # The HTTP router without entryPoints is on web only: not on traefik, not on UDP.
    _, who, _ = api(proxy, "/api/http/routers/who@file")
    assert who["using"] == ["web"]


def test_overview_names_the_metrics_backend_and_access_log(turnout, tmp_path) -> None:
    who = '[http.routers.who]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n'
    access_log = tmp_path / "access.log"
    proxy = turnout(
        who,
        entrypoints=("web", "traefik"),
        static_extra=API + f'[metrics.prometheus]\n[accessLog]\nfilePath = "{access_log}"\n',
    )
    _, overview, _ = api(proxy, "/api/overview")
    assert overview["features"] == {
        "tracing": "",
        "metrics": "Prometheus",
        "accessLog": True,
        "hub": False,
    }
    # prometheus@internal shares the traefik entry point with the API.
    assert get(proxy.ports["traefik"], "/metrics").status == 200
    _, routers, _ = api(proxy, "/api/http/routers?provider=internal")
    assert names(routers) == ["api@internal", "dashboard@internal", "prometheus@internal"]
