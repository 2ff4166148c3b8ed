"""``accessLog``: one line per HTTP request, Traefik's fields and formats, written in batches.

Theory of operation
-------------------
Once a response is written to the client, its line is formatted (a few
microseconds, see PERFORMANCE.md) and appended to a list; no write. The loop
writes what accumulated every ``FLUSH_INTERVAL`` (0.1 s), or as soon as
``bufferingSize`` lines wait (Traefik's option: lines kept in memory before
writing; 0, the default, means 64), in one ``os.write`` of whole lines to a
file opened ``O_APPEND``, so a line is never torn and an external reader never
sees half of one.

``SIGUSR1`` flushes what is pending into the current file and reopens
``filePath`` (log rotation: ``mv access.log access.log.1; kill -USR1 PID``),
as Traefik does. The same signal still prints the ``turnout-stats`` line.

Formats, as Traefik writes them:

- ``common``: ``ClientHost - ClientUsername [02/Jan/2006:15:04:05 -0700]
  "METHOD PATH PROTO" OriginStatus OriginContentSize "Referer" "User-Agent"
  RequestCount "RouterName" "ServiceURL" Nms`` (Referer and User-Agent are
  ``"-"`` unless those headers are kept, as in Traefik).
- ``json``: one object per line with Traefik's field names (``ClientHost``,
  ``RequestMethod``, ``RequestPath``, ``DownstreamStatus``, ``Duration`` in
  nanoseconds, ``RouterName``, ``ServiceName``, ``ServiceURL``, ...),
  ``request_<Header>`` fields for kept or redacted headers, and logrus'
  ``level``, ``msg`` and ``time``; keys sorted, as Go encodes a map.

``fields.defaultMode``/``fields.names`` keep or drop fields; ``fields.headers``
keeps, drops (the default) or redacts (``REDACTED``) request headers.
``filters.{statusCodes, retryAttempts, minDuration}`` keep a line when any
matches, as Traefik. Not logged (no counterpart in Turnout): TLS fields,
``OriginDuration`` (so ``Overhead`` is the whole ``Duration``), ``GzipRatio``,
``origin_``/``downstream_`` headers. ``ClientUsername`` is the user basicAuth or
digestAuth admitted, or forwardAuth's ``headerField`` named (``-`` otherwise).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.observability.settings import status_range

if TYPE_CHECKING:
    from proxy.config.static import AccessLog as AccessLogConfig
    from proxy.http.exchange import Exchange

log = logging.getLogger("turnout")

FLUSH_INTERVAL = 0.1
# Without bufferingSize, lines are written at least every 64.
MAX_BATCH = 64

# Traefik's core fields (pkg/middlewares/accesslog/logdata.go), in its order.
CORE_FIELDS = (
    "StartUTC",
    "Duration",
    "RouterName",
    "ServiceAddr",
    "ServiceName",
    "ServiceURL",
    "ClientAddr",
    "ClientHost",
    "ClientPort",
    "ClientUsername",
    "StartLocal",
    "Overhead",
    "RetryAttempts",
    "RequestAddr",
    "RequestHost",
    "RequestPort",
    "RequestMethod",
    "RequestPath",
    "RequestProtocol",
    "RequestScheme",
    "RequestContentSize",
    "OriginContentSize",
    "OriginStatus",
    "DownstreamStatus",
    "DownstreamContentSize",
    "RequestCount",
)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def canonical_header(name: bytes) -> str:
    """Go's canonical form (``user-agent`` -> ``User-Agent``), as Traefik prints names."""
    return "-".join(part.capitalize() for part in name.decode("latin-1").split("-"))


def _split_host_port(value: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, falling back as Traefik's silentSplitHostPort does."""
    if value.startswith("["):
        end = value.find("]")
        if end > 0 and value[end + 1 : end + 2] == ":":
            return value[1:end], value[end + 2 :]
        return value, "-"
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:
        return value, "-"
    return host, port


class AccessLog:
    """One per process; each entry point that logs gets ``record``."""

    def __init__(self, config: AccessLogConfig) -> None:
        self.path = config.file_path
        self.json = config.format.lower() == "json"
        self.limit = config.buffering_size if config.buffering_size > 0 else MAX_BATCH
        self.pending: list[bytes] = []  # formatted lines not yet written
        self.count = 0  # RequestCount: requests logged or filtered since start
        self.fd = -1
        fields = config.fields
        self.default_keep = fields is None or fields.default_mode.lower() == "keep"
        self.field_modes = (
            {name.lower(): mode.lower() for name, mode in fields.names.items()} if fields else {}
        )
        headers = fields.headers if fields is not None else None
        self.header_default = headers.default_mode.lower() if headers is not None else "drop"
        self.header_modes = (
            {name.lower(): mode.lower() for name, mode in headers.names.items()}
            if headers is not None
            else {}
        )
        self.dropped = tuple(name for name in CORE_FIELDS if not self._keep(name))
        # JSON with Traefik's default fields and no headers: the fast formatter.
        self.fast = (
            self.json
            and not self.dropped
            and self.header_default == "drop"
            and not self.header_modes
        )
        self.times = Times()
        filters = config.filters
        self.filtered = filters is not None and bool(
            filters.status_codes or filters.retry_attempts or float(filters.min_duration) > 0
        )
        self.status_ranges = [
            r for r in (status_range(c) for c in (filters.status_codes if filters else [])) if r
        ]
        self.keep_retries = bool(filters and filters.retry_attempts)
        self.min_duration = float(filters.min_duration) if filters else 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._clock = time.perf_counter
        self.offset = time.time() - self._clock()

    def _keep(self, field: str) -> bool:
        mode = self.field_modes.get(field.lower())
        if mode is None:
            return self.default_keep
        return mode == "keep"

    # -- life cycle -------------------------------------------------------------

    def open(self) -> None:
        """Open ``filePath`` (creating its folder), or use stdout. Raises OSError."""
        if not self.path:
            self.fd = 1
            return
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, mode=0o755, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o664)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer = loop.call_later(FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        self.flush()
        assert self._loop is not None
        self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)

    def reopen(self) -> None:
        """SIGUSR1: what is pending goes to the old file, then ``filePath`` is opened again."""
        self.flush()
        if not self.path:
            return
        old = self.fd
        try:
            self.open()
        except OSError as error:
            log.error("accessLog: cannot reopen %s: %s; writing the old file", self.path, error)
            self.fd = old
            return
        if old > 2:
            os.close(old)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self.flush()
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1

    # -- the request path ---------------------------------------------------------

    def recorder(self, entrypoint: str) -> Callable[[Exchange], None]:
        pending = self.pending
        clock = self._clock
        limit = self.limit
        format_line = self.format

        def record(ex: Exchange) -> None:
            # Formatted now, after the response went to the client: holding the
            # exchange until a flush would keep it (and its lists) alive past a
            # garbage collection, which measured dearer than the formatting.
            self.count += 1
            try:
                line = format_line(ex, clock(), self.offset)
            except Exception:  # one odd request must not cost the others their lines
                log.exception("accessLog: formatting a line failed")
                return
            if line is None:
                return
            pending.append(line)
            if len(pending) >= limit and self._soon is None and self._loop is not None:
                self._soon = self._loop.call_soon(self._flush_soon)

        return record

    def tcp_recorder(self, entrypoint: str) -> Callable[[Any, float], None]:
        """The line of a routed TCP connection when it closes (``TcpFront._finish``).

        Traefik writes no access log for TCP; Turnout writes one line per
        connection with the fields that apply (``RequestProtocol`` is ``TCP``,
        ``ServiceAddr`` the server dialled; no byte counts: the splice relay
        moves bytes in the kernel). Filters on status codes do not apply.
        """
        pending = self.pending
        limit = self.limit

        def record(front: Any, started: float) -> None:
            self.count += 1
            try:
                line = self.tcp_line(front, started, self._clock(), entrypoint)
            except Exception:
                log.exception("accessLog: formatting a TCP line failed")
                return
            if line is None:
                return
            pending.append(line)
            if len(pending) >= limit and self._soon is None and self._loop is not None:
                self._soon = self._loop.call_soon(self._flush_soon)

        return record

    def tcp_line(self, front: Any, started: float, ended: float, entrypoint: str) -> bytes | None:
        duration = ended - started
        if self.filtered and not (self.min_duration > 0 and duration > self.min_duration):
            return None
        peer = front.peer
        host, port = (peer[0], str(peer[1])) if peer else ("", "")
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        target = front.target
        server = front.server
        wall = started + self.offset
        utc, local = self.times.starts(wall)
        nanoseconds = int(duration * 1e9)
        fields: dict[str, Any] = {
            "ClientAddr": address,
            "ClientHost": host,
            "ClientPort": port,
            "Duration": nanoseconds,
            "Overhead": nanoseconds,
            "RequestCount": self.count,
            "RequestProtocol": "TCP",
            "RouterName": target.router,
            "ServiceAddr": server.address if server is not None else "",
            "ServiceName": getattr(target.service, "name", ""),
            "StartLocal": local,
            "StartUTC": utc,
        }
        if server is None:
            del fields["ServiceAddr"]  # refused by a middleware, or no server
        for name in self.dropped:
            fields.pop(name, None)
        if self.json:
            fields["level"] = "info"
            fields["msg"] = ""
            fields["time"] = self.times.rfc3339(ended + self.offset)
            return msgspec.json.encode(fields) + b"\n"
        timestamp = self.times.clf(wall, utc=True) if "StartUTC" in fields else "-"
        line = (
            f'{_plain(fields.get("ClientHost"))} - - [{timestamp}] "TCP - TCP" - - '
            f'"-" "-" {_plain(fields.get("RequestCount"))} {_quoted(fields.get("RouterName"))} '
            f"{_quoted(fields.get('ServiceAddr'))} {int(duration * 1000)}ms\n"
        )
        return line.encode("utf-8", "surrogateescape")

    def _flush_soon(self) -> None:
        self._soon = None
        self.flush()

    # -- writing (the loop, between requests) ----------------------------------------

    def flush(self) -> None:
        # perf_counter -> wall clock; refreshed here, read by every line until the next.
        self.offset = time.time() - self._clock()
        pending = self.pending
        if not pending or self.fd < 0:
            return
        data = b"".join(pending)
        pending.clear()
        self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except BlockingIOError:
                time.sleep(0.001)  # stdout as a non-blocking pipe that is full
                continue
            except OSError as error:
                if error.errno != errno.EINTR:
                    log.error("accessLog: write failed: %s; %d bytes lost", error, len(view))
                    return
                continue
            view = view[written:]

    def format(self, ex: Exchange, ended: float, offset: float) -> bytes | None:
        duration = ended - ex.started
        if self.filtered and not self._wanted(ex.status, ex.retry_attempts, duration):
            return None
        started = ex.started + offset
        if self.fast:
            return self._fast_json(ex, duration, started, ended + offset)
        fields = self.fields(ex, duration, started)
        headers = self.headers(ex)
        if self.json:
            return self._json(fields, headers, started, ended + offset)
        return self._common(fields, headers, started, duration)

    def _fast_json(self, ex: Exchange, duration: float, started: float, now: float) -> bytes:
        """The JSON line of the default fields, without a dict: 2-3x cheaper (PERFORMANCE.md).

        Same bytes as ``_json(fields(...))``: keys in sorted order, pieces that
        repeat (per connection, route, Host, method) encoded once and cached.
        """
        conn = ex.conn
        client = _CLIENTS.get(conn.remote_address)
        if client is None:
            client = _cache(_CLIENTS, conn.remote_address, _client_json(conn))
        if ex.xforwarded:
            client = _forwarded_client(ex, conn) or client
        user = _NO_USER if not ex.user else b'"ClientUsername":%b,' % _encode(ex.user)
        nanoseconds = int(duration * 1e9)
        status = ex.status
        size = ex.response_bytes
        url = ex.server_url
        route = ex.route
        origin = b""
        if url and status:
            origin = b'"OriginContentSize":%d,"OriginStatus":%d,' % (size, status)
        host = ex.host_header
        if host is None:
            addr = host_name = host_port = b""
        else:
            pieces = _HOSTS.get(host)
            if pieces is None:
                pieces = _cache(_HOSTS, host, _host_json(host))
            addr, host_name, host_port = pieces
        routed = b""
        if route is not None:
            key = (route.router, route.stats.service if route.stats else "", url)
            routed = _ROUTES.get(key)  # type: ignore[assignment]
            if routed is None:
                routed = _cache(_ROUTES, key, _route_json(*key))
        method = _METHODS.get(ex.method)
        if method is None:
            method = _cache(_METHODS, ex.method, _encode(ex.method))
        target = ex.original_target if ex.original_target is not None else ex.target
        utc, local = self.times.starts(started)
        return _LINE % (
            client,
            user,
            size,
            status,
            nanoseconds,
            origin,
            nanoseconds,
            addr,
            ex.request_body_bytes,
            self.count,
            host_name,
            method,
            _encode(target.decode("utf-8", "surrogateescape")),
            host_port,
            _PROTOCOLS[ex.version == "1.1"],
            ex.retry_attempts,
            routed,
            local.encode(),
            utc.encode(),
            self.times.rfc3339(now).encode(),
        )

    def _wanted(self, status: int, retries: int, duration: float) -> bool:
        if any(low <= status <= high for low, high in self.status_ranges):
            return True
        if self.keep_retries and retries > 0:
            return True
        return self.min_duration > 0 and duration > self.min_duration

    def fields(self, ex: Exchange, duration: float, started: float) -> dict[str, Any]:
        """Traefik's core fields of one request, keys in sorted order (as Go encodes a map).

        Built as one literal, then the absent and dropped ones removed: a
        formatted line costs a few microseconds (PERFORMANCE.md).
        """
        conn = ex.conn
        nanoseconds = int(duration * 1e9)
        route = ex.route
        router = service = ""
        if route is not None:
            router = route.router
            if route.stats is not None:
                service = route.stats.service
            elif route.service is not None:
                service = route.service.name
        client_host = conn.client_ip
        if ex.xforwarded:
            forwarded = [v for name, _, v in ex.fields if name == b"x-forwarded-for"]
            if forwarded:
                client_host = forwarded[0].decode("latin-1")
        host = ex.host_header
        host_text = request_host = request_port = ""
        if host is not None:
            host_text = host.decode("latin-1")
            request_host, request_port = _host_port(host_text)
        url = ex.server_url
        target = ex.original_target if ex.original_target is not None else ex.target
        fields: dict[str, Any] = {
            "ClientAddr": conn.remote_address,
            "ClientHost": client_host,
            "ClientPort": conn.remote_address.rpartition(":")[2],
            "ClientUsername": ex.user or "-",
            "DownstreamContentSize": ex.response_bytes,
            "DownstreamStatus": ex.status,
            "Duration": nanoseconds,
            "OriginContentSize": ex.response_bytes,
            "OriginStatus": ex.status,
            "Overhead": nanoseconds,
            "RequestAddr": host_text,
            "RequestContentSize": ex.request_body_bytes,
            "RequestCount": self.count,
            "RequestHost": request_host,
            "RequestMethod": ex.method,
            "RequestPath": target.decode("utf-8", "surrogateescape"),
            "RequestPort": request_port,
            "RequestProtocol": "HTTP/1.1" if ex.version == "1.1" else f"HTTP/{ex.version}",
            "RequestScheme": "http",
            "RetryAttempts": ex.retry_attempts,
            "RouterName": router,
            "ServiceAddr": _service_addr(url),
            "ServiceName": service,
            "ServiceURL": url,
            "StartLocal": started,  # formatted by the writer
            "StartUTC": started,
        }
        if not url or not ex.status:
            # No backend answered: Traefik has no origin fields.
            for name in ("OriginContentSize", "OriginStatus", "ServiceAddr", "ServiceURL"):
                del fields[name]
        if not router:
            del fields["RouterName"], fields["ServiceName"]
        if host is None:
            del fields["RequestAddr"], fields["RequestHost"], fields["RequestPort"]
        for name in self.dropped:
            fields.pop(name, None)
        return fields

    def headers(self, ex: Exchange) -> dict[str, str]:
        default = self.header_default
        modes = self.header_modes
        if default == "drop" and not modes:
            return {}
        out: dict[str, str] = {}
        for lname, name, value in ex.fields:
            mode = modes.get(lname.decode("latin-1"), default)
            if mode == "drop":
                continue
            key = "request_" + canonical_header(name)
            if mode == "redact":
                out[key] = "REDACTED"
            elif key in out:
                out[key] += "," + value.decode("latin-1")  # Go joins repeated headers
            else:
                out[key] = value.decode("latin-1")
        return out

    def _json(
        self, fields: dict[str, Any], headers: dict[str, str], started: float, now: float
    ) -> bytes:
        utc, local = self.times.starts(started)
        if "StartUTC" in fields:
            fields["StartUTC"] = utc
        if "StartLocal" in fields:
            fields["StartLocal"] = local
        fields["level"] = "info"
        fields["msg"] = ""
        if headers:
            fields.update(sorted(headers.items()))  # request_* sort after msg, before time
        fields["time"] = self.times.rfc3339(now)
        return msgspec.json.encode(fields) + b"\n"

    def _common(
        self, fields: dict[str, Any], headers: dict[str, str], started: float, duration: float
    ) -> bytes:
        if "StartUTC" in fields:
            timestamp = self.times.clf(started, utc=True)
        elif "StartLocal" in fields:
            timestamp = self.times.clf(started, utc=False)
        else:
            timestamp = "-"
        get = fields.get
        line = (
            f"{_plain(get('ClientHost'))} - {_plain(get('ClientUsername'))} [{timestamp}] "
            f'"{_plain(get("RequestMethod"))} {_plain(get("RequestPath"))} '
            f'{_plain(get("RequestProtocol"))}" '
            f"{_plain(get('OriginStatus'))} {_plain(get('OriginContentSize'))} "
            f"{_quoted(headers.get('request_Referer'))} "
            f"{_quoted(headers.get('request_User-Agent'))} "
            f"{_plain(get('RequestCount'))} {_quoted(get('RouterName'))} "
            f"{_quoted(get('ServiceURL'))} {int(duration * 1000)}ms\n"
        )
        return line.encode("utf-8", "surrogateescape")


def _plain(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _quoted(value: object) -> str:
    # Traefik's toLog: strings quoted ("-" when empty), numbers bare.
    if value is None or value == "":
        return '"-"'
    return str(value) if isinstance(value, int) else f'"{value}"'


_encode = msgspec.json.encode
_NO_USER = b'"ClientUsername":"-",'
_PROTOCOLS = (b'"RequestProtocol":"HTTP/1.0",', b'"RequestProtocol":"HTTP/1.1",')
# One JSON line of the default fields, keys in Go's order; one % fills it.
_LINE = (
    b'%b%b"DownstreamContentSize":%d,"DownstreamStatus":%d,"Duration":%d,%b"Overhead":%d,%b'
    b'"RequestContentSize":%d,"RequestCount":%d,%b"RequestMethod":%b,"RequestPath":%b,%b%b'
    b'"RequestScheme":"http","RetryAttempts":%d,%b"StartLocal":"%b","StartUTC":"%b",'
    b'"level":"info","msg":"","time":"%b"}\n'
)

# Encoded pieces of JSON lines that repeat, by what they depend on (bounded).
_CLIENTS: dict[str, bytes] = {}
_HOSTS: dict[bytes, tuple[bytes, bytes, bytes]] = {}
_ROUTES: dict[tuple[str, str, str], bytes] = {}
_METHODS: dict[str, bytes] = {}
CACHE_LIMIT = 4096


def _cache(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _client_json(conn: Any) -> bytes:
    return b'{"ClientAddr":%b,"ClientHost":%b,"ClientPort":%b,' % (
        _encode(conn.remote_address),
        _encode(conn.client_ip),
        _encode(conn.remote_address.rpartition(":")[2]),
    )


def _forwarded_client(ex: Exchange, conn: Any) -> bytes | None:
    forwarded = [v for name, _, v in ex.fields if name == b"x-forwarded-for"]
    if not forwarded:
        return None
    return b'{"ClientAddr":%b,"ClientHost":%b,"ClientPort":%b,' % (
        _encode(conn.remote_address),
        _encode(forwarded[0].decode("latin-1")),
        _encode(conn.remote_address.rpartition(":")[2]),
    )


def _host_json(host: bytes) -> tuple[bytes, bytes, bytes]:
    text = host.decode("latin-1")
    name, port = _split_host_port(text)
    return (
        b'"RequestAddr":%b,' % _encode(text),
        b'"RequestHost":%b,' % _encode(name),
        b'"RequestPort":%b,' % _encode(port),
    )


def _route_json(router: str, service: str, url: str) -> bytes:
    if not router:
        return b""
    if not url:
        return b'"RouterName":%b,"ServiceName":%b,' % (_encode(router), _encode(service))
    return b'"RouterName":%b,"ServiceAddr":%b,"ServiceName":%b,"ServiceURL":%b,' % (
        _encode(router),
        _encode(_service_addr(url)),
        _encode(service),
        _encode(url),
    )


_HOST_PORTS: dict[str, tuple[str, str]] = {}
_SERVICE_ADDRS: dict[str, str] = {}


def _host_port(host: str) -> tuple[str, str]:
    cached = _HOST_PORTS.get(host)
    if cached is None:
        if len(_HOST_PORTS) > 4096:  # Host is the client's: bound the cache
            _HOST_PORTS.clear()
        cached = _HOST_PORTS[host] = _split_host_port(host)
    return cached


def _service_addr(url: str) -> str:
    addr = _SERVICE_ADDRS.get(url)
    if addr is None:
        if len(_SERVICE_ADDRS) > 4096:
            _SERVICE_ADDRS.clear()
        addr = _SERVICE_ADDRS[url] = url.partition("://")[2].rstrip("/")
    return addr


class Times:
    """Go's time formats of a Unix time, the part up to the second cached (one per second)."""

    def __init__(self) -> None:
        self._second: dict[tuple[str, bool], tuple[int, str]] = {}
        self._starts: tuple[int, str, str, str] = (-1, "", "", "")

    def _cached(self, kind: str, utc: bool, second: int) -> str:
        key = (kind, utc)
        hit = self._second.get(key)
        if hit is not None and hit[0] == second:
            return hit[1]
        moment = time.gmtime(second) if utc else time.localtime(second)
        if kind == "clf":
            zone = "+0000" if utc else time.strftime("%z", moment)
            text = (
                f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:"
                f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} {zone}"
            )
        elif kind == "zone":
            text = _zone(moment, utc)
        elif kind == "rfc3339":
            text = time.strftime("%Y-%m-%dT%H:%M:%S", moment) + _zone(moment, utc)
        else:  # "base": up to the seconds
            text = time.strftime("%Y-%m-%dT%H:%M:%S", moment)
        self._second[key] = (second, text)
        return text

    def clf(self, when: float, utc: bool) -> str:
        """``02/Jan/2006:15:04:05 -0700``."""
        return self._cached("clf", utc, int(when))

    def rfc3339(self, when: float) -> str:
        return self._cached("rfc3339", False, int(when))

    def starts(self, when: float) -> tuple[str, str]:
        """(StartUTC, StartLocal) in Go's JSON form: RFC 3339, fraction without trailing zeros."""
        second = int(when)
        cached = self._starts
        if cached[0] != second:
            utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            moment = time.localtime(second)
            local = time.strftime("%Y-%m-%dT%H:%M:%S", moment)
            cached = self._starts = (second, utc, local, _zone(moment, False))
        micro = int((when - second) * 1e6)
        fraction = f".{micro:06d}".rstrip("0") if micro else ""
        utc_text = cached[1] + fraction + "Z"
        if cached[3] == "Z":
            return utc_text, utc_text  # the usual server: local time is UTC
        return utc_text, cached[2] + fraction + cached[3]


def _zone(moment: time.struct_time, utc: bool) -> str:
    offset = 0 if utc else moment.tm_gmtoff
    if not offset:
        return "Z"
    sign = "+" if offset > 0 else "-"
    offset = abs(offset)
    return f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"
