"""Router selection through a real Turnout: rules, priorities, entry points, 404.

Issue 2, section 4 as a user sees it: requests over real sockets, answered by
the backend of the router Traefik would have chosen.
"""

from __future__ import annotations

from tests.integration.harness import ResponseReader, connect, get, ok_response, request


def named(name: str):
    return lambda received: ok_response(name.encode())


def routing(routers: list[tuple[str, str, str, str]], services: dict[str, str]) -> str:
    """routers: (name, rule, service, extra TOML lines); services: name -> url."""
    text = ""
    for name, rule, service, extra in routers:
        text += f"[http.routers.{name}]\nrule = '{rule}'\nservice = '{service}'\n{extra}\n"
    for name, url in services.items():
        text += f'[[http.services.{name}.loadBalancer.servers]]\nurl = "{url}"\n'
    return text


def start(backend, turnout, routers, names, **kwargs):
    servers = {name: backend(responder=named(name)) for name in names}
    proxy = turnout(routing(routers, {name: s.url for name, s in servers.items()}), **kwargs)
    return proxy, servers


def answer(port: int, path: str = "/", host: str = "example.com", headers: str = "") -> str:
    response = get(port, path, host=host, headers=headers)
    assert response.status == 200, (path, host, response)
    return response.body.decode()


def test_host_rules_pick_the_backend(backend, turnout):
    proxy, _ = start(
        backend,
        turnout,
        [
            ("a", "Host(`a.example.com`)", "a", ""),
            ("b", "Host(`b.example.com`) || Host(`www.b.example.com`)", "b", ""),
        ],
        "ab",
    )
    assert answer(proxy.port, host="a.example.com") == "a"
    assert answer(proxy.port, host="b.example.com") == "b"
    assert answer(proxy.port, host="www.b.example.com") == "b"
    # Compared lower-cased, and without the port.
    assert answer(proxy.port, host="A.Example.COM:8080") == "a"
    assert get(proxy.port, host="c.example.com").status == 404


def test_path_prefix_is_a_plain_string_prefix(backend, turnout):
    proxy, servers = start(
        backend,
        turnout,
        [
            ("api", "PathPrefix(`/api`)", "api", ""),
            ("site", "PathPrefix(`/`)", "site", ""),
        ],
        ["api", "site"],
    )
    assert answer(proxy.port, "/api") == "api"
    assert answer(proxy.port, "/api/v1/users?x=1") == "api"
    assert answer(proxy.port, "/apix") == "api"
    assert answer(proxy.port, "/ap") == "site"
    assert answer(proxy.port, "/") == "site"
    # The path is passed on unchanged.
    assert [r.target for r in servers["api"].requests] == ["/api", "/api/v1/users?x=1", "/apix"]


def test_longer_rule_wins_by_default_and_explicit_priority_overrides(backend, turnout):
    proxy, _ = start(
        backend,
        turnout,
        [
            ("short", "PathPrefix(`/`)", "short", ""),
            ("long", "PathPrefix(`/docs`)", "long", ""),
            ("forced", "PathPrefix(`/`) && Host(`forced.example.com`)", "forced", ""),
            ("low", "PathPrefix(`/docs`) && Host(`forced.example.com`)", "low", "priority = 1"),
        ],
        ["short", "long", "forced", "low"],
    )
    assert answer(proxy.port, "/docs/x") == "long"
    assert answer(proxy.port, "/other") == "short"
    # "low" has the longest rule, but its explicit priority 1 puts it last.
    assert answer(proxy.port, "/docs/x", host="forced.example.com") == "forced"


def test_explicit_priority_beats_a_longer_rule(backend, turnout):
    proxy, _ = start(
        backend,
        turnout,
        [
            ("catchall", "PathPrefix(`/`)", "catchall", "priority = 1000"),
            ("specific", "Host(`x.example.com`) && PathPrefix(`/specific`)", "specific", ""),
        ],
        ["catchall", "specific"],
    )
    assert answer(proxy.port, "/specific", host="x.example.com") == "catchall"


def test_routers_listen_on_their_entry_points(backend, turnout):
    proxy, _ = start(
        backend,
        turnout,
        [
            ("admin", "PathPrefix(`/admin`)", "admin", 'entryPoints = ["admin"]'),
            ("public", "PathPrefix(`/`)", "public", 'entryPoints = ["web"]'),
            ("both", "PathPrefix(`/both`)", "both", ""),
        ],
        ["admin", "public", "both"],
        entrypoints=("web", "admin"),
    )
    web, admin = proxy.ports["web"], proxy.ports["admin"]
    assert answer(admin, "/admin/panel") == "admin"
    assert answer(web, "/admin/panel") == "public"
    assert get(admin, "/else").status == 404
    assert answer(web, "/else") == "public"
    # A router without entryPoints listens on all of them.
    assert answer(web, "/both") == "both"
    assert answer(admin, "/both") == "both"


def test_other_matchers_through_the_proxy(backend, turnout):
    proxy, _ = start(
        backend,
        turnout,
        [
            ("post", "Method(`POST`) && PathPrefix(`/m`)", "post", ""),
            ("header", "Header(`X-Tenant`, `blue`)", "header", ""),
            ("query", "Query(`debug`, `1`)", "query", ""),
            ("regexp", "PathRegexp(`^/items/[0-9]+$`)", "regexp", ""),
            ("hostre", "HostRegexp(`^[a-z]+\\.re\\.example\\.com$`)", "hostre", ""),
            ("not", "!PathPrefix(`/m`) && PathPrefix(`/`)", "fallback", "priority = 1"),
        ],
        ["post", "header", "query", "regexp", "hostre", "fallback"],
    )
    port = proxy.port
    posted = request(port, b"POST /m HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert posted.body == b"post"
    assert get(port, "/m").status == 404
    assert answer(port, "/x", headers="X-Tenant: blue\r\n") == "header"
    assert answer(port, "/x", headers="X-Tenant: red\r\n") == "fallback"
    assert answer(port, "/x?debug=1") == "query"
    assert answer(port, "/items/42") == "regexp"
    assert answer(port, "/items/4x") == "fallback"
    assert answer(port, "/x", host="abc.re.example.com") == "hostre"


def test_client_ip_uses_the_connection_address_not_x_forwarded_for(backend, turnout):
    proxy, _ = start(
        backend,
        turnout,
        [
            ("local", "ClientIP(`127.0.0.0/8`)", "local", ""),
            ("office", "ClientIP(`10.1.2.3`)", "office", "priority = 100"),
        ],
        ["local", "office"],
        entrypoint_extra="forwardedHeaders.insecure = true",
    )
    assert answer(proxy.port, headers="X-Forwarded-For: 10.1.2.3\r\n") == "local"
    assert answer(proxy.port, headers="X-Real-Ip: 10.1.2.3\r\n") == "local"


def test_no_matching_router_is_404_and_the_connection_stays_usable(backend, turnout):
    proxy, servers = start(backend, turnout, [("a", "Host(`a.example.com`)", "a", "")], ["a"])
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /nothing HTTP/1.1\r\nHost: nowhere.example.com\r\n\r\n")
        missing = reader.read()
        sock.sendall(b"GET /something HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        found = reader.read()
    assert missing.status == 404
    assert missing.body == b"404 page not found\n"
    assert found.status == 200 and found.body == b"a"
    assert [r.target for r in servers["a"].requests] == ["/something"]


def test_entry_point_without_routers_answers_404(backend, turnout):
    proxy, servers = start(
        backend,
        turnout,
        [("a", "PathPrefix(`/`)", "a", 'entryPoints = ["web"]')],
        ["a"],
        entrypoints=("web", "empty"),
    )
    assert get(proxy.ports["empty"]).status == 404
    assert answer(proxy.ports["web"]) == "a"
    assert len(servers["a"].requests) == 1


def test_internal_whoami_service(turnout):
    proxy = turnout(
        '[http.routers.who]\nrule = "PathPrefix(`/who`)"\nservice = "whoami@internal"\n'
    )
    response = get(proxy.port, "/who/am/i?x=1", host="me.example.com", headers="X-Test: 1\r\n")
    assert response.status == 200
    text = response.body.decode()
    assert "GET /who/am/i?x=1 HTTP/1.1" in text
    assert "Host: me.example.com" in text
    assert "X-Test: 1" in text
    assert "IP: 127.0.0.1" in text
    assert get(proxy.port, "/other").status == 404
