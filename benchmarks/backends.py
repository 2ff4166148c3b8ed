"""Backends the targets forward to.

HTTP: nginx when installed, else the bundled uvloop server. Both serve `/` -> 200
"hello world\\n" (12 bytes), `/1m` -> a 1 MiB file and `/upload` -> 200 "ok\\n" after
reading the whole request body. nginx reads the body with the echo module's
`echo_read_request_body` (Debian's nginx-light ships it) into a memory buffer big
enough for 64 KiB, so it answers only once the last byte is in; without that module
it falls back to `return 200` (the body is still read off the socket and dropped,
but nginx may answer before the last byte arrives; the run records which).

WebSocket: the bundled echo server (ws_backend.py). TCP: the bundled echo and bulk
servers (tcp_backend.py), and PostgreSQL for pgbench (initdb into a temporary
folder, run as the postgres user when we are root). Those start only when a
selected scenario needs them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.backend import LARGE_PATH, UPLOAD_PATH, large_body
from benchmarks.procs import (
    LOOPBACK,
    Server,
    StartError,
    find_binary,
    free_port,
    python_cmd,
    python_env,
)

LARGE_URL_PATH = LARGE_PATH.decode()
NGINX_MODULES = Path("/usr/lib/nginx/modules")
ECHO_MODULE = NGINX_MODULES / "ngx_http_echo_module.so"
STREAM_MODULE = NGINX_MODULES / "ngx_stream_module.so"


def nginx_conf(
    workdir: Path,
    http_body: str,
    main: str = "",
    stream_body: str | None = None,
    connections: int = 8192,
) -> str:
    """A single-process nginx configuration whose every path lives under `workdir`.

    `master_process off` makes the process we start the one that serves, so its
    /proc accounting is the whole story. `connections` is worker_connections (each
    proxied connection counts twice: client and upstream).
    """
    w = workdir
    stream = f"stream {{\n{stream_body}\n}}\n" if stream_body is not None else ""
    return f"""\
{main}daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log error;
worker_rlimit_nofile {connections * 2 + 100};
events {{
    worker_connections {connections};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
{http_body}
}}
{stream}"""


def start_nginx(
    name: str,
    workdir: Path,
    http_body: str,
    main: str = "",
    stream_body: str | None = None,
    connections: int = 8192,
    prefix: list[str] | None = None,
) -> Server:
    nginx = find_binary("nginx")
    if nginx is None:
        raise FileNotFoundError("nginx is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, http_body, main, stream_body, connections))
    # -e: early error log before the config is read (else /var/log/nginx/error.log).
    cmd = [nginx, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")]
    return Server(name, [*(prefix or []), *cmd], workdir)


class Backend:
    """Base: a process answering on 127.0.0.1:port, stopped by pid."""

    name = "backend"

    def __init__(self) -> None:
        self.port = 0
        self.server: Server | None = None

    def start(self, workdir: Path) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    def url(self, path: str = "/") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def describe(self) -> str:
        return self.name


class NginxBackend(Backend):
    name = "nginx"

    def __init__(self, connections: int = 8192) -> None:
        super().__init__()
        self.connections = connections
        self.upload_mode = "echo_read_request_body" if ECHO_MODULE.is_file() else "return 200"

    def start(self, workdir: Path) -> None:
        workdir = workdir / "backend-nginx"
        www = workdir / "www"
        www.mkdir(parents=True, exist_ok=True)
        (www / LARGE_URL_PATH.lstrip("/")).write_bytes(large_body())
        self.port = free_port()
        if ECHO_MODULE.is_file():
            main = f"load_module {ECHO_MODULE};\n"
            upload = """\
            echo_read_request_body;
            echo "ok";"""
        else:
            main = ""
            upload = """\
            return 200 "ok\\n";"""
        body = f"""\
    server {{
        listen {LOOPBACK}:{self.port} backlog=4096;
        location = {LARGE_URL_PATH} {{
            root {www};
        }}
        location = {UPLOAD_PATH} {{
            client_max_body_size 1m;
            client_body_buffer_size 128k;
{upload}
        }}
        location / {{
            return 200 "hello world\\n";
        }}
    }}"""
        self.server = start_nginx(
            "backend-nginx", workdir, body, main=main, connections=self.connections
        )
        self.server.wait_http(self.port, "/", timeout=10)

    def describe(self) -> str:
        return f"nginx (uploads: {self.upload_mode})"


class BundledBackend(Backend):
    name = "bundled"

    def start(self, workdir: Path) -> None:
        workdir = workdir / "backend-bundled"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = python_cmd("benchmarks.backend", "--host", LOOPBACK, "--port", str(self.port))
        self.server = Server("backend-bundled", cmd, workdir, env=python_env())
        self.server.wait_http(self.port, "/", timeout=15)


class WsBackend(Backend):
    """The bundled WebSocket echo server."""

    name = "ws-echo"

    def start(self, workdir: Path) -> None:
        workdir = workdir / "backend-ws"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = python_cmd("benchmarks.ws_backend", "--host", LOOPBACK, "--port", str(self.port))
        self.server = Server("backend-ws", cmd, workdir, env=python_env())
        self.server.wait_http(self.port, "/", timeout=15)


class TcpBackend(Backend):
    """The bundled TCP echo (`port`) and bulk (`bulk_port`) servers, one process."""

    name = "tcp-echo+bulk"

    def __init__(self) -> None:
        super().__init__()
        self.bulk_port = 0

    def start(self, workdir: Path) -> None:
        workdir = workdir / "backend-tcp"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.bulk_port = free_port()
        cmd = python_cmd(
            "benchmarks.tcp_backend",
            "--host",
            LOOPBACK,
            "--echo-port",
            str(self.port),
            "--bulk-port",
            str(self.bulk_port),
        )
        self.server = Server("backend-tcp", cmd, workdir, env=python_env())
        self.server.wait_tcp(self.port, timeout=15)
        self.server.wait_tcp(self.bulk_port, timeout=5, echo=False)


def postgres_tool(name: str) -> str | None:
    """A PostgreSQL server binary (initdb, postgres: not on PATH in Debian) or client tool."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else find_binary(name)


class PgBackend(Backend):
    """PostgreSQL with pgbench's tables (scale 1), for the pgbench-select scenario.

    Its folder is a fresh ``mkdtemp`` (the run's own directory is root-only, and
    PostgreSQL refuses to run as root): owned by postgres, removed on stop.
    """

    name = "postgresql"

    def __init__(self) -> None:
        super().__init__()
        self.root: Path | None = None

    def start(self, workdir: Path) -> None:
        initdb, postgres, pgbench = (postgres_tool(n) for n in ("initdb", "postgres", "pgbench"))
        if not (initdb and postgres and pgbench):
            raise StartError("PostgreSQL is not installed (apt-get install postgresql)")
        self.root = root = Path(tempfile.mkdtemp(prefix="turnout-bench-pg-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
            prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
        data = root / "data"
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            cwd=root,
            timeout=120,
        )
        self.port = free_port()
        cmd = [*prefix, postgres, "-D", str(data), "-p", str(self.port), "-k", str(root)]
        cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"]
        self.server = Server("backend-pg", cmd, root)
        self.server.wait_tcp(self.port, timeout=30, echo=False)
        deadline = time.monotonic() + 60
        while True:  # accepting connections is not accepting queries yet
            init = subprocess.run(
                [pgbench, "-i", "-s", "1", "-q", *pg_args(self.port), "postgres"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if init.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise StartError(f"pgbench -i failed: {init.stderr}\n{self.server.output()}")
            time.sleep(0.3)

    def stop(self) -> None:
        super().stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def pg_args(port: int) -> list[str]:
    return ["-h", LOOPBACK, "-p", str(port), "-U", "postgres"]


@dataclass(slots=True)
class Ports:
    """Where the targets forward to (backend ports; 0 when that backend is not running)."""

    http: int = 0
    ws: int = 0
    tcp_echo: int = 0
    tcp_bulk: int = 0
    tcp_pg: int = 0


def tcp_relays(ports: Ports) -> list[tuple[str, int]]:
    """The tcp setup's relays (name, backend port): echo, bulk, and pg when it runs."""
    relays = [("echo", ports.tcp_echo), ("bulk", ports.tcp_bulk)]
    if ports.tcp_pg:
        relays.append(("pg", ports.tcp_pg))
    return relays


class Backends:
    """The backends a run needs: HTTP always, WebSocket and TCP on demand."""

    def __init__(self, kind: str = "auto", connections: int = 8192) -> None:
        self.http: Backend = choose_backend(kind, connections)
        self.ws: WsBackend | None = None
        self.tcp: TcpBackend | None = None
        self.pg: PgBackend | None = None

    def start(self, workdir: Path, ws: bool = False, tcp: bool = False, pg: bool = False) -> None:
        self.http.start(workdir)
        if ws:
            self.ws = WsBackend()
            self.ws.start(workdir)
        if tcp:
            self.tcp = TcpBackend()
            self.tcp.start(workdir)
        if pg:
            self.pg = PgBackend()
            self.pg.start(workdir)

    def all(self) -> list[Backend]:
        return [b for b in (self.http, self.ws, self.tcp, self.pg) if b is not None]

    def pids(self) -> list[int]:
        return [b.pid for b in self.all() if b.pid]

    def ports(self) -> Ports:
        return Ports(
            http=self.http.port,
            ws=self.ws.port if self.ws else 0,
            tcp_echo=self.tcp.port if self.tcp else 0,
            tcp_bulk=self.tcp.bulk_port if self.tcp else 0,
            tcp_pg=self.pg.port if self.pg else 0,
        )

    def stop(self) -> None:
        for b in reversed(self.all()):
            b.stop()


def choose_backend(kind: str = "auto", connections: int = 8192) -> Backend:
    if kind == "nginx" or (kind == "auto" and find_binary("nginx")):
        return NginxBackend(connections)
    if kind in ("auto", "bundled"):
        return BundledBackend()
    raise ValueError(f"unknown backend {kind!r}")
