"""basicAuth through a real turnout: bcrypt, SHA1 and MD5 (apr1) htpasswd users."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from tests.integration.harness import (
    Backend,
    ResponseReader,
    Turnout,
    connect,
    get,
    wait_until,
)
from tests.middlewares.support import (  # noqa: F401  (fixtures)
    app_backend_fixture,
    check,
    last,
    proxy_factory_fixture,
    router,
    service,
)

# Cost 4: bcrypt's own check is what is tested, not its slowness.
BCRYPT = bcrypt.hashpw(b"bcrypt-pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
SHA = "{SHA}" + base64.b64encode(hashlib.sha1(b"sha-pw").digest()).decode()
APR1 = "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"  # openssl passwd -apr1 -salt abcdefgh secret
CAROL = bcrypt.hashpw(b"carol-pw", bcrypt.gensalt(4)).decode()
MD5 = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"  # openssl passwd -1 -salt abcdefgh secret


@pytest.fixture(scope="module")
def users_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("users")


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., Turnout], app_backend: Backend, users_dir: Path) -> Turnout:
    users_file = users_dir / "htpasswd"
    (users_dir / "changing").write_text(f"first:{SHA}\n")
    users_file.write_text(f"# a comment\n\nfile-apr1:{APR1}\nfile-md5:{MD5}\noverridden:{SHA}\n")
    middlewares = f"""
[http.middlewares.auth.basicAuth]
users = ["bob:{BCRYPT}", "sha:{SHA}", "overridden:{APR1}", "carol:{CAROL}"]
usersFile = "{users_file}"
[http.middlewares.realm.basicAuth]
users = ["sha:{SHA}"]
realm = "private area"
headerField = "X-WebAuth-User"
removeHeader = true
[http.middlewares.changing.basicAuth]
usersFile = "{users_dir / "changing"}"
"""
    routers = router("auth", ["auth"]) + router("realm", ["realm"])
    routers += router("changing", ["changing"])
    log = users_dir / "access.json"
    static = f'[accessLog]\nfilePath = "{log}"\nformat = "json"\n'
    return proxy_factory(middlewares + routers + service(app_backend.url), static_extra=static)


def basic(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


def test_the_user_is_the_access_logs_client_username(proxy: Turnout, users_dir: Path) -> None:
    log = users_dir / "access.json"

    def last_user() -> str:
        lines = log.read_text().splitlines() if log.exists() else []
        return json.loads(lines[-1])["ClientUsername"] if lines else ""

    assert get(proxy.port, host="realm.test", headers=basic("sha", "sha-pw")).status == 200
    assert wait_until(lambda: last_user() == "sha", 5), log.read_text()[-500:]
    assert get(proxy.port, host="realm.test").status == 401
    assert wait_until(lambda: last_user() == "-", 5)


def test_no_credentials_get_a_challenge(proxy: Turnout, app_backend: Backend) -> None:
    before = len(app_backend.requests)
    response = get(proxy.port, host="auth.test")
    assert response.status == 401
    assert response.header("WWW-Authenticate") == 'Basic realm="traefik"'
    assert response.body == b"401 Unauthorized\n"
    assert len(app_backend.requests) == before


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("bob", "bcrypt-pw"),
        ("sha", "sha-pw"),
        ("file-apr1", "secret"),
        ("file-md5", "secret"),
        ("overridden", "secret"),  # the inline entry wins over the file's
    ],
)
def test_each_hash_scheme_admits_its_user(
    proxy: Turnout, app_backend: Backend, user: str, password: str
) -> None:
    response = get(proxy.port, "/in", host="auth.test", headers=basic(user, password))
    assert response.status == 200
    received = last(app_backend)
    assert received.target == "/in"
    # Kept by default; no user header without headerField.
    assert received.header("Authorization") == basic(user, password)[15:-2]
    assert received.header("X-WebAuth-User") is None


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("bob", "wrong"),
        ("sha", "wrong"),
        ("file-apr1", "nope"),
        ("overridden", "sha-pw"),
        ("x", "y"),
    ],
)
def test_wrong_passwords_and_unknown_users_are_refused(
    proxy: Turnout, user: str, password: str
) -> None:
    assert get(proxy.port, host="auth.test", headers=basic(user, password)).status == 401


def test_malformed_authorization_is_refused(proxy: Turnout) -> None:
    for value in ("Basic !!!", "Bearer abc", "Basic " + base64.b64encode(b"nocolon").decode()):
        response = get(proxy.port, host="auth.test", headers=f"Authorization: {value}\r\n")
        assert response.status == 401


def test_bcrypt_checks_keep_the_connection_and_the_request_body(
    proxy: Turnout, app_backend: Backend
) -> None:
    # bcrypt runs off the event loop (carol is checked here first: no remembered
    # success); the exchange resumes, or is answered, on the same connection.
    with connect(proxy.port) as sock:
        reader = ResponseReader(sock)
        for index, password in enumerate(("carol-pw", "wrong", "carol-pw")):
            body = f"payload {index}".encode()
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: auth.test\r\n"
                + basic("carol", password).encode()
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            response = reader.read()
            assert response.status == (401 if password == "wrong" else 200)
            if response.status == 200:
                assert last(app_backend).body == body


def test_realm_header_field_and_remove_header(proxy: Turnout, app_backend: Backend) -> None:
    response = get(proxy.port, host="realm.test")
    assert response.header("WWW-Authenticate") == 'Basic realm="private area"'
    headers = basic("sha", "sha-pw") + "X-WebAuth-User: forged\r\n"
    assert get(proxy.port, host="realm.test", headers=headers).status == 200
    received = last(app_backend)
    assert received.header_all("X-WebAuth-User") == ["sha"]
    assert received.header("Authorization") is None


def test_a_changed_users_file_is_read_again(proxy: Turnout, users_dir: Path) -> None:
    assert get(proxy.port, host="changing.test", headers=basic("first", "sha-pw")).status == 200
    (users_dir / "changing").write_text(f"second:{SHA}\n")
    # Looked at once a second at most.
    assert wait_until(
        lambda: (
            get(proxy.port, host="changing.test", headers=basic("second", "sha-pw")).status == 200
        ),
        timeout=5,
    )
    assert get(proxy.port, host="changing.test", headers=basic("first", "sha-pw")).status == 401
    # A broken file keeps the users read before, with a warning.
    (users_dir / "changing").write_text("broken line\n")

    def warned() -> bool:
        # The file is looked at when a request comes: each try sends one.
        response = get(proxy.port, host="changing.test", headers=basic("second", "sha-pw"))
        assert response.status == 200
        return "keeping the users read before" in proxy.stderr()

    assert wait_until(warned, timeout=5)


def test_bad_options_are_configuration_errors_naming_the_key(tmp_path: Path) -> None:
    bad = f"""
[http.middlewares.a.basicAuth]
users = ["ok:{SHA}", "no-hash-here"]
[http.middlewares.b.basicAuth]
usersFile = "{tmp_path / "missing"}"
[http.middlewares.c.basicAuth]
users = ["ok:{SHA}"]
headerField = "Bad Header"
[http.middlewares.d.basicAuth]
users = ["ok:{SHA}"]
realm = "a\\"b"
"""
    code, output = check(tmp_path, bad + router("r", ["a"]) + service("http://127.0.0.1:1"))
    assert code != 0
    assert "dynamic.toml: http.middlewares.a.basicAuth.users[1]: expected user:hash" in output
    assert "http.middlewares.b.basicAuth.usersFile: cannot read users file" in output
    assert "http.middlewares.c.basicAuth.headerField: invalid header name" in output
    assert "http.middlewares.d.basicAuth.realm: realm must not contain quotes" in output
