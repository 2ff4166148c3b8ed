"""TLS passthrough chosen by SNI and ALPN, ClientIP rules, TCP middlewares, PROXY headers
to backends: real ``openssl s_server`` backends and ``openssl s_client`` clients."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.tcp.proxy_protocol import HeaderParser
from tests.integration.harness import connect, free_port, wait_for_port, wait_until
from tests.runtime.support import require_binary
from tests.tcp.support import (
    echo_backend,
    exchange,
    named,
    read_exactly,
    refused,
    tcp_router,
    tcp_service,
)


class TlsServer:
    """``openssl s_server`` with its own self-signed certificate for ``name``, stopped by pid."""

    def __init__(self, workdir: Path, name: str, alpn: str = "") -> None:
        openssl = require_binary("openssl")
        self.name = name
        self.cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", f"/CN={name}", "-keyout", str(key), "-out", str(self.cert)),
            ],
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        command = [openssl, "s_server", "-accept", str(self.port), "-cert", str(self.cert)]
        command += ["-key", str(key), "-naccept", "100", "-quiet"]
        if alpn:
            command += ["-alpn", alpn]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def tls_servers(tmp_path: Path) -> Iterator[tuple[TlsServer, TlsServer]]:
    one = TlsServer(tmp_path, "one.example", alpn="h2,http/1.1")
    two = TlsServer(tmp_path, "two.example")
    yield one, two
    one.stop()
    two.stop()


def s_client(port: int, servername: str, alpn: str = "") -> str:
    """The certificate subject the server behind ``port`` answers with, via openssl s_client."""
    command = [require_binary("openssl"), "s_client", "-connect", f"127.0.0.1:{port}"]
    command += ["-servername", servername]
    if alpn:
        command += ["-alpn", alpn]
    done = subprocess.run(command, input=b"", capture_output=True, timeout=20)
    return done.stdout.decode(errors="replace")


def subject_cn(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("subject="):
            return line.rsplit("CN", 1)[-1].lstrip(" =")
    return ""


def passthrough(name: str, rule: str, service: str) -> str:
    return tcp_router(name, rule, service, f"[tcp.routers.{name}.tls]\npassthrough = true")


def test_sni_chooses_the_backend_and_its_certificate(turnout, tls_servers, relay) -> None:
    one, two = tls_servers
    proxy = turnout(
        passthrough("one", "HostSNI(`one.example`)", "one")
        + passthrough("two", "HostSNIRegexp(`^tw[a-z]+\\\\.example$`)", "two")
        + tcp_service("one", one.port)
        + tcp_service("two", two.port)
    )
    assert subject_cn(s_client(proxy.port, "one.example")) == "one.example"
    assert subject_cn(s_client(proxy.port, "two.example")) == "two.example"
    assert subject_cn(s_client(proxy.port, "ONE.example")) == "one.example"
    # No router for this name: closed, no certificate at all.
    assert subject_cn(s_client(proxy.port, "three.example")) == ""


def test_alpn_routes_the_tls_stream(turnout, tls_servers) -> None:
    one, two = tls_servers
    proxy = turnout(
        passthrough("h2", "HostSNI(`*`) && ALPN(`h2`)", "one")
        + passthrough("rest", "HostSNI(`*`)", "two")
        + tcp_service("one", one.port)
        + tcp_service("two", two.port)
    )
    output = s_client(proxy.port, "any.example", alpn="h2")
    assert subject_cn(output) == "one.example"
    assert "ALPN protocol: h2" in output
    assert subject_cn(s_client(proxy.port, "any.example", alpn="http/1.1")) == "two.example"


def test_the_client_hello_reaches_the_backend_byte_for_byte(turnout, backend) -> None:
    received = bytearray()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)

    server = backend(raw=record)
    proxy = turnout(passthrough("t", "HostSNI(`db.example`)", "t") + tcp_service("t", server.port))
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="db.example")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with connect(proxy.port) as sock:
        sock.sendall(hello[:3])  # the ClientHello in pieces: peeked across reads
        time.sleep(0.05)
        sock.sendall(hello[3:] + b"more")
        assert wait_until(lambda: len(received) >= len(hello) + 4)
    assert bytes(received) == hello + b"more"


def test_client_ip_rules(turnout, backend, relay) -> None:
    inside, outside = backend(raw=named(b"inside")), backend(raw=named(b"outside"))
    proxy = turnout(
        tcp_router("in", "ClientIP(`127.0.0.0/8`)", "in")
        + tcp_router("out", "HostSNI(`*`) && !ClientIP(`127.0.0.0/8`)", "out")
        + tcp_service("in", inside.port)
        + tcp_service("out", outside.port)
    )
    assert exchange(proxy.port, b"") == b"inside"


def test_ip_allow_list_closes_others(turnout, backend, relay) -> None:
    server = echo_backend(backend)
    allowed = turnout(
        tcp_router("e", "HostSNI(`*`)", "e", 'middlewares = ["local"]')
        + tcp_service("e", server.port)
        + '[tcp.middlewares.local.ipAllowList]\nsourceRange = ["127.0.0.1/32"]\n'
    )
    assert exchange(allowed.port, b"hi") == b"hi"
    closed = turnout(
        tcp_router("e", "HostSNI(`*`)", "e", 'middlewares = ["far"]')
        + tcp_service("e", server.port)
        + '[tcp.middlewares.far.ipWhiteList]\nsourceRange = ["10.0.0.0/8"]\n'
    )
    before = server.connections
    assert refused(closed.port)
    assert server.connections == before  # never dialled
    assert wait_until(lambda: "middleware far@file refused 127.0.0.1" in closed.stderr())


def test_in_flight_conn_limits_per_source_ip(turnout, backend, relay) -> None:
    server = echo_backend(backend)
    proxy = turnout(
        tcp_router("e", "HostSNI(`*`)", "e", 'middlewares = ["two"]')
        + tcp_service("e", server.port)
        + "[tcp.middlewares.two.inFlightConn]\namount = 2\n"
    )
    assert wait_until(lambda: sum(proxy.stats()["connections"].values()) == 0)
    first, second = connect(proxy.port), connect(proxy.port)
    try:
        for sock in (first, second):
            sock.sendall(b"x")
            assert read_exactly(sock, 1) == b"x"
        assert refused(proxy.port)  # two are open already
        first.close()
        assert wait_until(lambda: sum(proxy.stats()["connections"].values()) == 1)
        assert exchange(proxy.port, b"again") == b"again"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("version", [1, 2])
def test_proxy_protocol_header_towards_the_backend(turnout, backend, relay, version) -> None:
    connections: list[bytearray] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = bytearray()
        connections.append(received)  # one per connection (the start-up probe is one)
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    server = backend(raw=record)
    proxy = turnout(
        tcp_router("e", "HostSNI(`*`)", "e")
        + tcp_service("e", server.port, extra='serversTransport = "pp"')
        + f"[tcp.serversTransports.pp.proxyProtocol]\nversion = {version}\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        local = sock.getsockname()
        sock.sendall(b"payload")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        sock.recv(10)
    assert wait_until(lambda: any(c.endswith(b"payload") for c in connections))
    received = next(c for c in connections if c.endswith(b"payload"))
    header = HeaderParser().feed(bytes(received))
    assert header.source == ("127.0.0.1", local[1])  # type: ignore[union-attr]
    assert header.destination == ("127.0.0.1", proxy.port)  # type: ignore[union-attr]
    assert bytes(received).startswith(b"PROXY TCP4 " if version == 1 else b"\r\n\r\n\x00\r\nQUIT\n")


def test_tls_towards_the_backend(turnout, tmp_path: Path) -> None:
    """``servers[].tls``: Turnout speaks TLS to the backend (checked against its own CA)."""
    cert, key = tmp_path / "backend.crt", tmp_path / "backend.key"
    subprocess.run(
        [
            *(require_binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-days", "1", "-subj", "/CN=backend.example", "-keyout", str(key)),
            *("-out", str(cert), "-addext", "subjectAltName=DNS:backend.example"),
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    seen: list[str] = []  # the SNI Turnout sent: serverName, not the address
    server_context.sni_callback = lambda tls, name, context: seen.append(name)  # type: ignore[assignment,misc,func-returns-value]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with server_context.wrap_socket(raw, server_side=True) as tls:
                    while data := tls.recv(65536):
                        tls.sendall(data.upper())
            except (ssl.SSLError, OSError):
                pass  # the start-up probe closes before a handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        proxy = turnout(
            tcp_router("t", "HostSNI(`*`)", "t")
            + '[tcp.services.t.loadBalancer]\nserversTransport = "own-ca"\n'
            + f'[[tcp.services.t.loadBalancer.servers]]\naddress = "127.0.0.1:{port}"\ntls = true\n'
            + "[tcp.serversTransports.own-ca.tls]\n"
            + f'serverName = "backend.example"\nrootCAs = ["{cert}"]\n'
        )
        with connect(proxy.port) as sock:
            sock.sendall(b"plain text in, tls out")
            assert read_exactly(sock, 22) == b"PLAIN TEXT IN, TLS OUT"
        assert "backend.example" in seen
        assert wait_until(lambda: "protocol relay" in proxy.stderr())
    finally:
        listener.close()


def test_a_trusted_proxy_header_names_the_client_for_tcp_rules(turnout, backend, relay) -> None:
    """Entry point ``proxyProtocol``: ClientIP rules, middlewares and the PROXY header sent
    on to the backend see the client the load balancer in front named, not the socket's peer."""
    connections: list[bytearray] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = bytearray()
        connections.append(received)
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    far, near = backend(raw=record), backend(raw=named(b"near"))
    proxy = turnout(
        tcp_router("far", "ClientIP(`203.0.113.0/24`)", "far", 'middlewares = ["far-only"]')
        + tcp_router("near", "HostSNI(`*`)", "near")
        + tcp_service("far", far.port, extra='serversTransport = "pp"')
        + tcp_service("near", near.port)
        + "[tcp.serversTransports.pp.proxyProtocol]\nversion = 1\n"
        + '[tcp.middlewares.far-only.ipAllowList]\nsourceRange = ["203.0.113.7"]\n',
        entrypoint_extra='proxyProtocol.trustedIPs = ["127.0.0.1/32"]',
    )
    header = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(header + b"hello")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        sock.recv(10)
    assert wait_until(lambda: any(c.endswith(b"hello") for c in connections))
    received = next(c for c in connections if c.endswith(b"hello"))
    assert bytes(received).startswith(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 ")
    assert exchange(proxy.port, b"x") == b"near"  # no header: the socket's peer, 127.0.0.1
