"""What the load is pointed at: the backend directly, Turnout, and peer proxies.

A target is a small class: `unavailable()` says why it cannot run here at all (or
None), `supports(setup)` why it has no equivalent for one setup (n/a), `start()`
writes its configuration for a setup (see scenarios.SETUPS) in its own directory
under the run's temporary directory, starts it on free 127.0.0.1 ports (through
`taskset` when the setup is pinned) and waits until it answers, `pids()` names the
processes whose CPU and memory are measured, `stop()` stops them by pid. To add a
peer, subclass Target and append it to TARGETS.

Fair settings, the same for every peer: one worker / one thread / GOMAXPROCS=1
(second rows: Turnout --workers 2, Caddy GOMAXPROCS=2), keep-alive to the backend,
no access log, default buffer sizes, limits raised only as far as the connection
count of the run needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.backends import STREAM_MODULE, Ports, start_nginx, tcp_relays
from benchmarks.procs import (
    LOOPBACK,
    Server,
    StartError,
    find_binary,
    free_port,
    python_cmd,
    python_env,
    run_bounded,
)
from benchmarks.scenarios import BENCH_HOST, ROUTER_COUNT, Scenario, router_host

START_TIMEOUT = 20.0
START_TIMEOUT_10K = 90.0  # 10,000 routers take a while to compile (and Caddy to provision)
CHECK_TIMEOUT = 60.0


@dataclass(slots=True)
class Setup:
    """What the targets are started for: one of scenarios.SETUPS, pinned or not."""

    name: str = "http"
    pinned: bool = False
    # Idle-heavy scenarios get freshly started targets, so that the memory the idle
    # connections cost is measured against a fresh baseline.
    idle: bool = False
    ports: Ports = field(default_factory=Ports)
    max_connections: int = 1000  # client connections the run will hold at once, at most
    proxy_cpu: int = 0  # with `pinned`: the CPU the proxy runs on
    routers: int = ROUTER_COUNT  # routers-10k: the table's size (smaller only in tests)

    @property
    def key(self) -> str:
        return self.name + ("-pinned" if self.pinned else "") + ("-idle" if self.idle else "")

    def probe_host(self) -> str | None:
        return BENCH_HOST if self.name == "routers-10k" else None


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
        self.ports: dict[str, int] = {}
        self.server: Server | None = None
        self.workdir: Path | None = None
        self._version: str | None = None
        self.note: str | None = None  # a setting the run forced on it, said in the report

    # -- what subclasses provide ---------------------------------------------------
    def unavailable(self) -> str | None:
        if self.binary and find_binary(self.binary) is None:
            return f"`{self.binary}` is not installed"
        return None

    def supports(self, setup: str) -> str | None:
        """Why this target has no equivalent of `setup` (None: it has one)."""
        return None

    def command(self, workdir: Path, setup: Setup) -> tuple[list[str], dict[str, str] | None]:
        """Write configuration into `workdir`; return (argv, env or None)."""
        raise NotImplementedError

    def _version_text(self) -> str:
        return "unknown"

    # -- shared machinery ----------------------------------------------------------
    def version(self) -> str:
        if self._version is None:
            self._version = self._version_text()
        return self._version

    def allocate_ports(self, setup: Setup) -> None:
        if setup.name == "tcp":
            self.ports = {f"tcp-{name}": free_port() for name, _ in tcp_relays(setup.ports)}
        else:
            self.ports = {"http": free_port()}

    @property
    def port(self) -> int:
        """The main listener (HTTP, or the TCP echo relay)."""
        return self.ports.get("http") or self.ports.get("tcp-echo", 0)

    def port_for(self, sc: Scenario) -> int:
        if sc.kind in ("tcp-echo", "tcp-bulk"):
            return self.ports[sc.kind]
        if sc.kind == "pgbench":
            return self.ports["tcp-pg"]
        return self.ports["http"]

    def start(self, workdir: Path, setup: Setup) -> None:
        self.note = None
        self.workdir = workdir / f"{self.name}-{setup.key}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.allocate_ports(setup)
        cmd, env = self.command(self.workdir, setup)
        self.server = Server(self.name, [*pin_prefix(setup), *cmd], self.workdir, env=env)
        self.wait_ready(setup)

    def wait_ready(self, setup: Setup) -> None:
        assert self.server is not None
        timeout = START_TIMEOUT_10K if setup.name == "routers-10k" else START_TIMEOUT
        if setup.name == "tcp":
            self.server.wait_tcp(self.ports["tcp-echo"], timeout=timeout)
            self.server.wait_tcp(self.ports["tcp-bulk"], timeout=timeout, echo=False)
        else:
            self.server.wait_http(self.ports["http"], "/", timeout=timeout, host=setup.probe_host())

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
            self.server = None


def fd_hard_limit() -> int | None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else int(hard)


def pin_prefix(setup: Setup) -> list[str]:
    if not setup.pinned:
        return []
    taskset = find_binary("taskset")
    if taskset is None:
        raise StartError("pinned run: `taskset` (util-linux) is not installed")
    return [taskset, "-c", str(setup.proxy_cpu)]


class Direct(Target):
    """No proxy: load straight at the backend (the ceiling every proxy is compared to)."""

    name = "direct"
    is_proxy = False

    def start(self, workdir: Path, setup: Setup) -> None:
        p = setup.ports
        if setup.name == "tcp":
            self.ports = {f"tcp-{name}": port for name, port in tcp_relays(p)}
        elif setup.name == "websocket":
            self.ports = {"http": p.ws}
        else:
            self.ports = {"http": p.http}

    def pids(self) -> list[int]:
        return []

    def _version_text(self) -> str:
        return "-"


# --- Turnout --------------------------------------------------------------------

# Why Turnout cannot run a setup yet, when `turnout check` refuses its configuration
# as "not supported" (the issue that will bring it).
TURNOUT_NOT_YET = {
    "middlewares": "middlewares not built yet (issue 6)",
    "tcp": "TCP routing not built yet (issue 7)",
}


class Turnout(Target):
    name = "turnout"
    extra_args: tuple[str, ...] = ()  # from --turnout-args
    workers = 1
    chain = False  # the catch-all router behind issue 6's chain (turnout-chain)

    @staticmethod
    def base_command() -> list[str]:
        script = Path(sys.executable).parent / "turnout"
        if script.is_file():
            return [str(script)]
        return [sys.executable, "-m", "proxy.cli"]

    def write_config(self, workdir: Path, setup: Setup) -> Path:
        """Write static.toml and dynamic.toml for `setup`; return the static file."""
        dynamic = workdir / "dynamic.toml"
        dynamic.write_text(turnout_dynamic(setup, chain=self.chain))
        static = workdir / "static.toml"
        if setup.name == "tcp":
            entrypoints = "".join(
                f'[entryPoints.{name}]\naddress = "{LOOPBACK}:{self.ports["tcp-" + name]}"\n\n'
                for name, _ in tcp_relays(setup.ports)
            )
        else:
            entrypoints = f'[entryPoints.web]\naddress = "{LOOPBACK}:{self.ports["http"]}"\n'
            if setup.max_connections > 9000:  # Turnout's default limit is 10,000 per entry point
                entrypoints += (
                    "[entryPoints.web.transport]\n"
                    f"maxConnections = {setup.max_connections + 1000}\n"
                )
        static.write_text(
            f"{entrypoints}\n"
            "[providers.file]\n"
            f"filename = {_toml_str(str(dynamic))}\n"
            "\n"
            "[log]\n"
            'level = "ERROR"\n' + self.observability(workdir, setup)
        )
        return static

    def observability(self, workdir: Path, setup: Setup) -> str:
        """Static TOML appended for the observability variants; the default adds nothing
        (Traefik's defaults: request counting on, no exporter, no access log)."""
        return ""

    def command(self, workdir: Path, setup: Setup) -> tuple[list[str], dict[str, str] | None]:
        static = self.write_config(workdir, setup)
        args = [*self.base_command(), "run", "-c", str(static), *self.extra_args]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        return args, None

    def check_support(self, workdir: Path, setup: Setup) -> str | None:
        """Run `turnout check` on the configuration of `setup`.

        Returns why Turnout cannot run it yet (None if the check passes); raises
        StartError when the check fails for another reason (a broken bench config).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.allocate_ports(setup)
        static = self.write_config(workdir, setup)
        cmd = [*self.base_command(), "check", "-c", str(static)]
        try:
            p = run_bounded(cmd, timeout=CHECK_TIMEOUT, cwd=workdir)
        except subprocess.TimeoutExpired as exc:
            raise StartError(f"`turnout check` took over {CHECK_TIMEOUT:.0f}s") from exc
        if p.returncode == 0:
            return None
        out = (p.stderr + p.stdout).strip()
        if "not supported" in out:
            return TURNOUT_NOT_YET.get(setup.name, f"not supported yet: {out.splitlines()[0]}")
        raise StartError(f"`turnout check` refused the {setup.name} configuration:\n{out}")

    def _version_text(self) -> str:
        # "turnout X.Y.Z; hot path: compiled with mypyc (...)" or its sources, and why.
        try:
            p = run_bounded([*self.base_command(), "version"], timeout=CHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "unknown"
        return "; ".join(p.stdout.split("\n")).strip("; ") or "unknown"


class TurnoutChain(Turnout):
    """Turnout whose router sits behind issue 6's typical chain, in every HTTP setup.

    With ``turnout`` in the same scenario, the runs interleave (A B A B ...), so
    the chain's cost is read as a ratio of neighbouring runs: issue 6 asks for
    at least 0.85 of the bare router's requests/s.
    """

    name = "turnout-chain"
    chain = True


class TurnoutW2(Turnout):
    """Turnout with two worker processes (SO_REUSEPORT): the scaling row."""

    name = "turnout-w2"
    workers = 2


class TurnoutBare(Turnout):
    """Turnout with every observability feature off, request counting included."""

    name = "turnout-bare"

    def observability(self, workdir: Path, setup: Setup) -> str:
        return "".join(
            f"[entryPoints.{name}.observability]\nmetrics = false\naccessLogs = false\n"
            for name in (("echo", "bulk") if setup.name == "tcp" else ("web",))
        )


class TurnoutObs(Turnout):
    """Turnout with StatsD (pushed every second), Prometheus and a JSON access log to a file.

    StatsD goes to a loopback UDP port nobody reads (the send costs Turnout the
    same); /metrics is served on its own entry point and not scraped during the run.
    """

    name = "turnout-obs"

    def allocate_ports(self, setup: Setup) -> None:
        super().allocate_ports(setup)
        self.ports["metrics"] = free_port()
        self.ports["statsd"] = free_port()

    def observability(self, workdir: Path, setup: Setup) -> str:
        return (
            "\n[entryPoints.metrics]\n"
            f'address = "{LOOPBACK}:{self.ports["metrics"]}"\n'
            "[metrics.statsD]\n"
            f'address = "{LOOPBACK}:{self.ports["statsd"]}"\n'
            'pushInterval = "1s"\n'
            "addRoutersLabels = true\n"
            "[metrics.prometheus]\n"
            'entryPoint = "metrics"\n'
            "addRoutersLabels = true\n"
            "[accessLog]\n"
            f"filePath = {_toml_str(str(workdir / 'access.json'))}\n"
            'format = "json"\n'
        )


def _servers_toml(prefix: str, url: str) -> str:
    return f"[[{prefix}.loadBalancer.servers]]\nurl = {_toml_str(url)}\n"


def turnout_dynamic(setup: Setup, chain: bool = False) -> str:
    p = setup.ports
    backend = f"http://{LOOPBACK}:{p.http}"
    if setup.name == "routers-10k":
        parts = []
        for i in range(setup.routers):
            parts.append(
                f'[http.routers.r{i:05d}]\nrule = "Host(`{router_host(i)}`)"\n'
                f'service = "s{i:05d}"\n' + _servers_toml(f"http.services.s{i:05d}", backend)
            )
        return "\n".join(parts)
    if setup.name == "tcp":
        out = []
        for name, port in tcp_relays(p):
            out.append(
                f"[tcp.routers.{name}]\n"
                f'entryPoints = ["{name}"]\n'
                'rule = "HostSNI(`*`)"\n'
                f'service = "{name}"\n\n'
                f"[[tcp.services.{name}.loadBalancer.servers]]\n"
                f'address = "{LOOPBACK}:{port}"\n'
            )
        return "\n".join(out)
    if setup.name == "websocket":
        backend = f"http://{LOOPBACK}:{p.ws}"
    router = '[http.routers.bench]\nrule = "PathPrefix(`/`)"\nservice = "backend"\n'
    if setup.name == "middlewares" or (chain and setup.name == "http"):
        # Issue 6's typical chain: headers + stripPrefix + rateLimit (never reached)
        # + compress (on a response below minResponseBodyBytes).
        router += 'middlewares = ["bench-headers", "strip-api", "rate-limit", "compress"]\n'
        router += """
[http.middlewares.strip-api.stripPrefix]
prefixes = ["/api"]

[http.middlewares.compress.compress]

[http.middlewares.rate-limit.rateLimit]
average = 100000000
burst = 100000000

[http.middlewares.bench-headers.headers.customRequestHeaders]
X-Bench-Request = "1"

[http.middlewares.bench-headers.headers.customResponseHeaders]
X-Bench-Response = "1"
"""
    return router + "\n" + _servers_toml("http.services.backend", backend)


# --- the yardstick --------------------------------------------------------------


class Relay(Target):
    """benchmarks/relay.py: uvloop + httptools and nothing else, on the same interpreter.

    Not a peer: a yardstick measured in the same run (issue 4 quotes such a
    relay). It is interpreted and does nothing but relay, so "turnout / relay" is
    what Turnout's features cost, less what its compiled hot path gains.
    HTTP setup only: it has no routing, middlewares, WebSocket or TCP mode.
    """

    name = "relay"

    def supports(self, setup: str) -> str | None:
        if setup != "http":
            return "the minimal relay has no routing, middlewares, WebSocket or TCP mode"
        return None

    def command(self, workdir: Path, setup: Setup) -> tuple[list[str], dict[str, str] | None]:
        listen, upstream = str(self.ports["http"]), f"{LOOPBACK}:{setup.ports.http}"
        return python_cmd("benchmarks.relay", "--listen", listen, "--upstream", upstream), (
            python_env()
        )

    def _version_text(self) -> str:
        return f"Python {sys.version.split()[0]}, uvloop + httptools"


# --- HAProxy --------------------------------------------------------------------


class HAProxy(Target):
    name = "haproxy"
    binary = "haproxy"

    def command(self, workdir: Path, setup: Setup) -> tuple[list[str], dict[str, str] | None]:
        cfg = workdir / "haproxy.cfg"
        p = setup.ports
        maxconn = max(4096, setup.max_connections + 100)
        # HAProxy reserves two descriptors per connection and refuses to start when
        # that exceeds the hard limit (the runner raises it when it can).
        hard = fd_hard_limit()
        if hard and 2 * maxconn + 400 > hard:
            maxconn = (hard - 400) // 2
            self.note = (
                f"maxconn capped at {maxconn} by the descriptor limit ({hard}): "
                f"fewer than the {setup.max_connections} connections of this run"
            )
        head = f"""\
global
    nbthread 1
    maxconn {maxconn}

defaults
    maxconn {maxconn}
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""
        if setup.name == "tcp":
            body = "    mode tcp\n"
            for name, port in tcp_relays(p):
                body += f"""
frontend {name}
    bind {LOOPBACK}:{self.ports["tcp-" + name]}
    default_backend {name}

backend {name}
    server s1 {LOOPBACK}:{port}
"""
            cfg.write_text(head + body)
        else:
            front = ""
            backends = ""
            # routers-10k: an unknown Host gets 503, as a table without a catch-all should.
            default = "" if setup.name == "routers-10k" else "    default_backend backend\n"
            server = p.ws if setup.name == "websocket" else p.http
            if setup.name == "routers-10k":
                hosts = workdir / "hosts.map"
                hosts.write_text(
                    "".join(f"{router_host(i)} b{i:05d}\n" for i in range(setup.routers))
                )
                front = f"    use_backend %[req.hdr(host),field(1,:),lower,map_str({hosts})]\n"
                backends = "".join(
                    f"\nbackend b{i:05d}\n    server s1 {LOOPBACK}:{p.http}\n"
                    for i in range(setup.routers)
                )
            elif setup.name == "middlewares":
                front = """\
    http-request deny unless { src 127.0.0.0/8 }
    stick-table type ip size 100k expire 10s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000000 }
    http-request set-header X-Bench-Request 1
    http-response set-header X-Bench-Response 1
"""
            cfg.write_text(
                head
                + f"""\
    mode http
    timeout http-keep-alive 30s
    timeout tunnel 60s
    http-reuse always

frontend bench
    bind {LOOPBACK}:{self.ports["http"]}
{front}{default}

backend backend
    server s1 {LOOPBACK}:{server}
{backends}"""
            )
        haproxy = find_binary("haproxy")
        assert haproxy is not None
        # -db: foreground, no master-worker: the pid we start is the one that serves.
        return [haproxy, "-db", "-f", str(cfg)], None

    def _version_text(self) -> str:
        return _version_of([find_binary("haproxy") or "haproxy", "-v"])


# --- nginx ----------------------------------------------------------------------

_NGINX_PROXY = """\
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;"""


class NginxProxy(Target):
    """nginx as a proxy. Request bodies are buffered in memory (client_body_buffer_size
    128k) rather than spilled to a temporary file, so 64 KiB uploads are not a disk test."""

    name = "nginx"
    binary = "nginx"

    def supports(self, setup: str) -> str | None:
        if setup == "tcp" and not STREAM_MODULE.is_file():
            return "nginx stream module missing (apt-get install libnginx-mod-stream)"
        return None

    def config(self, setup: Setup) -> dict[str, Any]:
        """start_nginx's keyword arguments for `setup` (ports already allocated)."""
        p = setup.ports
        main = ""
        stream = None
        http = ""
        if setup.name == "tcp":
            main = f"load_module {STREAM_MODULE};\n"
            stream = "".join(
                f"""\
    server {{
        listen {LOOPBACK}:{self.ports["tcp-" + name]} backlog=4096;
        proxy_pass {LOOPBACK}:{port};
    }}
"""
                for name, port in tcp_relays(p)
            )
        elif setup.name == "routers-10k":
            # The first server is the default one: an unknown Host gets 404, not a router.
            http = f"""\
    server_names_hash_max_size 32768;
    server_names_hash_bucket_size 64;
    server {{
        listen {LOOPBACK}:{self.ports["http"]} default_server backlog=4096;
        return 404;
    }}
"""
            for i in range(setup.routers):
                http += f"""\
    upstream u{i:05d} {{
        server {LOOPBACK}:{p.http};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {LOOPBACK}:{self.ports["http"]};
        server_name {router_host(i)};
        location / {{
            proxy_pass http://u{i:05d};
{_NGINX_PROXY}
        }}
    }}
"""
        else:
            upstream = p.ws if setup.name == "websocket" else p.http
            location = _NGINX_PROXY + "\n            client_body_buffer_size 128k;"
            if setup.name == "websocket":
                location = """\
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 60s;"""
            elif setup.name == "middlewares":
                http = "    limit_req_zone $binary_remote_addr zone=bench:1m rate=100000000r/s;\n"
                location += """
            allow 127.0.0.0/8;
            deny all;
            limit_req zone=bench burst=100000000 nodelay;
            proxy_set_header X-Bench-Request 1;
            add_header X-Bench-Response 1;"""
            http += f"""\
    upstream backend {{
        server {LOOPBACK}:{upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {LOOPBACK}:{self.ports["http"]} backlog=4096;
        location / {{
            proxy_pass http://backend;
{location}
        }}
    }}"""
        return {
            "http_body": http,
            "main": main,
            "stream_body": stream,
            "connections": max(8192, 2 * setup.max_connections + 100),
        }

    def start(self, workdir: Path, setup: Setup) -> None:
        self.workdir = workdir / f"{self.name}-{setup.key}"
        self.allocate_ports(setup)
        self.server = start_nginx(
            self.name, self.workdir, **self.config(setup), prefix=pin_prefix(setup)
        )
        self.wait_ready(setup)

    def _version_text(self) -> str:
        return _version_of([find_binary("nginx") or "nginx", "-v"])


# --- Caddy ----------------------------------------------------------------------


class Caddy(Target):
    """Caddy's reverse_proxy (keep-alive to the backend by default), GOMAXPROCS=1 like
    the others' one thread. Admin API off, config and state in the run's directory."""

    name = "caddy"
    binary = "caddy"
    gomaxprocs = 1

    def supports(self, setup: str) -> str | None:
        if setup == "tcp":
            return "no TCP proxy in Debian's caddy (needs the caddy-l4 plugin)"
        return None

    def command(self, workdir: Path, setup: Setup) -> tuple[list[str], dict[str, str] | None]:
        p = setup.ports
        port = self.ports["http"]
        head = """\
{
    admin off
    auto_https off
    log {
        level ERROR
    }
}
"""
        if setup.name == "routers-10k":
            sites = "".join(
                f"""
http://{router_host(i)}:{port} {{
    bind {LOOPBACK}
    reverse_proxy {LOOPBACK}:{p.http}
}}
"""
                for i in range(setup.routers)
            )
        else:
            upstream = p.ws if setup.name == "websocket" else p.http
            inner = f"    reverse_proxy {LOOPBACK}:{upstream}\n"
            if setup.name == "middlewares":
                # No rate limiter in Caddy without a plugin: the chain is one step shorter.
                inner = f"""\
    @outside not remote_ip 127.0.0.0/8
    respond @outside 403
    header X-Bench-Response 1
    reverse_proxy {LOOPBACK}:{upstream} {{
        header_up X-Bench-Request 1
    }}
"""
            sites = f"""
http://{LOOPBACK}:{port} {{
    bind {LOOPBACK}
{inner}}}
"""
        cfg = workdir / "Caddyfile"
        cfg.write_text(head + sites)
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

    def _version_text(self) -> str:
        return _version_of([find_binary("caddy") or "caddy", "version"])


class Caddy2(Caddy):
    name = "caddy-2"
    gomaxprocs = 2


TARGETS: list[type[Target]] = [
    Direct,
    Turnout,
    TurnoutW2,
    TurnoutBare,
    TurnoutObs,
    TurnoutChain,
    HAProxy,
    NginxProxy,
    Caddy,
    Caddy2,
    Relay,
]
TARGET_NAMES = [t.name for t in TARGETS]


def make_targets(names: list[str]) -> list[Target]:
    """Instances in TARGETS order (the interleaving order), whatever order `names` has."""
    if names == ["all"]:
        names = TARGET_NAMES
    unknown = set(names) - set(TARGET_NAMES)
    if unknown:
        raise ValueError(
            f"unknown target(s): {', '.join(sorted(unknown))}; known: {', '.join(TARGET_NAMES)}"
        )
    return [cls() for cls in TARGETS if cls.name in names]
