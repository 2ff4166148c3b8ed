"""What the load is pointed at: the backend directly, Turnout, and peer proxies.

A target is a small class: `unavailable()` says why it cannot run here (or None),
`start()` writes its configuration in its own directory under the run's temporary
directory, starts it on a free 127.0.0.1 port and waits until it answers, `pids()`
names the processes whose CPU and memory are measured, `stop()` stops them by pid.
To add a peer, subclass Target and append it to TARGETS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.backends import Backend, start_nginx
from benchmarks.procs import LOOPBACK, Server, find_binary, free_port

START_TIMEOUT = 20.0


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _version_of(cmd: list[str]) -> str:
    """First line mentioning a version from `cmd` (stdout or stderr), bounded to 5 s."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if p.returncode != 0 and "-v" not in cmd:  # wrk -v exits 1 after printing its version
        return "unknown"
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        if "version" in line.lower() or line.strip().startswith(("v", "wrk")):
            return line.strip()
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else "unknown"


class Target:
    name = "target"
    is_proxy = True  # False only for `direct`
    binary: str | None = None

    def __init__(self) -> None:
        self.port = 0
        self.server: Server | None = None
        self.workdir: Path | None = None

    # -- what subclasses provide ---------------------------------------------------
    def unavailable(self) -> str | None:
        if self.binary and find_binary(self.binary) is None:
            return f"`{self.binary}` is not installed"
        return None

    def command(self, workdir: Path, backend: Backend) -> tuple[list[str], dict[str, str] | None]:
        """Write configuration into `workdir`; return (argv, env or None)."""
        raise NotImplementedError

    def version(self) -> str:
        return "unknown"

    # -- shared machinery ----------------------------------------------------------
    def start(self, workdir: Path, backend: Backend) -> None:
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd, env = self.command(self.workdir, backend)
        self.server = Server(self.name, cmd, self.workdir, env=env)
        self.server.wait_http(self.port, "/", timeout=START_TIMEOUT)

    def url(self, path: str = "/") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def pids(self) -> list[int]:
        return [self.server.pid] if self.server else []

    def alive(self) -> bool:
        return self.server is None or self.server.running()

    def output(self) -> str:
        return self.server.output() if self.server else ""

    def command_line(self) -> str:
        return " ".join(self.server.cmd) if self.server else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class Direct(Target):
    """No proxy: load straight at the backend (the ceiling every proxy is compared to)."""

    name = "direct"
    is_proxy = False

    def start(self, workdir: Path, backend: Backend) -> None:
        self.port = backend.port

    def pids(self) -> list[int]:
        return []

    def version(self) -> str:
        return "-"


class Turnout(Target):
    name = "turnout"
    extra_args: tuple[str, ...] = ()  # e.g. ("--workers", "2"), from --turnout-args

    @staticmethod
    def base_command() -> list[str]:
        script = Path(sys.executable).parent / "turnout"
        if script.is_file():
            return [str(script)]
        return [sys.executable, "-m", "proxy.cli"]

    def command(self, workdir: Path, backend: Backend) -> tuple[list[str], dict[str, str] | None]:
        dynamic = workdir / "dynamic.toml"
        dynamic.write_text(
            "[http.routers.bench]\n"
            'rule = "PathPrefix(`/`)"\n'
            'service = "backend"\n'
            "\n"
            "[http.services.backend.loadBalancer]\n"
            "[[http.services.backend.loadBalancer.servers]]\n"
            f'url = "http://{LOOPBACK}:{backend.port}"\n'
        )
        static = workdir / "static.toml"
        static.write_text(
            "[entryPoints.web]\n"
            f'address = "{LOOPBACK}:{self.port}"\n'
            "\n"
            "[providers.file]\n"
            f"filename = {_toml_str(str(dynamic))}\n"
            "\n"
            "[log]\n"
            'level = "ERROR"\n'
        )
        return [*self.base_command(), "run", "-c", str(static), *self.extra_args], None

    def version(self) -> str:
        return _version_of([*self.base_command(), "version"])


class HAProxy(Target):
    name = "haproxy"
    binary = "haproxy"

    def command(self, workdir: Path, backend: Backend) -> tuple[list[str], dict[str, str] | None]:
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(f"""\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    http-reuse always

frontend bench
    bind {LOOPBACK}:{self.port}
    default_backend backend

backend backend
    server s1 {LOOPBACK}:{backend.port}
""")
        haproxy = find_binary("haproxy")
        assert haproxy is not None
        # -db: foreground, no master-worker: the pid we start is the one that serves.
        return [haproxy, "-db", "-f", str(cfg)], None

    def version(self) -> str:
        return _version_of([find_binary("haproxy") or "haproxy", "-v"])


class NginxProxy(Target):
    name = "nginx"
    binary = "nginx"

    def start(self, workdir: Path, backend: Backend) -> None:
        self.workdir = workdir / self.name
        self.port = free_port()
        body = f"""\
    upstream backend {{
        server {LOOPBACK}:{backend.port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {LOOPBACK}:{self.port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}"""
        self.server = start_nginx(self.name, self.workdir, body)
        self.server.wait_http(self.port, "/", timeout=START_TIMEOUT)

    def version(self) -> str:
        return _version_of([find_binary("nginx") or "nginx", "-v"])


class Caddy(Target):
    """Caddy's reverse_proxy (keep-alive by default), GOMAXPROCS=1 like the others' 1 thread."""

    name = "caddy"
    binary = "caddy"
    gomaxprocs = 1

    def command(self, workdir: Path, backend: Backend) -> tuple[list[str], dict[str, str] | None]:
        cfg = workdir / "Caddyfile"
        cfg.write_text(f"""\
{{
    admin off
    auto_https off
    persist_config off
    log {{
        level ERROR
    }}
}}

http://{LOOPBACK}:{self.port} {{
    bind {LOOPBACK}
    reverse_proxy {LOOPBACK}:{backend.port}
}}
""")
        env = dict(os.environ)
        env.update(
            {
                "GOMAXPROCS": str(self.gomaxprocs),
                "HOME": str(workdir),
                "XDG_CONFIG_HOME": str(workdir / "config"),
                "XDG_DATA_HOME": str(workdir / "data"),
            }
        )
        caddy = find_binary("caddy")
        assert caddy is not None
        return [caddy, "run", "--config", str(cfg), "--adapter", "caddyfile"], env

    def version(self) -> str:
        return _version_of([find_binary("caddy") or "caddy", "version"])


TARGETS: list[type[Target]] = [Direct, Turnout, HAProxy, NginxProxy, Caddy]
TARGET_NAMES = [t.name for t in TARGETS]


def make_targets(names: list[str]) -> list[Target]:
    """Instances in TARGETS order (the interleaving order), whatever order `names` has."""
    unknown = set(names) - set(TARGET_NAMES)
    if unknown:
        raise ValueError(
            f"unknown target(s): {', '.join(sorted(unknown))}; known: {', '.join(TARGET_NAMES)}"
        )
    return [cls() for cls in TARGETS if cls.name in names]
