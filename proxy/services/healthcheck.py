"""Active health checks: ``loadBalancer.healthCheck``, with Traefik v3's options and semantics.

Theory of operation
-------------------
``compile_health_check`` turns the configuration into a ``HealthCheckSpec``
when the snapshot is built (bad values are configuration errors naming their
key). ``HealthChecks`` belongs to the running instance: when a snapshot goes
live it starts one ``HealthChecker`` task per load balancer that has a spec,
and stops the tasks of load balancers the snapshot no longer holds. An
unchanged service keeps its ``LoadBalancer`` object across a swap (see
``proxy.runtime.snapshot``), so its checker and its servers' states go on
untouched. ``turnout check`` and ``turnout explain`` never create
``HealthChecks``: a dry run dials nothing.

As in Traefik (``pkg/healthcheck``): every server starts UP; an UP server is
probed every ``interval`` (default 30 s, first probe one interval after the
start), a DOWN one every ``unhealthyInterval`` (default: ``interval``). A
probe is one request with a deadline of ``timeout`` (default 5 s) to the
server's URL with ``path`` resolved against it, ``scheme`` and ``port``
replaced when set, ``method`` (GET), ``hostname`` as the Host header and
``headers`` added. It passes when the status is ``status``, or any 2xx/3xx
when ``status`` is 0; redirects are followed (up to 10, as Go's client)
unless ``followRedirects`` is false. Each probe opens its own connection and
closes it; only the response head is read.

``passiveHealthCheck`` (Traefik v3.5+) watches the answers of real requests
instead: ``maxFailedAttempts`` failures (no answer from the server, or a
status of 500 or more) within ``failureWindow`` take a server DOWN; an
answer under 500 forgets its failures. Without an active check the server
comes back UP one ``failureWindow`` later; with one, the probes bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from proxy.http.headers import has_ctl, is_token
from proxy.http.upstream import client_tls
from proxy.middlewares.subrequest import NOT_COPIED, SubrequestError, parse_target, send

if TYPE_CHECKING:
    from collections.abc import Iterable

    from proxy.config.dynamic import PassiveServerHealthCheck, ServerHealthCheck
    from proxy.config.static import ServersTransport
    from proxy.http.resolver import Resolver
    from proxy.services.loadbalancer import LoadBalancer, Server

log = logging.getLogger("turnout.health")

# Traefik's dynamic.DefaultHealthCheckInterval and DefaultHealthCheckTimeout,
# which it also uses in place of a zero or negative value.
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
# Go's http.Client gives up after 10 redirects.
MAX_REDIRECTS = 10
USER_AGENT = "Turnout-HealthCheck"


class HealthCheckError(ValueError):
    """A value the health check cannot use; ``key`` names it under ``healthCheck``."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    """One load balancer's health check, compiled when the snapshot is built."""

    scheme: str  # "" keeps each server's scheme
    path: str
    method: str
    status: int  # 0: any 2xx or 3xx
    port: int  # 0 keeps each server's port
    interval: float
    unhealthy_interval: float
    timeout: float
    hostname: str
    follow_redirects: bool
    headers: tuple[tuple[str, str], ...]
    # TLS towards https servers: the service's serversTransport.
    root_cas: tuple[str, ...] = ()
    insecure_skip_verify: bool = False

    def url_for(self, server_url: str) -> str:
        """The probe URL of one server: path resolved against it, scheme and port replaced."""
        url = urljoin(server_url, self.path) if self.path else server_url
        parts = urlsplit(url)
        scheme = self.scheme or parts.scheme
        netloc = parts.netloc.rpartition("@")[2]
        if self.port:
            host = parts.hostname or ""
            netloc = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return f"{scheme}://{netloc}{path}"

    def tls_context(self) -> ssl.SSLContext:
        return client_tls(self.root_cas, self.insecure_skip_verify)


def compile_health_check(config: ServerHealthCheck, transport: ServersTransport) -> HealthCheckSpec:
    """Raise ``HealthCheckError`` naming the key of a value that cannot be honoured."""
    mode = config.mode.lower() or "http"
    if mode == "grpc":
        raise HealthCheckError("mode 'grpc' is not supported by Turnout yet", "mode")
    if mode != "http":
        raise HealthCheckError(f"mode must be http or grpc, got {config.mode!r}", "mode")
    scheme = config.scheme.lower()
    if scheme not in ("", "http", "https"):
        raise HealthCheckError(f"scheme must be http or https, got {config.scheme!r}", "scheme")
    method = config.method.upper() or "GET"
    if not is_token(method.encode("latin-1", "replace")):
        raise HealthCheckError(f"invalid method {config.method!r}", "method")
    if config.status and not 100 <= config.status <= 599:
        raise HealthCheckError(f"status must be 100 to 599, got {config.status}", "status")
    if not 0 <= config.port <= 65535:
        raise HealthCheckError(f"port must be 0 to 65535, got {config.port}", "port")
    path = config.path
    if has_ctl(path.encode("utf-8")) or " " in path or "#" in path:
        raise HealthCheckError(f"invalid path {path!r}", "path")
    if has_ctl(config.hostname.encode("utf-8")) or " " in config.hostname:
        raise HealthCheckError(f"invalid hostname {config.hostname!r}", "hostname")
    headers = []
    for name, value in config.headers.items():
        if not is_token(name.encode("latin-1", "replace")) or has_ctl(value.encode("utf-8")):
            raise HealthCheckError(f"invalid header {name!r}", f"headers.{name}")
        if name.lower() in NOT_COPIED:
            continue  # Go's client ignores Host (hostname sets it) and writes the framing
        headers.append((name, value))
    if not any(name.lower() == "user-agent" for name, _ in headers):
        headers.insert(0, ("User-Agent", USER_AGENT))
    interval = float(config.interval)
    if interval <= 0:
        interval = DEFAULT_INTERVAL  # Traefik logs an error and uses the default
    unhealthy = interval if config.unhealthy_interval is None else float(config.unhealthy_interval)
    if unhealthy <= 0:
        unhealthy = DEFAULT_INTERVAL
    timeout = float(config.timeout)
    if timeout <= 0:
        timeout = DEFAULT_TIMEOUT
    return HealthCheckSpec(
        scheme=scheme,
        path=path,
        method=method,
        status=config.status,
        port=config.port,
        interval=interval,
        unhealthy_interval=unhealthy,
        timeout=timeout,
        hostname=config.hostname,
        follow_redirects=config.follow_redirects,
        headers=tuple(headers),
        root_cas=tuple(transport.root_cas),
        insecure_skip_verify=transport.insecure_skip_verify,
    )


async def probe(
    spec: HealthCheckSpec,
    server_url: str,
    resolver: Resolver | None,
    context: ssl.SSLContext | None = None,
) -> str | None:
    """One health check of one server: None when it passes, else why it failed."""
    url = spec.url_for(server_url)
    method = spec.method
    host = spec.hostname
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.timeout
    try:
        async with asyncio.timeout_at(deadline):
            for _ in range(MAX_REDIRECTS + 1):
                target = parse_target(url)
                addresses = await resolver.candidates(target.host) if resolver is not None else [""]
                reply = await send(
                    target,
                    method,
                    target.path,
                    list(spec.headers),
                    timeout=max(deadline - loop.time(), 0.001),
                    max_body=0,
                    host=host,
                    context=context,
                    address=addresses[0],
                    fallbacks=addresses[1:],
                    head_only=True,
                )
                status = reply.status
                location = reply.values("Location")
                if not (spec.follow_redirects and status in _REDIRECTS and location):
                    break
                # Go's client: 301/302/303 turn a request into GET (HEAD stays HEAD);
                # a Host set by hand is kept only for a relative Location.
                if status in (301, 302, 303) and method != "HEAD":
                    method = "GET"
                if urlsplit(location[0]).netloc:
                    host = ""
                url = urljoin(url, location[0])
            else:
                return f"stopped after {MAX_REDIRECTS} redirects"
    except TimeoutError:
        return f"no answer within {spec.timeout:g} s"
    except (SubrequestError, ValueError) as error:
        return str(error)
    except OSError as error:  # resolution
        return f"cannot reach {url}: {error.strerror or error}"
    if spec.status:
        if status != spec.status:
            return f"received status {status}, expected {spec.status}"
    elif not 200 <= status < 400:
        return f"received status {status}"
    return None


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class PassiveHealthCheck:
    """Failures of real requests per server, for one load balancer (built per snapshot)."""

    __slots__ = ("active", "balancer", "failures", "max_failed_attempts", "recoveries", "window")

    def __init__(self, window: float, max_failed_attempts: int, active: bool) -> None:
        self.window = window
        self.max_failed_attempts = max_failed_attempts
        self.active = active  # an active check brings DOWN servers back
        self.balancer: LoadBalancer | None = None  # set by the LoadBalancer it watches
        self.failures: dict[Server, deque[float]] = {}
        self.recoveries: dict[Server, asyncio.TimerHandle] = {}

    def answered(self, server: Server, status: int) -> None:
        if status >= 500:
            self.failed(server)
        elif server in self.failures:
            del self.failures[server]

    def failed(self, server: Server) -> None:
        now = time.monotonic()
        times = self.failures.get(server)
        if times is None:
            times = self.failures[server] = deque()
        times.append(now)
        while times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.max_failed_attempts or server in self.recoveries:
            return
        assert self.balancer is not None
        count = len(times)
        self.balancer.set_status(
            server,
            False,
            f"{count} failed request{'' if count == 1 else 's'} within {self.window:g} s",
        )
        if not self.active:
            self.recoveries[server] = asyncio.get_running_loop().call_later(
                self.window, self._recover, server
            )

    def _recover(self, server: Server) -> None:
        del self.recoveries[server]
        self.failures.pop(server, None)
        assert self.balancer is not None
        self.balancer.set_status(server, True)


def compile_passive(config: PassiveServerHealthCheck, active: bool) -> PassiveHealthCheck:
    window = float(config.failure_window)
    if window <= 0:
        raise HealthCheckError(f"must be positive, got {window:g} s", "failureWindow")
    if config.max_failed_attempts < 1:
        raise HealthCheckError(
            f"must be at least 1, got {config.max_failed_attempts}", "maxFailedAttempts"
        )
    return PassiveHealthCheck(window, config.max_failed_attempts, active)


class HealthChecker:
    """The task that probes one load balancer's servers and sets their states."""

    def __init__(self, balancer: LoadBalancer, spec: HealthCheckSpec, resolver: Resolver) -> None:
        self.balancer = balancer
        self.spec = spec
        self.resolver = resolver
        self.task: asyncio.Task[None] | None = None
        self._context: ssl.SSLContext | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"healthcheck-{self.balancer.name}"
        )

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        # When each server was last probed (the start counts as a probe): an UP
        # server is due one interval later, a DOWN one one unhealthyInterval later.
        # The state is read afresh at each wake-up, and the sleep is capped at
        # unhealthyInterval, so a server the passive check took DOWN meanwhile is
        # probed on the DOWN schedule.
        start = loop.time()
        last: dict[Server, float] = dict.fromkeys(self.balancer.members, start)

        def due(server: Server) -> float:
            return last[server] + (spec.interval if server.up else spec.unhealthy_interval)

        while True:
            now = loop.time()
            wait = min(min(due(server) for server in last) - now, spec.unhealthy_interval)
            await asyncio.sleep(max(0.0, wait))
            now = loop.time()
            batch = [server for server in last if due(server) <= now]
            if len(batch) == 1:
                results = [await self._check(batch[0])]  # no task of its own
            else:
                # Probed together: a server that does not answer must not delay the others.
                results = await asyncio.gather(*(self._check(server) for server in batch))
            for server, reason in zip(batch, results, strict=True):
                if reason is not None and not server.up:
                    log.debug("server %s: still DOWN: %s", server.url, reason)
                self.balancer.set_status(server, reason is None, reason or "")
                last[server] = loop.time()

    async def _check(self, server: Server) -> str | None:
        context = None
        if urlsplit(self.spec.url_for(server.url)).scheme == "https":
            if self._context is None:
                self._context = self.spec.tls_context()
            context = self._context
        try:
            return await probe(self.spec, server.url, self.resolver, context)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug in a probe must not stop the checks
            log.exception("health check of %s failed unexpectedly", server.url)
            return f"health check error: {error}"


class HealthChecks:
    """The health checkers of the live snapshot's load balancers."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.running: dict[LoadBalancer, HealthChecker] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def follow(self, balancers: Iterable[LoadBalancer]) -> None:
        """The snapshot holding ``balancers`` went live: start and stop checkers to match."""
        wanted = {b for b in balancers if b.health is not None and b.members}
        for balancer in [b for b in self.running if b not in wanted]:
            checker = self.running.pop(balancer)
            checker.stop()
            if checker.task is not None and not checker.task.done():
                self._stopping.add(checker.task)
                checker.task.add_done_callback(self._stopping.discard)
        for balancer in wanted:
            if balancer not in self.running:
                assert balancer.health is not None
                checker = HealthChecker(balancer, balancer.health, self.resolver)
                checker.start()
                self.running[balancer] = checker

    async def close(self) -> None:
        """Shutdown: stop every checker and wait for them (their sockets close)."""
        tasks = [*self._stopping]
        for checker in self.running.values():
            checker.stop()
            if checker.task is not None:
                tasks.append(checker.task)
        self.running.clear()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
