"""Access log lines: Traefik's fields and formats, from compact records.

The request path turns a finished exchange (or a closed TCP connection) into
a *record*: a flat tuple of the values a line needs, built in about a
microsecond (``accessrecord.http_record``, ``tcp_record``). Formatting a record into a line
costs a few microseconds more (PERFORMANCE.md), so by default it happens in
the access log's writer process (``proxy.observability.logwriter``), off the
proxy's event loop; ``LineFormatter`` is the same code in both places.

Records are tuples of ints, floats, str, bytes and None, so MessagePack
carries a batch of them over a pipe at C speed (they arrive as lists). Field
positions are fixed (``HttpRecord`` below names them); a record's first item
tells its kind.

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

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from msgspec import UNSET, UnsetType

if TYPE_CHECKING:
    from proxy.config.static import AccessLog as AccessLogConfig

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

# Record kinds (item 0). A control record asks the writer to reopen its file.
TCP, REOPEN = 1, 2  # HTTP = 0 is in proxy/observability/accessrecord.py, with http_record

# A TCP record: (TCP, started, duration, peer_host, peer_port, router,
# service_addr-or-None, service_name).


class HttpRecord(NamedTuple):
    """The fields of an HTTP record, by name (the request path builds a plain tuple).

    ``started`` is wall-clock seconds and ``duration`` seconds; ``forwarded``
    the first X-Forwarded-For value when the client's X-Forwarded-* were
    trusted, else None; ``fields`` the request's (lname, name, value) header
    triples, only when headers are logged.
    """

    kind: int
    started: float
    duration: float
    remote: str
    client_ip: str
    forwarded: str | None
    user: str
    status: int
    size: int
    url: str
    router: str
    service: str
    host: bytes | None
    method: str
    target: bytes
    version: str
    retries: int
    request_bytes: int
    fields: list[tuple[bytes, bytes, bytes]] | None


AnyRecord = tuple[Any, ...]


def tcp_record(front: Any, started: float, ended: float, offset: float) -> AnyRecord:
    """The record of a routed TCP connection that closed (``TcpFront._finish``)."""
    peer = front.peer
    server = front.server
    return (
        TCP,
        started + offset,
        ended - started,
        peer[0] if peer else "",
        str(peer[1]) if peer else "",
        front.target.router,
        server.address if server is not None else None,
        getattr(front.target.service, "name", ""),
    )


def status_range(text: str) -> tuple[int, int] | None:
    """Traefik's ``statusCodes`` entry: ``404`` or ``500-599``."""
    low, sep, high = text.strip().partition("-")
    if not low.strip().isdigit() or (sep and not high.strip().isdigit()):
        return None
    first = int(low)
    last = int(high) if sep else first
    if not 100 <= first <= last <= 599:
        return None
    return first, last


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


class LineFormatter:
    """The ``accessLog`` settings compiled: ``lines(records)`` formats a batch."""

    def __init__(self, config: AccessLogConfig) -> None:
        self.json = config.format.lower() == "json"
        self.count = 0  # RequestCount: requests logged or filtered since start
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
        # Whether records must carry the request's header fields.
        self.with_headers = not (self.header_default == "drop" and not self.header_modes)
        self.dropped = tuple(name for name in CORE_FIELDS if not self._keep(name))
        # JSON with Traefik's default fields and no headers: the fast formatter.
        self.fast = self.json and not self.dropped and not self.with_headers
        self.times = Times()
        # A target that is not UTF-8: its bytes as they are in a common line,
        # U+FFFD for each bad byte in JSON, as Go's encoder writes them.
        self.path_errors = "replace" if self.json else "surrogateescape"
        filters = config.filters
        self.filtered = filters is not None and bool(
            filters.status_codes or filters.retry_attempts or float(filters.min_duration) > 0
        )
        self.status_ranges = [
            r for r in (status_range(c) for c in (filters.status_codes if filters else [])) if r
        ]
        self.keep_retries = bool(filters and filters.retry_attempts)
        self.min_duration = float(filters.min_duration) if filters else 0.0

    def _keep(self, field: str) -> bool:
        mode = self.field_modes.get(field.lower())
        if mode is None:
            return self.default_keep
        return mode == "keep"

    def line(self, record: AnyRecord) -> bytes | None:
        """The line of ``record``, or None when filtered out (the generic path;
        ``lines`` takes the fast one where it applies, for the same bytes).

        logrus' ``time`` is when the request ended (start plus duration), as
        Traefik logs it then, whenever the line is written.
        """
        self.count += 1
        now = record[1] + record[2]
        if record[0] == TCP:
            return self.tcp_line(record, now)
        if self.filtered and not self._wanted(record[7], record[16], record[2]):
            return None
        r = HttpRecord._make(record)
        fields = self.fields(r)
        headers = self.headers(r.fields)
        if self.json:
            return self._json(fields, headers, r.started, now)
        return self._common(fields, headers, r.started, r.duration)

    def tcp_line(self, record: AnyRecord, now: float) -> bytes | None:
        """Traefik writes no access log for TCP; Turnout writes one line per connection.

        Its fields are the ones that apply (``RequestProtocol`` is ``TCP``,
        ``ServiceAddr`` the server dialled; no byte counts: the splice relay
        moves bytes in the kernel). Filters on status codes do not apply.
        """
        _, wall, duration, host, port, router, service_addr, service = record
        if self.filtered and not (self.min_duration > 0 and duration > self.min_duration):
            return None
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
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
            "RouterName": router,
            "ServiceAddr": service_addr or "",
            "ServiceName": service,
            "StartLocal": local,
            "StartUTC": utc,
        }
        if service_addr is None:
            del fields["ServiceAddr"]  # refused by a middleware, or no server
        for name in self.dropped:
            fields.pop(name, None)
        if self.json:
            fields["level"] = "info"
            fields["msg"] = ""
            fields["time"] = self.times.rfc3339(now)
            return msgspec.json.encode(fields) + b"\n"
        timestamp = self.times.clf(wall, utc=True) if "StartUTC" in fields else "-"
        line = (
            f'{_plain(fields.get("ClientHost"))} - - [{timestamp}] "TCP - TCP" - - '
            f'"-" "-" {_plain(fields.get("RequestCount"))} {_quoted(fields.get("RouterName"))} '
            f"{_quoted(fields.get('ServiceAddr'))} {int(duration * 1000)}ms\n"
        )
        return line.encode("utf-8", "surrogateescape")

    def lines(self, records: list[AnyRecord], report: Callable[[Exception], None]) -> bytes:
        """The lines of a batch of records, in order, filtered ones left out.

        A record whose line cannot be made is passed over, with the error given
        to ``report``: one odd request must not cost the others their lines.
        """
        if self.fast:
            return self._fast_lines(records, report)
        out = []
        for record in records:
            try:
                text = self.line(record)
            except Exception as error:
                report(error)
                continue
            if text is not None:
                out.append(text)
        return b"".join(out)

    def _fast_lines(self, records: list[AnyRecord], report: Callable[[Exception], None]) -> bytes:
        """JSON lines of the default fields, for a batch (PERFORMANCE.md).

        The same bytes as ``_json(fields(...))``: one ``JsonLine`` per record,
        all of them encoded by msgspec in one call. What repeats (a client's
        port, a Host's parts, a path, a server's address, the second's time
        stamps) is made once and cached, and the loop keeps what it needs in
        locals: the writer process formats every line of the proxy, so each
        bytecode here is paid on every request.
        """
        structs: list[Any] = []
        append = structs.append
        count = self.count
        filtered = self.filtered
        ports = _PORTS
        hosts = _HOST_PARTS
        paths = _PATHS
        addrs = _SERVICE_ADDRS
        times = self.times
        second = end_second = -1
        utc_prefix = local_prefix = local_zone = ended = ""
        for record in records:
            try:
                (
                    _,
                    started,
                    duration,
                    remote,
                    client_ip,
                    forwarded,
                    user,
                    status,
                    size,
                    url,
                    router,
                    service,
                    host,
                    method,
                    target,
                    version,
                    retries,
                    request_bytes,
                    _,
                ) = record
            except ValueError:  # a TCP record
                self.count = count
                try:
                    text = self.line(record)
                except Exception as error:
                    report(error)
                    text = None
                count = self.count
                if text is not None:
                    append(msgspec.Raw(text[:-1]))  # its own encoding, without the newline
                continue
            count += 1
            if filtered and not self._wanted(status, retries, duration):
                continue
            try:
                port = ports.get(remote)
                if port is None:
                    port = _cache(ports, remote, remote.rpartition(":")[2])
                if host is None:
                    addr = host_name = host_port = UNSET
                else:
                    parts = hosts.get(host)
                    if parts is None:
                        parts = _cache(hosts, host, _host_parts(host))
                    addr, host_name, host_port = parts
                path = paths.get(target)
                if path is None:
                    path = _cache(paths, target, target.decode("utf-8", "replace"))
                if int(started) != second:
                    second = int(started)
                    utc_prefix, local_prefix, local_zone = times.prefixes(second)
                micro = int((started - second) * 1e6)
                if micro % 10:
                    fraction = f".{micro:06d}"
                else:
                    fraction = f".{micro:06d}".rstrip("0") if micro else ""
                start_utc = utc_prefix + fraction + "Z"
                end = started + duration
                if int(end) != end_second:
                    end_second = int(end)
                    ended = times.rfc3339(end)
                nanoseconds = int(duration * 1e9)
                if url and status:  # a server answered: the origin fields
                    service_addr = addrs.get(url) or _service_addr(url)
                    origin_size, origin_status, service_url = size, status, url
                else:
                    service_addr = origin_size = origin_status = service_url = UNSET
                append(
                    JsonLine(
                        remote,
                        client_ip if forwarded is None else forwarded,
                        port,
                        user or "-",
                        size,
                        status,
                        nanoseconds,
                        origin_size,
                        origin_status,
                        nanoseconds,
                        addr,
                        request_bytes,
                        count,
                        host_name,
                        method,
                        path,
                        host_port,
                        "HTTP/1.1" if version == "1.1" else f"HTTP/{version}",
                        "http",
                        retries,
                        router or UNSET,
                        service_addr,
                        service if router else UNSET,
                        service_url,
                        start_utc if local_zone == "Z" else local_prefix + fraction + local_zone,
                        start_utc,
                        "info",
                        "",
                        ended,
                    )
                )
            except Exception as error:
                report(error)
        self.count = count
        try:
            return _encode_lines(structs)
        except Exception:  # one line msgspec refuses: find it, keep the others
            out = []
            for struct in structs:
                try:
                    out.append(_encode_lines((struct,)))
                except Exception as error:
                    report(error)
            return b"".join(out)

    def _wanted(self, status: int, retries: int, duration: float) -> bool:
        if any(low <= status <= high for low, high in self.status_ranges):
            return True
        if self.keep_retries and retries > 0:
            return True
        return self.min_duration > 0 and duration > self.min_duration

    def fields(self, r: HttpRecord) -> dict[str, Any]:
        """Traefik's core fields of one request, keys in sorted order (as Go encodes a map).

        Built as one literal, then the absent and dropped ones removed.
        """
        nanoseconds = int(r.duration * 1e9)
        host_text = request_host = request_port = ""
        if r.host is not None:
            host_text = r.host.decode("latin-1")
            request_host, request_port = _host_port(host_text)
        fields: dict[str, Any] = {
            "ClientAddr": r.remote,
            "ClientHost": r.client_ip if r.forwarded is None else r.forwarded,
            "ClientPort": r.remote.rpartition(":")[2],
            "ClientUsername": r.user or "-",
            "DownstreamContentSize": r.size,
            "DownstreamStatus": r.status,
            "Duration": nanoseconds,
            "OriginContentSize": r.size,
            "OriginStatus": r.status,
            "Overhead": nanoseconds,
            "RequestAddr": host_text,
            "RequestContentSize": r.request_bytes,
            "RequestCount": self.count,
            "RequestHost": request_host,
            "RequestMethod": r.method,
            "RequestPath": r.target.decode("utf-8", self.path_errors),
            "RequestPort": request_port,
            "RequestProtocol": "HTTP/1.1" if r.version == "1.1" else f"HTTP/{r.version}",
            "RequestScheme": "http",
            "RetryAttempts": r.retries,
            "RouterName": r.router,
            "ServiceAddr": _service_addr(r.url),
            "ServiceName": r.service,
            "ServiceURL": r.url,
            "StartLocal": r.started,  # formatted by _json / _common
            "StartUTC": r.started,
        }
        if not r.url or not r.status:
            # No backend answered: Traefik has no origin fields.
            for name in ("OriginContentSize", "OriginStatus", "ServiceAddr", "ServiceURL"):
                del fields[name]
        if not r.router:
            del fields["RouterName"], fields["ServiceName"]
        if r.host is None:
            del fields["RequestAddr"], fields["RequestHost"], fields["RequestPort"]
        for name in self.dropped:
            fields.pop(name, None)
        return fields

    def headers(self, request_fields: list[tuple[bytes, bytes, bytes]] | None) -> dict[str, str]:
        default = self.header_default
        modes = self.header_modes
        if not request_fields or (default == "drop" and not modes):
            return {}
        out: dict[str, str] = {}
        for lname, name, value in request_fields:
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


_encode_lines = msgspec.json.Encoder().encode_lines


class JsonLine(msgspec.Struct, gc=False):
    """A JSON line of Traefik's default fields, in Go's (sorted) key order; UNSET: absent."""

    ClientAddr: str | UnsetType = UNSET
    ClientHost: str | UnsetType = UNSET
    ClientPort: str | UnsetType = UNSET
    ClientUsername: str | UnsetType = UNSET
    DownstreamContentSize: int | UnsetType = UNSET
    DownstreamStatus: int | UnsetType = UNSET
    Duration: int | UnsetType = UNSET
    OriginContentSize: int | UnsetType = UNSET
    OriginStatus: int | UnsetType = UNSET
    Overhead: int | UnsetType = UNSET
    RequestAddr: str | UnsetType = UNSET
    RequestContentSize: int | UnsetType = UNSET
    RequestCount: int | UnsetType = UNSET
    RequestHost: str | UnsetType = UNSET
    RequestMethod: str | UnsetType = UNSET
    RequestPath: str | UnsetType = UNSET
    RequestPort: str | UnsetType = UNSET
    RequestProtocol: str | UnsetType = UNSET
    RequestScheme: str | UnsetType = UNSET
    RetryAttempts: int | UnsetType = UNSET
    RouterName: str | UnsetType = UNSET
    ServiceAddr: str | UnsetType = UNSET
    ServiceName: str | UnsetType = UNSET
    ServiceURL: str | UnsetType = UNSET
    StartLocal: str | UnsetType = UNSET
    StartUTC: str | UnsetType = UNSET
    level: str | UnsetType = UNSET
    msg: str | UnsetType = UNSET
    time: str | UnsetType = UNSET


# What repeats from line to line, made once (bounded: these come from clients).
_PORTS: dict[str, str] = {}  # a client address's port
_HOST_PARTS: dict[bytes, tuple[str, str, str]] = {}  # Host: (RequestAddr, Host, Port)
_PATHS: dict[bytes, str] = {}  # a request target, as Go's JSON encoder shows its bytes
CACHE_LIMIT = 4096


def _cache(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _host_parts(host: bytes) -> tuple[str, str, str]:
    text = host.decode("latin-1")
    return (text, *_split_host_port(text))


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

    def prefixes(self, second: int) -> tuple[str, str, str]:
        """(UTC up to the second, local up to the second, local zone) of a Unix second."""
        cached = self._starts
        if cached[0] != second:
            utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            moment = time.localtime(second)
            local = time.strftime("%Y-%m-%dT%H:%M:%S", moment)
            cached = self._starts = (second, utc, local, _zone(moment, False))
        return cached[1], cached[2], cached[3]

    def starts(self, when: float) -> tuple[str, str]:
        """(StartUTC, StartLocal) in Go's JSON form: RFC 3339, fraction without trailing zeros."""
        second = int(when)
        utc, local, zone = self.prefixes(second)
        micro = int((when - second) * 1e6)
        fraction = f".{micro:06d}".rstrip("0") if micro else ""
        utc_text = utc + fraction + "Z"
        if zone == "Z":
            return utc_text, utc_text  # the usual server: local time is UTC
        return utc_text, local + fraction + zone


def _zone(moment: time.struct_time, utc: bool) -> str:
    offset = 0 if utc else moment.tm_gmtoff
    if not offset:
        return "Z"
    sign = "+" if offset > 0 else "-"
    offset = abs(offset)
    return f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"
