"""UDP relay throughput: ``python -m benchmarks.udp [--seconds 5] [--clients 10] [--size 64]``.

A uvloop echo server, reached directly (the limit), through Turnout's UDP entry
point, and through nginx's ``stream`` UDP proxy when installed (HAProxy has no
UDP). Each of ``--clients`` sockets keeps ``--window`` datagrams in flight and
sends one for each answer; the figure is answers per second. Not a test:
nothing is asserted. Figures are printed, not saved (the suite's results and
chart are for ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.procs import LOOPBACK, find_binary, python_env

NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def serve_echo(port: int) -> None:
    """The backend (``python -m benchmarks.udp --echo PORT``)."""
    import uvloop

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Echo, local_addr=(LOOPBACK, port))
        await asyncio.Event().wait()

    uvloop.run(main())


def answered(port: int, payload: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        for _ in range(50):
            try:
                sock.sendto(payload, (LOOPBACK, port))
                return sock.recvfrom(65536)[0] == payload
            except OSError:
                time.sleep(0.1)
    return False


def measure(port: int, clients: int, window: int, seconds: float, size: int) -> float:
    """Answers per second with ``window`` datagrams in flight per client socket."""
    payload = b"x" * size
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        sock.connect((LOOPBACK, port))
        sock.setblocking(False)
        sockets.append(sock)
        selector.register(sock, selectors.EVENT_READ)
    for sock in sockets:
        for _ in range(window):
            sock.send(payload)
    got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        events = selector.select(0.2)
        if not events:  # all in flight were lost: start the windows again
            for sock in sockets:
                for _ in range(window):
                    sock.send(payload)
            continue
        for key, _ in events:
            sock = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    sock.recv(65536)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                got += 1
                sock.send(payload)
    for sock in sockets:
        sock.close()
    return got / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.udp", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="datagram bytes")
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:
        serve_echo(args.echo)
        return 0
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="udp-bench-") as tmp:
        work = Path(tmp)
        try:
            echo = free_udp_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.udp", "--echo", str(echo)],
                    env=python_env(),
                )
            )
            targets = {"direct": echo}
            turnout = free_udp_port()
            (work / "static.toml").write_text(
                f'[entryPoints.udp]\naddress = "{LOOPBACK}:{turnout}/udp"\nudp.timeout = "30s"\n'
                f'[providers.file]\nfilename = "{work / "dynamic.toml"}"\n[log]\nlevel = "ERROR"\n'
            )
            (work / "dynamic.toml").write_text(
                '[udp.routers.r]\nentryPoints = ["udp"]\nservice = "echo"\n'
                f'[[udp.services.echo.loadBalancer.servers]]\naddress = "{LOOPBACK}:{echo}"\n'
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "proxy.cli", "run", "-c", str(work / "static.toml")],
                    env=python_env(),
                )
            )
            targets["turnout"] = turnout
            nginx = find_binary("nginx")
            if nginx and Path(NGINX_STREAM_MODULE).exists():
                port = free_udp_port()
                (work / "nginx.conf").write_text(
                    f"load_module {NGINX_STREAM_MODULE};\nworker_processes 1;\n"
                    f"pid {work}/nginx.pid;\nerror_log {work}/nginx.err;\ndaemon off;\n"
                    "events { worker_connections 4096; }\n"
                    f"stream {{ server {{ listen {LOOPBACK}:{port} udp; "
                    f"proxy_pass {LOOPBACK}:{echo}; proxy_timeout 30s; }} }}\n"
                )
                processes.append(
                    subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)])
                )
                targets["nginx-stream"] = port
            else:
                print("nginx with the stream module not installed: not measured")
            payload = b"x" * args.size
            for name, port in targets.items():
                if not answered(port, payload):
                    print(f"{name}: no answer on {LOOPBACK}:{port}", file=sys.stderr)
                    return 1
            print(
                f"{args.clients} clients x {args.window} in flight, {args.size}-byte datagrams, "
                f"{args.seconds:g} s each:"
            )
            for name, port in targets.items():
                rate = measure(port, args.clients, args.window, args.seconds, args.size)
                print(f"  {name:<13} {rate:>9,.0f} datagrams/s")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
