"""Backends the targets forward to: nginx when installed, else the bundled uvloop server.

Both serve `/` -> 200 "hello world\\n" (12 bytes) and `/1m` -> a 1 MiB file.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.backend import LARGE_PATH, large_body
from benchmarks.procs import (
    LOOPBACK,
    Server,
    find_binary,
    free_port,
    python_cmd,
    python_env,
)

LARGE_URL_PATH = LARGE_PATH.decode()


def nginx_conf(workdir: Path, http_body: str) -> str:
    """A single-process nginx configuration whose every path lives under `workdir`.

    `master_process off` makes the process we start the one that serves, so its
    /proc accounting is the whole story.
    """
    w = workdir
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log error;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
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
"""


def start_nginx(name: str, workdir: Path, http_body: str) -> Server:
    nginx = find_binary("nginx")
    if nginx is None:
        raise FileNotFoundError("nginx is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, http_body))
    # -e: early error log before the config is read (else /var/log/nginx/error.log).
    cmd = [nginx, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")]
    return Server(name, cmd, workdir)


class Backend:
    """Base: a process answering HTTP on 127.0.0.1:port, stopped by pid."""

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

    def start(self, workdir: Path) -> None:
        workdir = workdir / "backend-nginx"
        www = workdir / "www"
        www.mkdir(parents=True, exist_ok=True)
        (www / LARGE_URL_PATH.lstrip("/")).write_bytes(large_body())
        self.port = free_port()
        body = f"""\
    server {{
        listen {LOOPBACK}:{self.port} backlog=4096;
        location = {LARGE_URL_PATH} {{
            root {www};
        }}
        location / {{
            return 200 "hello world\\n";
        }}
    }}"""
        self.server = start_nginx("backend-nginx", workdir, body)
        self.server.wait_http(self.port, "/", timeout=10)


class BundledBackend(Backend):
    name = "bundled"

    def start(self, workdir: Path) -> None:
        workdir = workdir / "backend-bundled"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = python_cmd("benchmarks.backend", "--host", LOOPBACK, "--port", str(self.port))
        self.server = Server("backend-bundled", cmd, workdir, env=python_env())
        self.server.wait_http(self.port, "/", timeout=15)


def choose_backend(kind: str = "auto") -> Backend:
    if kind == "nginx" or (kind == "auto" and find_binary("nginx")):
        return NginxBackend()
    if kind in ("auto", "bundled"):
        return BundledBackend()
    raise ValueError(f"unknown backend {kind!r}")
