"""UDP entry points, end to end: real turnout processes, real dnsmasq, real sockets.

Datagrams keep their boundaries, each client gets back exactly its own, a
session expires after ``udp.timeout``, an oversize datagram is dropped and
counted, weights spread sessions, and the leak check (SIGUSR1 stats) sees
sessions until they are gone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import turnout  # noqa: F401  (fixture)
from tests.integration.harness import Turnout, free_port, wait_until
from tests.runtime.support import require_binary


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Echo:
    """A UDP server on its own thread answering each datagram with ``tag + datagram``.

    ``b"big:N"`` is answered with N bytes instead, to send oversize replies.
    """

    def __init__(self, tag: bytes = b"", *, dual_stack: bool = False) -> None:
        self.tag = tag
        if dual_stack:  # ::1 and 127.0.0.1 alike (what "localhost" may resolve to)
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.sock.bind(("::", 0))
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.peers: set[tuple[str, int]] = set()
        self.received = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1
            self.peers.add(peer)
            if data.startswith(b"big:"):
                self.sock.sendto(b"x" * int(data[4:]), peer)
            else:
                self.sock.sendto(self.tag + data, peer)

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[Callable[..., Echo]]:
    started: list[Echo] = []

    def make(tag: bytes = b"", **kwargs: bool) -> Echo:
        server = Echo(tag, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def udp_proxy(
    make: Callable[..., Turnout], dynamic: str, *, udp_extra: str = "", timeout: str = "1s"
) -> tuple[Turnout, int]:
    """A turnout with entry point ``web`` (TCP) and ``dns`` (UDP); returns it and the UDP port."""
    port = free_udp_port()
    proxy = make(
        dynamic,
        static_extra=(
            f'[entryPoints.dns]\naddress = "127.0.0.1:{port}/udp"\n'
            f'udp.timeout = "{timeout}"\n{udp_extra}\n'
        ),
    )
    assert wait_until(lambda: f"127.0.0.1:{port}/udp" in proxy.stderr()), proxy.stderr()
    return proxy, port


def lb(*ports: int, name: str = "echo") -> str:
    lines = [f"[udp.services.{name}.loadBalancer]"]
    for port in ports:
        lines += [f"[[udp.services.{name}.loadBalancer.servers]]", f'address = "127.0.0.1:{port}"']
    return "\n".join(lines) + "\n"


ROUTER = '[udp.routers.r]\nentryPoints = ["dns"]\nservice = "echo"\n'


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    return sock


def ask(sock: socket.socket, port: int, data: bytes) -> bytes:
    sock.sendto(data, ("127.0.0.1", port))
    return sock.recvfrom(70000)[0]


def nothing_comes(sock: socket.socket, wait: float = 0.5) -> bool:
    sock.settimeout(wait)
    try:
        sock.recvfrom(70000)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(3)
    return False


def udp_stats(proxy: Turnout) -> dict[str, int]:
    return proxy.stats()["udp"]["dns"]  # type: ignore[no-any-return]


# -- a real DNS server --------------------------------------------------------------


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[int]:
    binary = require_binary("dnsmasq")
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 app.test\n2001:db8::10 app.test\n192.0.2.11 db.test\n")
    port = free_udp_port()
    process = subprocess.Popen(
        [
            binary,
            "--no-daemon",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-hosts",
            f"--addn-hosts={hosts}",
            "--no-resolv",
            "--pid-file=",
            "--user=root",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            query = (
                bytes.fromhex("abcd01000001000000000000") + b"\x03app\x04test\x00\x00\x01\x00\x01"
            )
            deadline = time.monotonic() + 10
            while True:
                try:
                    probe.sendto(query, ("127.0.0.1", port))
                    probe.recvfrom(512)
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise AssertionError("dnsmasq did not answer") from None
        yield port
    finally:
        process.terminate()
        process.wait(10)


def dig(port: int, *args: str) -> str:
    binary = require_binary("dig")
    done = subprocess.run(
        [binary, "@127.0.0.1", "-p", str(port), "+short", "+time=2", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_dig_through_turnout_to_dnsmasq(
    turnout: Callable[..., Turnout],  # noqa: F811
    dnsmasq: int,
) -> None:
    proxy, port = udp_proxy(turnout, ROUTER + lb(dnsmasq))
    assert dig(port, "app.test") == "192.0.2.10"
    assert dig(port, "app.test", "AAAA") == "2001:db8::10"
    assert dig(port, "db.test") == "192.0.2.11"
    assert dig(port, "missing.test") == ""  # NXDOMAIN comes back too
    stats = udp_stats(proxy)
    assert stats["sessions_opened"] == 4  # dig uses a new source port per query
    assert stats["oversize_dropped"] == stats["unrouted_dropped"] == 0


# -- an echo server ------------------------------------------------------------------


def test_thousand_datagrams_from_ten_clients_each_get_back_exactly_their_own(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo()
    proxy, port = udp_proxy(turnout, ROUTER + lb(server.port), timeout="3s")
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            sock = client()
            sent = [
                f"client {index} datagram {n} ".encode() + os.urandom(n * 7 % 1200)
                for n in range(100)
            ]
            got: list[bytes] = []
            # At most 10 in flight per client: 100 datagrams without overrunning
            # the loopback socket buffers, so that nothing is lost on the way.
            for start in range(0, 100, 10):
                for data in sent[start : start + 10]:
                    sock.sendto(data, ("127.0.0.1", port))
                for _ in range(10):
                    got.append(sock.recvfrom(70000)[0])
            results[index] = got
            assert sorted(got) == sorted(sent)
            sock.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]
    assert sum(len(got) for got in results.values()) == 1000
    stats = udp_stats(proxy)
    assert stats["datagrams_in"] == 1000
    assert stats["sessions_opened"] == 10
    # One upstream socket per client: the echo server saw ten source ports.
    assert len(server.peers) == 10


def test_datagram_boundaries_up_to_the_largest_udp_payload(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo()
    _proxy, port = udp_proxy(turnout, ROUTER + lb(server.port))
    sock = client()
    for size in (0, 1, 1472, 1473, 9000, 65507):
        data = os.urandom(size)
        assert ask(sock, port, data) == data
    # Several at once come back as several, never merged.
    for n in range(5):
        sock.sendto(b"%d" % n, ("127.0.0.1", port))
    assert sorted(sock.recvfrom(100)[0] for _ in range(5)) == [b"0", b"1", b"2", b"3", b"4"]
    sock.close()


def test_oversize_datagrams_are_dropped_and_counted_both_ways(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo()
    proxy, port = udp_proxy(
        turnout, ROUTER + lb(server.port), udp_extra="udp.maxDatagramBytes = 1000"
    )
    sock = client()
    assert ask(sock, port, b"a" * 1000) == b"a" * 1000
    sock.sendto(b"b" * 1001, ("127.0.0.1", port))
    assert nothing_comes(sock)
    assert server.received == 1  # never sent on, not even cut to 1000 bytes
    # A reply larger than the limit is dropped too.
    sock.sendto(b"big:1001", ("127.0.0.1", port))
    assert nothing_comes(sock)
    assert ask(sock, port, b"big:1000") == b"x" * 1000
    assert udp_stats(proxy)["oversize_dropped"] == 2
    assert "dropped a 1001-byte datagram from client 127.0.0.1:" in proxy.stderr()
    assert "dropped a 1001-byte datagram from server 127.0.0.1:" in proxy.stderr()
    sock.close()


def test_sessions_expire_after_the_timeout_and_are_swept(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo()
    # 3 s against activity every 0.3 s: room for a stalled test process.
    proxy, port = udp_proxy(turnout, ROUTER + lb(server.port), timeout="3s")
    baseline = proxy.stats()["fds"]
    sock = client()
    assert ask(sock, port, b"one") == b"one"
    stats = proxy.stats()
    assert stats["connections"]["dns"] == 1 and stats["udp"]["dns"]["sessions"] == 1
    assert stats["fds"] == baseline + 1  # the session's own upstream socket
    # Traffic either way keeps it alive...
    for _ in range(12):
        time.sleep(0.3)
        assert ask(sock, port, b"again") == b"again"
    assert udp_stats(proxy)["sessions_opened"] == 1
    # ...silence for the timeout ends it, and its socket.
    started = time.monotonic()
    assert wait_until(lambda: udp_stats(proxy)["sessions"] == 0, timeout=6)
    assert time.monotonic() - started > 2.2  # not before the timeout
    assert proxy.stats()["fds"] == baseline
    # The same client address opens a new session afterwards.
    assert ask(sock, port, b"back") == b"back"
    assert udp_stats(proxy)["sessions_opened"] == 2
    assert len({peer[1] for peer in server.peers}) == 2
    sock.close()


def test_weights_spread_sessions_and_a_session_keeps_its_server(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    a, b, c = echo(b"a:"), echo(b"b:"), echo(b"c:")
    dynamic = (
        '[udp.routers.r]\nentryPoints = ["dns"]\nservice = "mix"\n'
        + lb(a.port, b.port, name="pair")
        + lb(c.port, name="single")
        + "[udp.services.mix.weighted]\n"
        + '[[udp.services.mix.weighted.services]]\nname = "pair"\nweight = 3\n'
        + '[[udp.services.mix.weighted.services]]\nname = "single"\nweight = 1\n'
    )
    _proxy, port = udp_proxy(turnout, dynamic)
    tags = []
    sockets = [client() for _ in range(40)]
    for sock in sockets:
        reply = ask(sock, port, b"hi")
        tags.append(reply[:2])
        # The rest of a session goes to the same server.
        assert ask(sock, port, b"again")[:2] == reply[:2]
    assert tags.count(b"a:") == 15 and tags.count(b"b:") == 15 and tags.count(b"c:") == 10
    for sock in sockets:
        sock.close()


def test_unrouted_datagrams_and_dead_servers(
    turnout: Callable[..., Turnout],  # noqa: F811
) -> None:
    dead = free_udp_port()  # nothing listens: ICMP port unreachable
    proxy, port = udp_proxy(
        turnout, '[http.routers.x]\nrule = "Path(`/`)"\nservice = "whoami@internal"\n'
    )
    sock = client()
    sock.sendto(b"nobody", ("127.0.0.1", port))
    assert nothing_comes(sock)
    assert udp_stats(proxy)["unrouted_dropped"] == 1
    # A router added live takes the next datagrams (to a server that is not there:
    # the session closes on the error and the next datagram tries again).
    proxy.dynamic_path.write_text(ROUTER + lb(dead))
    assert wait_until(lambda: "configuration loaded" in proxy.stderr())

    def errors() -> int:
        sock.sendto(b"anyone?", ("127.0.0.1", port))
        return udp_stats(proxy)["upstream_errors"]

    assert wait_until(lambda: errors() >= 2, timeout=5)
    assert wait_until(lambda: udp_stats(proxy)["sessions"] == 0)
    sock.close()


def test_shutdown_closes_sessions_at_once(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo()
    proxy, port = udp_proxy(turnout, ROUTER + lb(server.port), timeout="60s")
    sockets = [client() for _ in range(5)]
    for sock in sockets:
        assert ask(sock, port, b"x") == b"x"
    assert udp_stats(proxy)["sessions"] == 5
    started = time.monotonic()
    proxy.signal(15)
    assert proxy.wait(9) == 0, proxy.stderr()
    # Sessions do not hold shutdown for graceTimeOut (10 s) nor for their 60 s timeout.
    assert time.monotonic() - started < 6
    for sock in sockets:
        sock.close()


def test_udp_and_http_entry_points_side_by_side(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo()
    dynamic = (
        ROUTER
        + lb(server.port)
        + ('[http.routers.w]\nrule = "PathPrefix(`/`)"\nservice = "whoami@internal"\n')
    )
    proxy, port = udp_proxy(turnout, dynamic)
    sock = client()
    assert ask(sock, port, b"udp") == b"udp"
    with socket.create_connection(("127.0.0.1", proxy.port)) as http:
        http.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert http.recv(100).startswith(b"HTTP/1.1 200")
    assert "configuration loaded: 2 routers" in proxy.stderr()
    sock.close()
    assert free_port()  # the harness's TCP helpers still work alongside


def test_sessions_are_bounded_by_max_connections_and_host_names_resolve(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
) -> None:
    server = echo(dual_stack=True)
    port = free_udp_port()
    # A server named by host name (resolved when a session opens, from /etc/hosts).
    dynamic = (
        ROUTER
        + f'[[udp.services.echo.loadBalancer.servers]]\naddress = "localhost:{server.port}"\n'
    )
    proxy = turnout(
        dynamic,
        static_extra=(
            f'[entryPoints.dns]\naddress = "127.0.0.1:{port}/udp"\n'
            'udp.timeout = "1s"\ntransport.maxConnections = 3\n'
        ),
    )
    assert wait_until(lambda: f"127.0.0.1:{port}/udp" in proxy.stderr()), proxy.stderr()
    sockets = [client() for _ in range(4)]
    for sock in sockets[:3]:
        assert ask(sock, port, b"in") == b"in"
    # A fourth client address is refused a session while three are open...
    sockets[3].sendto(b"out", ("127.0.0.1", port))
    assert nothing_comes(sockets[3])
    stats = udp_stats(proxy)
    assert stats["sessions"] == 3 and stats["session_limit_dropped"] == 1
    # ...and the open ones keep working; once they expire it gets its turn.
    assert ask(sockets[0], port, b"still") == b"still"
    assert wait_until(lambda: udp_stats(proxy)["sessions"] == 0, timeout=5)
    assert ask(sockets[3], port, b"now") == b"now"
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("listen", ["[::1]:{port}/udp", ":{port}/udp"])
def test_ipv6_and_all_interface_entry_points(
    turnout: Callable[..., Turnout],  # noqa: F811
    echo: Callable[..., Echo],
    listen: str,
) -> None:
    """``:P/udp`` is one dual-stack socket: IPv4 clients (seen as ::ffff:a.b.c.d)
    and IPv6 clients both get their answers from it."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    server = echo()
    port = free_udp_port()
    proxy = turnout(
        ROUTER + lb(server.port),
        static_extra=f'[entryPoints.dns]\naddress = "{listen.format(port=port)}"\n',
    )
    assert wait_until(lambda: f":{port}/udp" in proxy.stderr()), proxy.stderr()
    families = [(socket.AF_INET6, "::1")]
    if listen.startswith(":"):
        families.append((socket.AF_INET, "127.0.0.1"))
    for family, host in families:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(b"hello " + host.encode(), (host, port))
            data, peer = sock.recvfrom(100)
            assert data == b"hello " + host.encode()
            assert peer[1] == port
    assert udp_stats(proxy)["sessions_opened"] == len(families)
