"""The entry point front with real turnout processes: routing, relays, half-close, limits.

Every test runs against a real ``turnout run`` and real sockets; the fixture
checks afterwards that the process holds no more descriptors, tasks or
connections than right after start (so a leaked pipe or socket fails the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from tests.integration.harness import BackendProcess, connect, get, wait_until
from tests.tcp.support import (
    echo_backend,
    exchange,
    named,
    read_exactly,
    read_to_eof,
    tcp_router,
    tcp_service,
)

CATCH_ALL = "HostSNI(`*`)"


def test_small_and_bulk_transfers_are_echoed_exactly(turnout, backend, relay) -> None:
    echo_server = echo_backend(backend)
    proxy = turnout(tcp_router("db", CATCH_ALL, "db") + tcp_service("db", echo_server.port))
    assert exchange(proxy.port, b"ping") == b"ping"
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB, every byte value
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sender = threading.Thread(
            target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
        )
        sender.start()
        got = read_to_eof(sock, timeout=30)
        sender.join()
    assert got == payload
    kind = "splice relay" if relay == "splice" else "protocol relay"
    assert wait_until(lambda: kind in proxy.stderr())


def test_a_name_with_several_addresses_falls_back_to_the_one_listening(
    turnout, backend, relay
) -> None:
    """``localhost`` is ::1 and 127.0.0.1; the echo server listens on 127.0.0.1 only."""
    echo_server = echo_backend(backend)
    service = tcp_service("db", echo_server.port).replace("127.0.0.1:", "localhost:")
    proxy = turnout(tcp_router("db", CATCH_ALL, "db") + service)
    for index in range(4):  # each connection dials anew, starting at the next address
        assert exchange(proxy.port, b"ping%d" % index) == b"ping%d" % index


def test_server_speaks_first_without_waiting_for_the_client(turnout, backend, relay) -> None:
    greeter = backend(raw=named(b"220 greeting\r\n"))
    proxy = turnout(tcp_router("smtp", CATCH_ALL, "smtp") + tcp_service("smtp", greeter.port))
    with connect(proxy.port) as sock:
        # Nothing sent: Traefik routes a HostSNI(`*`)-only entry point at once.
        assert read_exactly(sock, 14, timeout=5) == b"220 greeting\r\n"


def test_half_close_keeps_the_other_direction_flowing(turnout, backend, relay) -> None:
    async def slow_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # up to the client's FIN
        await asyncio.sleep(1.0)  # well past terminationDelay (100 ms)
        writer.write(b"answer to " + request)
        await writer.drain()
        writer.close()

    server = backend(raw=slow_answer)
    proxy = turnout(tcp_router("q", CATCH_ALL, "q") + tcp_service("q", server.port))
    started = time.monotonic()
    assert exchange(proxy.port, b"question") == b"answer to question"
    assert time.monotonic() - started >= 1.0


def test_backend_fin_reaches_the_client_which_may_still_send(turnout, backend, relay) -> None:
    seen = bytearray()

    async def first_word(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()  # the backend is done talking, still listening
        while data := await reader.read(65536):
            seen.extend(data)
        writer.close()

    server = backend(raw=first_word)
    proxy = turnout(tcp_router("q", CATCH_ALL, "q") + tcp_service("q", server.port))
    with connect(proxy.port) as sock:
        assert read_to_eof(sock) == b"bye"  # the backend's FIN, passed on
        sock.sendall(b"after the fin")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b""
    assert wait_until(lambda: bytes(seen) == b"after the fin")


def test_backend_killed_mid_stream_closes_the_client_promptly(turnout, relay) -> None:
    streamer = BackendProcess("streamer", "stream")
    try:
        proxy = turnout(tcp_router("s", CATCH_ALL, "s") + tcp_service("s", streamer.port))
        fds_before = proxy.open_fds()
        with connect(proxy.port) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_exactly(sock, 1000, timeout=5)  # bytes are flowing
            streamer.kill()
            started = time.monotonic()
            sock.settimeout(5)
            with pytest.raises(ConnectionResetError):
                while sock.recv(1 << 20):
                    pass
                raise ConnectionResetError  # a clean EOF is as good: the client knows
            assert (
                time.monotonic() - started < 3.0
            )  # prompt: the FIN or reset, not a timeout (idle is 180 s)
        assert wait_until(lambda: proxy.open_fds() <= fds_before), (fds_before, proxy.open_fds())
    finally:
        streamer.stop()


def test_unreachable_backend_closes_the_client(turnout, relay) -> None:
    from tests.integration.harness import free_port

    proxy = turnout(tcp_router("x", CATCH_ALL, "x") + tcp_service("x", free_port()))
    with connect(proxy.port) as sock:
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
    assert wait_until(lambda: "cannot reach" in proxy.stderr())


def test_max_connections_resets_the_one_too_many(turnout, backend, relay) -> None:
    server = echo_backend(backend)
    proxy = turnout(
        tcp_router("e", CATCH_ALL, "e") + tcp_service("e", server.port),
        entrypoint_extra="transport.maxConnections = 2",
    )
    # The start-up probe was relayed too: let it end before counting.
    assert wait_until(lambda: sum(proxy.stats()["connections"].values()) == 0)
    first, second = connect(proxy.port), connect(proxy.port)
    try:
        for sock in (first, second):
            sock.sendall(b"x")
            assert read_exactly(sock, 1) == b"x"
        third = connect(proxy.port)
        third.settimeout(5)
        try:
            third.sendall(b"y")
            assert third.recv(10) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        third.close()
        first.close()
        assert wait_until(lambda: sum(proxy.stats()["connections"].values()) == 1)
        with connect(proxy.port) as fourth:
            fourth.sendall(b"z")
            assert read_exactly(fourth, 1) == b"z"
    finally:
        first.close()
        second.close()


def test_idle_connection_is_closed_after_idle_timeout(turnout, backend, relay) -> None:
    server = echo_backend(backend)
    proxy = turnout(
        tcp_router("e", CATCH_ALL, "e") + tcp_service("e", server.port),
        entrypoint_extra='transport.respondingTimeouts.idleTimeout = "2s"',
    )
    with connect(proxy.port) as sock:
        sock.sendall(b"x")
        assert read_exactly(sock, 1) == b"x"
        time.sleep(1.0)  # half the idle timeout (activity is stamped to the sweeper's 0.25 s)
        sock.sendall(b"y")  # activity restarts the clock
        assert read_exactly(sock, 1) == b"y"
        started = time.monotonic()
        assert read_to_eof(sock, timeout=8) == b""
        elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 4.5, elapsed


def test_client_hello_wait_is_bounded_by_read_timeout(turnout, backend) -> None:
    server = echo_backend(backend)
    # A passthrough router makes the front wait for the ClientHello.
    proxy = turnout(
        tcp_router("t", "HostSNI(`db.example`)", "t", "[tcp.routers.t.tls]\npassthrough = true")
        + tcp_service("t", server.port),
        entrypoint_extra='transport.respondingTimeouts.readTimeout = "1s"',
    )
    for opening in (b"", b"\x16\x03\x01\x02"):  # silence; a TLS record header cut short
        with connect(proxy.port) as sock:
            sock.sendall(opening)
            started = time.monotonic()
            assert read_to_eof(sock, timeout=5) == b""
            assert (
                0.7 <= time.monotonic() - started < 4.0
            )  # 1 s, plus the sweeper tick and a loaded machine
    assert server.connections == 0


def test_no_tcp_router_matched_goes_to_http(turnout, backend) -> None:
    web = backend()
    server = echo_backend(backend)
    proxy = turnout(
        tcp_router("t", "HostSNI(`db.example`)", "t", "[tcp.routers.t.tls]\npassthrough = true")
        + tcp_service("t", server.port)
        + f'[http.routers.web]\nrule = "PathPrefix(`/`)"\nservice = "web"\n'
        f'[[http.services.web.loadBalancer.servers]]\nurl = "{web.url}"\n'
    )
    response = get(proxy.port, "/hello")
    assert response.status == 200
    assert web.requests[-1].target == "/hello"
    assert server.connections == 0


def test_catch_all_tcp_router_comes_before_http_routers(turnout, backend, relay) -> None:
    web = backend()
    server = echo_backend(backend)
    proxy = turnout(
        tcp_router("t", CATCH_ALL, "t")
        + tcp_service("t", server.port)
        + f'[http.routers.web]\nrule = "PathPrefix(`/`)"\nservice = "web"\n'
        f'[[http.services.web.loadBalancer.servers]]\nurl = "{web.url}"\n'
    )
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert exchange(proxy.port, request) == request  # echoed by the TCP backend
    assert web.requests == []


def test_round_robin_over_servers(turnout, backend, relay) -> None:
    one, two = backend(raw=named(b"one")), backend(raw=named(b"two"))
    proxy = turnout(tcp_router("n", CATCH_ALL, "n") + tcp_service("n", one.port, two.port))
    seen = [exchange(proxy.port, b"") for _ in range(4)]
    # The start-up probe took a turn already: which one comes first is not fixed.
    assert sorted(seen[:2]) == [b"one", b"two"] and seen[2:] == seen[:2]


def test_weighted_service(turnout, backend) -> None:
    one, two = backend(raw=named(b"one")), backend(raw=named(b"two"))
    proxy = turnout(
        tcp_router("n", CATCH_ALL, "w")
        + tcp_service("one", one.port)
        + tcp_service("two", two.port)
        + '[[tcp.services.w.weighted.services]]\nname = "one"\nweight = 3\n'
        + '[[tcp.services.w.weighted.services]]\nname = "two"\nweight = 1\n'
    )
    seen = [exchange(proxy.port, b"") for _ in range(8)]
    assert seen.count(b"one") == 6 and seen.count(b"two") == 2
    assert seen[:4] in ([b"one", b"one", b"two", b"one"], [b"one", b"two", b"one", b"one"])


def test_reload_routes_new_connections_and_keeps_open_ones(turnout, backend, relay) -> None:
    old, new = echo_backend(backend), backend(raw=named(b"new"))
    proxy = turnout(tcp_router("e", CATCH_ALL, "e") + tcp_service("e", old.port))
    with connect(proxy.port) as kept:
        kept.sendall(b"1")
        assert read_exactly(kept, 1) == b"1"
        proxy.dynamic_path.write_text(tcp_router("e", CATCH_ALL, "e") + tcp_service("e", new.port))
        assert wait_until(lambda: exchange(proxy.port, b"") == b"new", timeout=10)
        kept.sendall(b"2")  # started on the old snapshot: still relayed to the old backend
        assert read_exactly(kept, 1) == b"2"
    # A TCP router removed: the entry point is HTTP again.
    proxy.dynamic_path.write_text(
        '[http.routers.r]\nrule = "Path(`/x`)"\nservice = "whoami@internal"\n'
    )

    def http_again() -> bool:
        try:
            return get(proxy.port, "/nothing").status == 404
        except Exception:  # still the TCP backend's bytes, until the reload lands
            return False

    assert wait_until(http_again, timeout=10)


def test_dial_timeout_of_the_servers_transport(turnout, relay) -> None:
    # A listener whose accept queue is full drops new SYNs: connecting hangs.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel accepts past a full backlog")
        except TimeoutError:
            pass
        finally:
            probe.close()
        proxy = turnout(
            tcp_router("x", CATCH_ALL, "x")
            + tcp_service("x", port, extra='serversTransport = "quick"')
            + '[tcp.serversTransports.quick]\ndialTimeout = "1s"\n'
        )
        with connect(proxy.port) as sock:
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert read_to_eof(sock, timeout=10) == b""
            assert 0.8 <= time.monotonic() - started < 4
        assert wait_until(lambda: "cannot reach" in proxy.stderr())
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
