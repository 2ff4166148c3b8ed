"""``turnout explain``: router chosen and others that matched, middlewares, service, server."""

from __future__ import annotations

from pathlib import Path

from proxy.cli import main

DYNAMIC = """
[http.routers.api]
rule = "Host(`app.example`) && PathPrefix(`/api`)"
service = "api"
middlewares = ["strip", "tag"]
[http.routers.v2]
rule = "Host(`app.example`) && PathPrefix(`/v2`)"
service = "api"
[http.routers.site]
rule = "Host(`app.example`)"
service = "site"
[http.routers.admin]
rule = "Host(`app.example`) && ClientIP(`10.0.0.0/8`)"
service = "site"
priority = 500
[http.routers.mobile]
rule = "Host(`app.example`) && Header(`X-Client`, `mobile`)"
service = "whoami@internal"
priority = 400

[http.middlewares.strip.stripPrefix]
prefixes = ["/api"]
[http.middlewares.tag.headers.customRequestHeaders]
X-Env = "prod"
X-Debug = ""

[http.services.api.loadBalancer]
passHostHeader = false
[[http.services.api.loadBalancer.servers]]
url = "http://10.1.0.1:8080"
weight = 3
[[http.services.api.loadBalancer.servers]]
url = "http://10.1.0.2:8080"
weight = 1
[http.services.site.loadBalancer]
[[http.services.site.loadBalancer.servers]]
url = "http://10.2.0.1:80"
"""


def explain(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    (tmp_path / "dynamic.toml").write_text(DYNAMIC)
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = ":8080"\n'
        f'[providers.file]\nfilename = "{tmp_path / "dynamic.toml"}"\n'
    )
    code = main(["explain", "-c", str(static), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_chosen_router_the_others_that_matched_and_the_path_to_the_server(
    tmp_path, capsys
) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = explain(tmp_path, capsys, "GET", "http://app.example/v2/users?id=7")
    lines = out.splitlines()
    assert lines[0] == "GET http://app.example/v2/users?id=7"
    tried = [line.split()[:4] for line in lines if "priority" in line]
    assert tried == [
        ["->", "v2@file", "priority", "40"],
        ["site@file", "priority", "19", "Host(`app.example`)"],
    ]
    assert "Chosen: v2@file" in lines
    assert "Middlewares: none" in lines
    assert "  api@file  loadBalancer (wrr), passHostHeader false" in lines
    assert "    * http://10.1.0.1:8080  weight 3  <- next request goes here" in lines
    assert "      http://10.1.0.2:8080  weight 1" in lines
    assert "Sent to http://10.1.0.1:8080 as:" in lines
    assert "  GET /v2/users?id=7 HTTP/1.1" in lines
    assert "  Host: 10.1.0.1:8080" in lines  # passHostHeader false
    assert "  X-Forwarded-For: 127.0.0.1" in lines


def test_what_each_middleware_does_to_the_request(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = explain(tmp_path, capsys, "GET", "http://app.example/api/users?id=7")
    lines = out.splitlines()
    assert "Chosen: api@file" in lines
    assert (
        "  1. strip@file (stripPrefix): path /api/users -> /users, adds X-Forwarded-Prefix: /api"
        in lines
    )
    assert "  2. tag@file (headers): sets X-Env: prod; removes X-Debug" in lines
    assert "  GET /users?id=7 HTTP/1.1" in lines
    assert "  X-Env: prod" in lines
    # While middlewares are refused by `turnout run`, explain says so and still explains.
    if code == 1:
        assert "would be refused by turnout run" in err


def test_client_ip_and_headers_change_the_choice(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = explain(tmp_path, capsys, "--client-ip", "10.3.4.5", "GET", "http://app.example/")
    assert "Chosen: admin@file" in out.splitlines()
    _, out, _ = explain(tmp_path, capsys, "-H", "X-Client: mobile", "GET", "http://app.example/x")
    lines = out.splitlines()
    assert "Chosen: mobile@file" in lines
    assert "  whoami@internal: built-in service" in lines


def test_no_router_matches(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = explain(tmp_path, capsys, "GET", "http://other.example/")
    assert "No router matches (" in out
    assert "404 page not found" in out


def test_bad_requests_are_command_line_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = explain(tmp_path, capsys, "--entrypoint", "nope", "GET", "http://a/")
    assert code == 2
    assert "unknown entry point 'nope' (known: web)" in err
    code, _, err = explain(tmp_path, capsys, "GET", "ftp://a/")
    assert code == 2
