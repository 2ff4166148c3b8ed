"""Entry point proxyProtocol: real turnout processes behind HAProxy and raw PROXY senders.

The client address a trusted sender's header carries is the one X-Forwarded-For,
ClientIP rules and ipAllowList see; an untrusted sender's header is read and
thrown away (Traefik's "IGNORE" policy); a malformed header closes the
connection. Loopback is 127.0.0.0/8, so clients bind 127.0.0.2, 127.0.0.3... to
be told apart from the proxy in front (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.tcp.proxy_protocol import HeaderParser, ProxyHeader, encode_v1, encode_v2
from tests.integration.conftest import backend, turnout  # noqa: F401  (fixtures)
from tests.integration.harness import (
    REPO,
    Backend,
    ResponseReader,
    Turnout,
    free_port,
    wait_closed,
    wait_for_port,
)
from tests.runtime.support import require_binary
from tests.tcp.support import tcp_service
from tests.tcp.test_passthrough import TlsServer, passthrough, s_client, subject_cn

TRUSTED = 'proxyProtocol.trustedIPs = ["127.0.0.1", "10.0.0.0/8"]'
GET = b"GET /who HTTP/1.1\r\nHost: app.test\r\n\r\n"


def dynamic(app: Backend, special: Backend) -> str:
    return f"""
[http.routers.app]
rule = "Host(`app.test`)"
service = "app"

# Rules see the PROXY header's client: only 203.0.113.0/24 reaches "special".
[http.routers.special]
rule = "Host(`app.test`) && ClientIP(`203.0.113.0/24`)"
service = "special"

[http.routers.guarded]
rule = "Host(`guarded.test`)"
service = "app"
middlewares = ["only-doc-net"]

[http.middlewares.only-doc-net.ipAllowList]
sourceRange = ["198.51.100.0/24"]

[http.services.app.loadBalancer]
[[http.services.app.loadBalancer.servers]]
url = "{app.url}"

[http.services.special.loadBalancer]
[[http.services.special.loadBalancer.servers]]
url = "{special.url}"
"""


def exchange(port: int, data: bytes, *, source: str = "127.0.0.1", pieces: int = 1) -> object:
    """Send data (in ``pieces`` writes) from ``source`` and read one response."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step = max(1, len(data) // pieces)
        for start in range(0, len(data), step):
            sock.sendall(data[start : start + step])
            if pieces > 1:
                time.sleep(0.02)
        return ResponseReader(sock).read()


@pytest.fixture
def backends(backend: Callable[..., Backend]) -> tuple[Backend, Backend]:  # noqa: F811
    return backend(), backend()


def test_trusted_v1_and_v2_headers_give_the_client_address_to_everything(
    turnout: Callable[..., Turnout],  # noqa: F811
    backends: tuple[Backend, Backend],
) -> None:
    app, special = backends
    proxy = turnout(dynamic(app, special), entrypoint_extra=TRUSTED)
    client, front = ("198.51.100.20", 40000), ("127.0.0.1", proxy.port)
    for header in (encode_v1(client, front), encode_v2(client, front)):
        # Header and request in one write, and the header split over several.
        for pieces in (1, 7):
            response = exchange(proxy.port, header + GET, pieces=pieces)
            assert response.status == 200  # type: ignore[attr-defined]
            seen = app.requests[-1]
            assert seen.header("X-Forwarded-For") == "198.51.100.20"
            assert seen.header("X-Real-Ip") == "198.51.100.20"
    # ClientIP rules: a client in 203.0.113.0/24 is routed to "special".
    exchange(proxy.port, encode_v2(("203.0.113.5", 1), front) + GET)
    assert special.requests and special.requests[-1].header("X-Forwarded-For") == "203.0.113.5"
    # ipAllowList: the header's client is allowed, the proxy in front is not.
    guarded = b"GET / HTTP/1.1\r\nHost: guarded.test\r\n\r\n"
    assert exchange(proxy.port, encode_v1(client, front) + guarded).status == 200  # type: ignore[attr-defined]
    assert exchange(proxy.port, guarded).status == 403  # type: ignore[attr-defined]
    denied = encode_v1(("192.0.2.1", 1), front) + guarded
    assert exchange(proxy.port, denied).status == 403  # type: ignore[attr-defined]


def test_trusted_peer_without_header_local_and_unknown_keep_the_socket_address(
    turnout: Callable[..., Turnout],  # noqa: F811
    backends: tuple[Backend, Backend],
) -> None:
    app, special = backends
    proxy = turnout(dynamic(app, special), entrypoint_extra=TRUSTED)
    # Traefik: a header is optional, even from a trusted peer.
    assert exchange(proxy.port, GET).status == 200  # type: ignore[attr-defined]
    assert app.requests[-1].header("X-Forwarded-For") == "127.0.0.1"
    for header in (encode_v2(None, None), b"PROXY UNKNOWN\r\n"):
        assert exchange(proxy.port, header + GET).status == 200  # type: ignore[attr-defined]
        assert app.requests[-1].header("X-Forwarded-For") == "127.0.0.1"
    # A PROPFIND starts like "PROXY" for three bytes and is still HTTP.
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"PRO")
        time.sleep(0.05)
        sock.sendall(b"PFIND /who HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert ResponseReader(sock).read().status == 200
    assert app.requests[-1].method == "PROPFIND"


def test_untrusted_sender_header_is_read_and_ignored(
    turnout: Callable[..., Turnout],  # noqa: F811
    backends: tuple[Backend, Backend],
) -> None:
    app, special = backends
    proxy = turnout(dynamic(app, special), entrypoint_extra=TRUSTED)
    forged = encode_v1(("203.0.113.5", 1), ("127.0.0.1", proxy.port))
    response = exchange(proxy.port, forged + GET, source="127.0.0.3")
    # Served with the socket's address: neither the forged client nor the PROXY
    # bytes reach anything (ClientIP did not route it to "special").
    assert response.status == 200  # type: ignore[attr-defined]
    assert app.requests[-1].header("X-Forwarded-For") == "127.0.0.3"
    assert not special.requests
    assert b"PROXY" not in app.raw_bytes
    assert "127.0.0.3 is not in proxyProtocol.trustedIPs" in proxy.stderr()


def test_malformed_header_closes_the_connection(
    turnout: Callable[..., Turnout],  # noqa: F811
    backends: tuple[Backend, Backend],
) -> None:
    app, special = backends
    proxy = turnout(dynamic(app, special), entrypoint_extra=TRUSTED)
    for bad in (
        b"PROXY TCP4 1.2.3.400 127.0.0.1 1 80\r\n",
        b"PROXY TCP4 " + b"1" * 200,
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x02xx",
    ):
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(bad + GET)
            closed, answer = wait_closed(sock)
            assert closed and answer == b""
    assert not app.requests
    assert "PROXY v1 header: '1.2.3.400' is not an IPv4 address" in proxy.stderr()


def test_silent_connection_is_handed_on_after_the_read_timeout(
    turnout: Callable[..., Turnout],  # noqa: F811
    backends: tuple[Backend, Backend],
) -> None:
    app, special = backends
    extra = TRUSTED + '\ntransport.respondingTimeouts.readTimeout = "1s"'
    proxy = turnout(dynamic(app, special), entrypoint_extra=extra)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        time.sleep(1.6)
        # No header came in time: the connection is HTTP from the socket's peer,
        # with the HTTP read timeout starting over.
        sock.sendall(GET)
        assert ResponseReader(sock).read().status == 200
    assert app.requests[-1].header("X-Forwarded-For") == "127.0.0.1"


def test_invalid_trusted_ips_are_a_configuration_error(tmp_path: Path) -> None:
    static = tmp_path / "static.toml"
    static.write_text(
        '[entryPoints.web]\naddress = "127.0.0.1:0"\n'
        '[entryPoints.web.proxyProtocol]\ntrustedIPs = ["127.0.0.1", "10.0.0.0/33"]\n'
        f'[providers.file]\nfilename = "{tmp_path / "none.toml"}"\n'
    )
    (tmp_path / "none.toml").write_text("")
    for command in ("check", "run"):
        done = subprocess.run(
            [sys.executable, "-m", "proxy.cli", command, "-c", str(static)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1, done.stderr
        assert (
            "entryPoints.web.proxyProtocol.trustedIPs[1]: '10.0.0.0/33' is not an IP address "
            "or CIDR range"
        ) in done.stderr


# -- HAProxy in front ----------------------------------------------------------------


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[int, str], int]]:
    """Start HAProxy (mode tcp) forwarding to a port with ``send-proxy`` or ``send-proxy-v2``."""
    binary = require_binary("haproxy")
    started: list[subprocess.Popen[bytes]] = []

    def start(target: int, option: str) -> int:
        port = free_port()
        config = tmp_path / f"haproxy-{port}.cfg"
        config.write_text(
            "global\n  maxconn 256\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            f"frontend front\n  bind 127.0.0.1:{port}\n  default_backend turnout\n"
            f"backend turnout\n  server t 127.0.0.1:{target} {option}\n"
        )
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        wait_for_port(port)
        return port

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
def test_behind_haproxy_the_backend_sees_the_original_client(
    turnout: Callable[..., Turnout],  # noqa: F811
    backends: tuple[Backend, Backend],
    haproxy: Callable[[int, str], int],
    option: str,
) -> None:
    app, special = backends
    proxy = turnout(dynamic(app, special), entrypoint_extra=TRUSTED)
    front = haproxy(proxy.port, option)
    for source in ("127.0.0.2", "127.0.0.4"):
        # Keep-alive through HAProxy: the header comes once, every request has the client.
        with socket.socket() as sock:
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", front))
            reader = ResponseReader(sock)
            for _ in range(3):
                sock.sendall(GET)
                assert reader.read().status == 200
                assert app.requests[-1].header("X-Forwarded-For") == source
    assert b"PROXY" not in app.raw_bytes and b"QUIT" not in app.raw_bytes


def test_tcp_routers_behind_haproxy_see_and_pass_on_the_original_client(
    turnout: Callable[..., Turnout],  # noqa: F811
    backend: Callable[..., Backend],  # noqa: F811
    haproxy: Callable[[int, str], int],
) -> None:
    """HAProxy (send-proxy-v2) -> Turnout TCP router -> backend with a PROXY v1 header.

    The TCP front gets the client from the header: ClientIP rules route on it,
    and the header Turnout sends to the backend names it, not HAProxy.
    """
    connections: dict[str, list[bytearray]] = {"vip": [], "other": []}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received = bytearray()
            connections[name].append(received)
            answered = False
            while data := await reader.read(65536):
                received.extend(data)
                # Once, when the client's bytes are in: the PROXY header may
                # come in a read of its own.
                if not answered and received.endswith(b"hello"):
                    answered = True
                    writer.write(name.encode())
                    await writer.drain()
            writer.close()

        return record

    vip, other = backend(raw=recorder("vip")), backend(raw=recorder("other"))
    dynamic = (
        '[tcp.routers.vip]\nrule = "ClientIP(`127.0.0.2`)"\nservice = "vip"\n'
        '[tcp.routers.other]\nrule = "HostSNI(`*`)"\nservice = "other"\n'
        + "".join(
            f'[tcp.services.{name}.loadBalancer]\nserversTransport = "pp"\n'
            f'[[tcp.services.{name}.loadBalancer.servers]]\naddress = "127.0.0.1:{port}"\n'
            for name, port in (("vip", vip.port), ("other", other.port))
        )
        + "[tcp.serversTransports.pp.proxyProtocol]\nversion = 1\n"
    )
    proxy = turnout(dynamic, entrypoint_extra=TRUSTED)
    front = haproxy(proxy.port, "send-proxy-v2")
    for source, name in (("127.0.0.2", "vip"), ("127.0.0.5", "other")):
        with socket.socket() as sock:
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", front))
            sock.settimeout(5)
            sock.sendall(b"hello")
            assert sock.recv(100) == name.encode()
            port = sock.getsockname()[1]
        received = bytes(connections[name][-1])
        header = HeaderParser().feed(received)
        assert isinstance(header, ProxyHeader)
        assert header.source == (source, port)
        assert received.endswith(b"hello")


def test_tls_passthrough_by_sni_behind_haproxy(
    turnout: Callable[..., Turnout],  # noqa: F811
    haproxy: Callable[[int, str], int],
    tmp_path: Path,
) -> None:
    """The ClientHello that follows a PROXY header (often in the same read) is peeked
    for SNI as if it opened the connection."""
    one, two = TlsServer(tmp_path, "one.example"), TlsServer(tmp_path, "two.example")
    try:
        proxy = turnout(
            passthrough("one", "HostSNI(`one.example`)", "one")
            + passthrough("two", "HostSNI(`two.example`)", "two")
            + tcp_service("one", one.port)
            + tcp_service("two", two.port),
            entrypoint_extra=TRUSTED,
        )
        for option in ("send-proxy", "send-proxy-v2"):
            front = haproxy(proxy.port, option)
            assert subject_cn(s_client(front, "one.example")) == "one.example"
            assert subject_cn(s_client(front, "two.example")) == "two.example"
    finally:
        one.stop()
        two.stop()
