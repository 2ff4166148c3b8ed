"""digestAuth through a real turnout: RFC 7616 MD5 digest with qop=auth, as Traefik answers it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.middlewares.digest_auth import parse_pairs
from tests.integration.harness import Backend, Response, Turnout, get
from tests.middlewares.support import (  # noqa: F401  (fixtures)
    app_backend_fixture,
    check,
    last,
    proxy_factory_fixture,
    router,
    service,
)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def ha1(user: str, realm: str, password: str) -> str:
    return md5(f"{user}:{realm}:{password}")


@pytest.fixture(scope="module")
def proxy(
    proxy_factory: Callable[..., Turnout],
    app_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
) -> Turnout:
    users_file = tmp_path_factory.mktemp("users") / "htdigest"
    users_file.write_text(
        f"# htdigest\nfile:traefik:{ha1('file', 'traefik', 'file-pw')}\n"
        f"other:elsewhere:{ha1('other', 'elsewhere', 'pw')}\n"
    )
    middlewares = f"""
[http.middlewares.digest.digestAuth]
users = ["alice:traefik:{ha1("alice", "traefik", "alice-pw")}"]
usersFile = "{users_file}"
headerField = "X-WebAuth-User"
[http.middlewares.realm.digestAuth]
users = ["alice:vault:{ha1("alice", "vault", "alice-pw")}"]
realm = "vault"
removeHeader = true
"""
    routers = router("digest", ["digest"]) + router("realm", ["realm"])
    return proxy_factory(middlewares + routers + service(app_backend.url))


def challenge(proxy: Turnout, host: str) -> dict[str, str]:
    response = get(proxy.port, "/", host=host)
    assert response.status == 401
    value = response.header("WWW-Authenticate") or ""
    assert value.startswith("Digest ")
    return parse_pairs(value[len("Digest ") :])


def authorization(
    params: dict[str, str],
    user: str,
    password: str,
    uri: str,
    nc: int,
    method: str = "GET",
    realm: str = "traefik",
) -> str:
    nc_text = f"{nc:08x}"
    cnonce = "0a4f113b"
    response = md5(
        f"{ha1(user, realm, password)}:{params['nonce']}:{nc_text}:{cnonce}:auth:"
        + md5(f"{method}:{uri}")
    )
    return (
        f'Authorization: Digest username="{user}", realm="{realm}", nonce="{params["nonce"]}", '
        f'uri="{uri}", qop=auth, nc={nc_text}, cnonce="{cnonce}", response="{response}", '
        f'opaque="{params["opaque"]}", algorithm=MD5\r\n'
    )


def fetch(proxy: Turnout, host: str, target: str, header: str) -> Response:
    return get(proxy.port, target, host=host, headers=header)


def test_the_challenge(proxy: Turnout) -> None:
    response = get(proxy.port, host="digest.test")
    assert response.status == 401
    assert response.body == b"401 Unauthorized\n"
    params = parse_pairs((response.header("WWW-Authenticate") or "")[len("Digest ") :])
    assert params["realm"] == "traefik"
    assert params["algorithm"] == "MD5"
    assert params["qop"] == "auth"
    assert params["nonce"] and params["opaque"]
    # A new nonce per challenge, one opaque per middleware.
    again = challenge(proxy, "digest.test")
    assert again["nonce"] != params["nonce"]
    assert again["opaque"] == params["opaque"]


def test_valid_credentials_pass_and_name_the_user(proxy: Turnout, app_backend: Backend) -> None:
    params = challenge(proxy, "digest.test")
    header = authorization(params, "alice", "alice-pw", "/a?x=1", 1)
    assert fetch(proxy, "digest.test", "/a?x=1", header).status == 200
    received = last(app_backend)
    assert received.header("X-WebAuth-User") == "alice"
    assert received.header("Authorization") is not None  # kept without removeHeader
    # The users file counts too; the next nonce count on the same nonce is fine.
    header = authorization(params, "file", "file-pw", "/b", 2)
    assert fetch(proxy, "digest.test", "/b", header).status == 200


def test_a_replayed_nonce_count_gets_a_stale_challenge(proxy: Turnout) -> None:
    params = challenge(proxy, "digest.test")
    header = authorization(params, "alice", "alice-pw", "/r", 5)
    assert fetch(proxy, "digest.test", "/r", header).status == 200
    replayed = fetch(proxy, "digest.test", "/r", header)
    assert replayed.status == 401
    assert (replayed.header("WWW-Authenticate") or "").endswith("stale=true")
    header = authorization(params, "alice", "alice-pw", "/r", 6)
    assert fetch(proxy, "digest.test", "/r", header).status == 200


def test_an_unknown_nonce_is_stale(proxy: Turnout) -> None:
    params = challenge(proxy, "digest.test")
    params["nonce"] = "bm90LWlzc3VlZA=="
    response = fetch(proxy, "digest.test", "/", authorization(params, "alice", "alice-pw", "/", 1))
    assert response.status == 401
    assert "stale=true" in (response.header("WWW-Authenticate") or "")


@pytest.mark.parametrize(
    ("user", "password", "uri", "target"),
    [
        ("alice", "wrong", "/", "/"),
        ("nobody", "alice-pw", "/", "/"),
        ("other", "pw", "/", "/"),  # a user of another realm
        ("alice", "alice-pw", "/other", "/"),  # uri is not the request's
    ],
)
def test_bad_credentials_are_refused_without_stale(
    proxy: Turnout, user: str, password: str, uri: str, target: str
) -> None:
    params = challenge(proxy, "digest.test")
    realm = "elsewhere" if user == "other" else "traefik"
    header = authorization(params, user, password, uri, 1, realm=realm)
    response = fetch(proxy, "digest.test", target, header)
    assert response.status == 401
    assert "stale" not in (response.header("WWW-Authenticate") or "")


def test_a_path_prefix_uri_is_accepted_as_go_http_auth_does(proxy: Turnout) -> None:
    params = challenge(proxy, "digest.test")
    header = authorization(params, "alice", "alice-pw", "/dir", 1)
    assert fetch(proxy, "digest.test", "/dir/page?q", header).status == 200


def test_realm_and_remove_header(proxy: Turnout, app_backend: Backend) -> None:
    params = challenge(proxy, "realm.test")
    assert params["realm"] == "vault"
    header = authorization(params, "alice", "alice-pw", "/", 1, realm="vault")
    assert fetch(proxy, "realm.test", "/", header).status == 200
    assert last(app_backend).header("Authorization") is None


def test_bad_options_are_configuration_errors_naming_the_key(tmp_path: Path) -> None:
    bad = f"""
[http.middlewares.a.digestAuth]
users = ["user:realm:hash", "user:hash"]
[http.middlewares.b.digestAuth]
usersFile = "{tmp_path / "missing"}"
[http.middlewares.c.digestAuth]
headerField = "a:b"
"""
    code, output = check(tmp_path, bad + router("r", ["a"]) + service("http://127.0.0.1:1"))
    assert code != 0
    assert "http.middlewares.a.digestAuth.users[1]: expected user:realm:hash" in output
    assert "http.middlewares.b.digestAuth.usersFile: cannot read users file" in output
    assert "http.middlewares.c.digestAuth.headerField: invalid header name" in output
