"""``accessLog``: one line per HTTP request, Traefik's fields and formats, written in batches.

Theory of operation
-------------------
The request path only appends ``(exchange, end time)`` to a list
(``AccessLog.record``): no formatting, no write. The loop formats and writes
what accumulated every ``FLUSH_INTERVAL`` (0.1 s), or at once when more than
``bufferingSize`` lines wait (Traefik's option: lines kept in memory before
writing; default 0 here means "batch by time only"), in one ``os.write`` of
whole lines to a file opened ``O_APPEND``, so a line is never torn and an
external reader never sees half of one.

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.observability.settings import status_range

if TYPE_CHECKING:
    from proxy.config.static import AccessLog as AccessLogConfig
    from proxy.http.exchange import Exchange

log = logging.getLogger("turnout")

FLUSH_INTERVAL = 0.1
# Without bufferingSize, a burst is still written in bounded batches.
MAX_BATCH = 4096

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
        self.pending: list[tuple[Exchange, float]] = []
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
        self.kept = tuple(name for name in CORE_FIELDS if self._keep(name))
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

        def record(ex: Exchange) -> None:
            pending.append((ex, clock()))
            if len(pending) >= limit and self._soon is None and self._loop is not None:
                self._soon = self._loop.call_soon(self._flush_soon)

        return record

    def _flush_soon(self) -> None:
        self._soon = None
        self.flush()

    # -- formatting and writing (the loop, between requests) ------------------------

    def flush(self) -> None:
        pending = self.pending
        if not pending or self.fd < 0:
            return
        batch = pending[:]
        pending.clear()
        # perf_counter -> wall clock, once per batch.
        offset = time.time() - self._clock()
        lines = []
        for ex, ended in batch:
            self.count += 1
            try:
                line = self.format(ex, ended, offset)
            except Exception:  # one odd request must not cost the others their lines
                log.exception("accessLog: formatting a line failed")
                continue
            if line is not None:
                lines.append(line)
        if lines:
            self._write(b"".join(lines))

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
        status = ex.status
        if self.filtered and not self._wanted(status, ex.retry_attempts, duration):
            return None
        core = self.core(ex, duration, offset)
        headers = self.headers(ex)
        if self.json:
            return self._json(core, headers, offset + ended)
        return self._common(core, headers, duration)

    def _wanted(self, status: int, retries: int, duration: float) -> bool:
        if any(low <= status <= high for low, high in self.status_ranges):
            return True
        if self.keep_retries and retries > 0:
            return True
        return self.min_duration > 0 and duration > self.min_duration

    def core(self, ex: Exchange, duration: float, offset: float) -> dict[str, Any]:
        conn = ex.conn
        start = datetime.fromtimestamp(ex.started + offset, UTC)
        route = ex.route
        router = route.router if route is not None else ""
        service = ""
        if route is not None and route.stats is not None:
            service = route.stats.service
        elif route is not None and route.service is not None:
            service = route.service.name
        client_addr = conn.remote_address
        client_host, client_port = _split_host_port(client_addr)
        forwarded = [v for name, _, v in ex.fields if name == b"x-forwarded-for"]
        if forwarded:
            client_host = forwarded[0].decode("latin-1")
        host = ex.host_header.decode("latin-1") if ex.host_header is not None else ""
        target = ex.original_target if ex.original_target is not None else ex.target
        nanoseconds = int(duration * 1e9)
        core: dict[str, Any] = {
            "StartUTC": start,
            "StartLocal": start.astimezone(),
            "Duration": nanoseconds,
            "Overhead": nanoseconds,
            "ClientAddr": client_addr,
            "ClientHost": client_host,
            "ClientPort": client_port,
            "ClientUsername": ex.user or "-",
            "RetryAttempts": ex.retry_attempts,
            "RequestMethod": ex.method,
            "RequestPath": target.decode("utf-8", "surrogateescape"),
            "RequestProtocol": f"HTTP/{ex.version}",
            "RequestScheme": "http",
            "RequestContentSize": ex.request_body_bytes,
            "DownstreamStatus": ex.status,
            "DownstreamContentSize": ex.response_bytes,
            "RequestCount": self.count,
        }
        if router:  # absent, as in Traefik, when no router took the request
            core["RouterName"] = router
            core["ServiceName"] = service
        if host:
            core["RequestAddr"] = host
            core["RequestHost"], core["RequestPort"] = _split_host_port(host)
        if ex.server_url:
            # A backend answered (or was tried): Traefik's origin fields.
            core["ServiceURL"] = ex.server_url
            core["ServiceAddr"] = ex.server_url.partition("://")[2].rstrip("/")
            if ex.status:
                core["OriginStatus"] = ex.status
                core["OriginContentSize"] = ex.response_bytes
        return {name: core[name] for name in self.kept if name in core}

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

    def _json(self, core: dict[str, Any], headers: dict[str, str], now: float) -> bytes:
        fields: dict[str, Any] = {**core, **headers}
        for name in ("StartUTC", "StartLocal"):
            value = fields.get(name)
            if value is not None:
                fields[name] = _rfc3339_nano(value)
        fields["level"] = "info"
        fields["msg"] = ""
        fields["time"] = _rfc3339(datetime.fromtimestamp(now).astimezone())
        return msgspec.json.encode(dict(sorted(fields.items()))) + b"\n"

    def _common(self, core: dict[str, Any], headers: dict[str, str], duration: float) -> bytes:
        start = core.get("StartUTC")
        if start is None and "StartLocal" in core:
            start = core["StartLocal"]
        timestamp = _clf_time(start) if start is not None else "-"

        def plain(name: str) -> str:
            value = core.get(name)
            return "-" if value is None or value == "" else str(value)

        def quoted(value: object) -> str:
            # Traefik's toLog: strings quoted ("-" when empty), numbers bare.
            if value is None or value == "":
                return '"-"'
            return str(value) if isinstance(value, int) else f'"{value}"'

        line = (
            f"{plain('ClientHost')} - {plain('ClientUsername')} [{timestamp}] "
            f'"{plain("RequestMethod")} {plain("RequestPath")} {plain("RequestProtocol")}" '
            f"{plain('OriginStatus')} {plain('OriginContentSize')} "
            f"{quoted(headers.get('request_Referer'))} {quoted(headers.get('request_User-Agent'))} "
            f"{plain('RequestCount')} {quoted(core.get('RouterName'))} "
            f"{quoted(core.get('ServiceURL'))} {int(duration * 1000)}ms\n"
        )
        return line.encode("utf-8", "surrogateescape")


def _clf_time(moment: datetime) -> str:
    """Go's ``02/Jan/2006:15:04:05 -0700``."""
    offset = moment.strftime("%z") or "+0000"
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {offset}"
    )


def _rfc3339_nano(moment: datetime) -> str:
    """Go's time.Time JSON form: RFC 3339, the fraction without trailing zeros."""
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    seconds = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return seconds + (f".{fraction}" if fraction else "") + _zone(moment)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + _zone(moment)


def _zone(moment: datetime) -> str:
    offset = moment.utcoffset()
    if not offset:
        return "Z"
    text = moment.strftime("%z")  # +0100
    return f"{text[:3]}:{text[3:5]}"
