"""``turnout explain``: how one request would be routed, from a compiled snapshot.

The router part asks the compiled table itself: the routes are walked in the
order the table tries them (priority, then definition order), each with its
compiled rule, and the winner is cross-checked against the indexed lookup the
proxy runs. The service part shows the tree down to the server a fresh
balancer would pick next. The middleware part reads the configuration and
says what each path- or header-changing middleware would do to this request
(middlewares are refused by ``turnout run`` until they are built; the
explanation still shows them).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import re2

from proxy.config.dynamic import Middleware, Service
from proxy.rules import SimpleRequest
from proxy.rules.tcp import ConnInfo
from proxy.runtime.snapshot import Snapshot, qualify
from proxy.services.loadbalancer import LoadBalancer

# Go's regexp replacement syntax ($1, ${1}, ${name}) to Python's (\g<1>, \g<name>).
_GO_REPLACEMENT = re.compile(r"\$(\d+|\{\w+\}|\$)")


class ExplainError(ValueError):
    """A request that cannot be explained (bad URL, unknown entry point)."""


def explain_tcp(
    snapshot: Snapshot, scheme: str, parts: SplitResult, *, entrypoint: str, client_ip: str
) -> str:
    """Which TCP router a connection would take: ``tcp://`` (non-TLS bytes) or
    ``tls://SNI?alpn=h2,postgresql`` (a ClientHello with that server name and ALPN)."""
    entry = snapshot.tcp.entries.get(entrypoint)
    is_tls = scheme == "tls"
    sni = (parts.hostname or "").lower().rstrip(".") if is_tls else ""
    alpn = tuple(p for p in parse_qs(parts.query).get("alpn", [""])[0].split(",") if p)
    out = [f"{scheme}://{sni}{'?alpn=' + ','.join(alpn) if alpn else ''}"]
    out.append(f"  entry point {entrypoint}, client {client_ip}")
    out.append("")
    if entry is None:
        out.append(f"No TCP router on {entrypoint}: HTTP routers serve every connection.")
        return "\n".join(out)
    if not is_tls and entry.early:
        out.append("Only non-TLS TCP routers here: routed at once, before the client sends.")
    table = entry.tls if is_tls else entry.plain
    info = ConnInfo(sni, alpn, client_ip)
    chosen = table.match_route(info) if table is not None else None
    if chosen is None:
        out.append(f"No {'TLS' if is_tls else 'non-TLS'} TCP router matches.")
        out.append(
            "The connection is closed (Turnout has no TLS termination)."
            if is_tls
            else "The bytes go to the HTTP routers."
        )
        return "\n".join(out)
    assert table is not None
    item = next(c for c in table.compiled if c.route is chosen)
    out.append(f"Chosen: {chosen.name}  priority {item.priority}  {chosen.rule}")
    target = snapshot.tcp.targets[chosen.name]
    if target.middlewares:
        out.append("Middlewares: " + ", ".join(m.name for m in target.middlewares))
    server = target.service.pick_server()
    where = server.address if server is not None else "no server (the connection is closed)"
    out.append(f"Service {target.service.name} -> {where}")
    return "\n".join(out)


class _Request:
    """The request as middlewares would change it."""

    def __init__(self, method: str, host: str, host_header: str, path: str, query: str) -> None:
        self.method = method
        self.host = host
        self.host_header = host_header
        self.path = path
        self.query = query
        self.set_headers: dict[str, str] = {}
        self.removed_headers: list[str] = []
        self.answer: str | None = None  # set when a middleware answers instead of the service


def explain(
    snapshot: Snapshot,
    method: str,
    url: str,
    *,
    entrypoint: str,
    client_ip: str = "127.0.0.1",
    headers: list[str] | tuple[str, ...] = (),
) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme in ("tcp", "tls"):
        return explain_tcp(
            snapshot, parts.scheme, parts, entrypoint=entrypoint, client_ip=client_ip
        )
    if parts.scheme not in ("http", "https"):
        raise ExplainError(f"URL scheme must be http, https, tcp or tls: {url!r}")
    if not parts.hostname:
        raise ExplainError(f"URL has no host: {url!r}")
    header_pairs: list[tuple[str, str]] = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ExplainError(f"header must be 'Name: value': {header!r}")
        header_pairs.append((name.strip(), value.strip()))
    host_header = parts.netloc.rsplit("@", 1)[-1]
    for name, value in header_pairs:
        if name.lower() == "host":
            host_header = value
    host = _host_of(host_header)
    path = unquote(parts.path or "/", errors="surrogateescape")
    request = SimpleRequest(
        method.upper(),
        host,
        path,
        parts.query,
        client_ip,
        [(name, value) for name, value in header_pairs if name.lower() != "host"],
    )
    table = snapshot.tables.get(entrypoint)
    if table is None:
        known = ", ".join(sorted(snapshot.tables)) or "none"
        raise ExplainError(f"unknown entry point {entrypoint!r} (known: {known})")

    out: list[str] = []
    target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
    out.append(f"{method.upper()} {parts.scheme}://{host_header}{target}")
    out.append(f"  entry point {entrypoint}, client {client_ip}")
    out.append("")

    matched = [item for item in table.compiled if item.predicate(request)]
    indexed = table.match_route(request)
    if not matched:
        out.append(f"No router matches ({len(table.compiled)} routers on {entrypoint}).")
        out.append("Turnout answers: 404 page not found")
        return "\n".join(out)
    width = max(len(item.route.name) for item in matched)
    out.append(
        f"Routers that match, in the order they are tried ({len(table.compiled)} routers on "
        f"{entrypoint}; the first wins):"
    )
    for index, item in enumerate(matched):
        arrow = "->" if index == 0 else "  "
        out.append(
            f"  {arrow} {item.route.name:<{width}}  priority {item.priority:<6} {item.route.rule}"
        )
    chosen = matched[0].route
    if indexed is not chosen:
        # Never expected: the index must agree with the linear order.
        out.append(
            f"  note: the indexed lookup chose {getattr(indexed, 'name', None)!r}; please report"
        )
    out.append(f"Chosen: {chosen.name}")
    out.append("")

    forwarded = _Request(method.upper(), host, host_header, parts.path or "/", parts.query)
    provider = chosen.name.rpartition("@")[2]
    router = snapshot.router_configs.get(chosen.name)
    chain = [qualify(name, provider) for name in (router.middlewares if router else [])]
    if chain:
        out.append("Middlewares, in order:")
        _explain_middlewares(snapshot, chain, forwarded, client_ip, out, depth=1, seen=set())
    else:
        out.append("Middlewares: none")
    out.append("")

    service_name = qualify(router.service, provider) if router else ""
    out.append("Service:")
    picked = _explain_service(snapshot, service_name, out, depth=1, seen=set())
    out.append("")
    if forwarded.answer is not None:
        out.append(f"Turnout answers without reaching the service: {forwarded.answer}")
        return "\n".join(out)
    if picked is None:
        out.append("No server to send to: Turnout answers 503 (or the internal service answers).")
        return "\n".join(out)
    url_of, pass_host = picked
    out.append(f"Sent to {url_of} as:")
    query = f"?{forwarded.query}" if forwarded.query else ""
    out.append(f"  {forwarded.method} {forwarded.path}{query} HTTP/1.1")
    sent_host = forwarded.host_header if pass_host else urlsplit(url_of).netloc
    out.append(f"  Host: {sent_host}")
    for name, value in forwarded.set_headers.items():
        out.append(f"  {name}: {value}")
    for name, value in header_pairs:
        lower = name.lower()
        if lower == "host" or lower in (n.lower() for n in forwarded.set_headers):
            continue
        if lower in (n.lower() for n in forwarded.removed_headers):
            continue
        out.append(f"  {name}: {value}")
    out.append(f"  X-Forwarded-For: {client_ip}")
    out.append(f"  X-Forwarded-Host: {host_header}")
    out.append(f"  X-Forwarded-Proto: {parts.scheme}")
    out.append(f"  X-Real-Ip: {client_ip}")
    for name in forwarded.removed_headers:
        out.append(f"  ({name} removed)")
    return "\n".join(out)


def _host_of(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host


# -- middlewares ---------------------------------------------------------------


def _explain_middlewares(
    snapshot: Snapshot,
    names: list[str],
    request: _Request,
    client_ip: str,
    out: list[str],
    *,
    depth: int,
    seen: set[str],
) -> None:
    pad = "  " * depth
    for index, name in enumerate(names, 1):
        middleware = snapshot.middlewares.get(name)
        if middleware is None:
            out.append(f"{pad}{index}. {name}: unknown middleware")
            continue
        kind = _kind(middleware)
        if middleware.chain is not None:
            out.append(f"{pad}{index}. {name} (chain)")
            if name in seen:
                out.append(f"{pad}   cycle: {name} again")
                continue
            provider = name.rpartition("@")[2]
            members = [qualify(member, provider) for member in middleware.chain.middlewares]
            _explain_middlewares(
                snapshot, members, request, client_ip, out, depth=depth + 2, seen={*seen, name}
            )
            continue
        effect = _effect(middleware, request, client_ip)
        out.append(f"{pad}{index}. {name} ({kind}): {effect}")
        if request.answer is not None:
            out.append(f"{pad}   the middlewares after it do not run")
            return


def _kind(middleware: Middleware) -> str:
    for attr, encoded in zip(
        type(middleware).__struct_fields__, type(middleware).__struct_encode_fields__, strict=True
    ):
        if getattr(middleware, attr) is not None:
            return encoded
    return "empty"


def _effect(middleware: Middleware, request: _Request, client_ip: str) -> str:
    path = request.path
    if middleware.strip_prefix is not None:
        for prefix in middleware.strip_prefix.prefixes:
            if path.startswith(prefix):
                request.path = _leading_slash(path[len(prefix) :])
                request.set_headers["X-Forwarded-Prefix"] = prefix
                return f"path {path} -> {request.path}, adds X-Forwarded-Prefix: {prefix}"
        return f"no prefix of {middleware.strip_prefix.prefixes} starts {path}: path unchanged"
    if middleware.strip_prefix_regex is not None:
        for pattern in middleware.strip_prefix_regex.regex:
            match = _search(pattern, path)
            if match is not None and match.start() == 0:
                prefix = match.group(0)
                request.path = _leading_slash(path[len(prefix) :])
                request.set_headers["X-Forwarded-Prefix"] = prefix
                return f"path {path} -> {request.path}, adds X-Forwarded-Prefix: {prefix}"
        return "no regex matches the start of the path: path unchanged"
    if middleware.add_prefix is not None:
        request.path = middleware.add_prefix.prefix + path
        return f"path {path} -> {request.path}"
    if middleware.replace_path is not None:
        request.path = middleware.replace_path.path
        request.set_headers["X-Replaced-Path"] = path
        return f"path {path} -> {request.path}, adds X-Replaced-Path: {path}"
    if middleware.replace_path_regex is not None:
        config = middleware.replace_path_regex
        match = _search(config.regex, path)
        if match is None:
            return f"regex {config.regex!r} does not match {path}: path unchanged"
        replacement = _GO_REPLACEMENT.sub(_python_group, config.replacement)
        request.path = re2.compile(config.regex).sub(replacement, path)
        request.set_headers["X-Replaced-Path"] = path
        return f"path {path} -> {request.path}, adds X-Replaced-Path: {path}"
    if middleware.headers is not None:
        changes = []
        for name, value in middleware.headers.custom_request_headers.items():
            if value:
                request.set_headers[name] = value
                changes.append(f"sets {name}: {value}")
            else:
                request.removed_headers.append(name)
                changes.append(f"removes {name}")
        if middleware.headers.custom_response_headers:
            changes.append(
                f"sets {len(middleware.headers.custom_response_headers)} response header(s)"
            )
        return "; ".join(changes) or "no request header change (response headers only)"
    if middleware.redirect_scheme is not None:
        config = middleware.redirect_scheme
        status = 301 if config.permanent else 302
        port = f":{config.port}" if config.port else ""
        location = f"{config.scheme}://{request.host}{port}{path}"
        request.answer = f"{status} redirect to {location}"
        return request.answer
    if middleware.redirect_regex is not None:
        config = middleware.redirect_regex
        url = f"http://{request.host_header}{path}"
        if _search(config.regex, url) is None:
            return f"regex {config.regex!r} does not match {url}: passes on"
        replacement = _GO_REPLACEMENT.sub(_python_group, config.replacement)
        location = re2.compile(config.regex).sub(replacement, url)
        request.answer = f"{301 if config.permanent else 302} redirect to {location}"
        return request.answer
    if middleware.ip_allow_list is not None:
        ranges = middleware.ip_allow_list.source_range
        if _ip_in(client_ip, ranges):
            return f"client {client_ip} is in {ranges}: allowed"
        request.answer = f"403 Forbidden (client {client_ip} not in {ranges})"
        return request.answer
    if middleware.basic_auth is not None or middleware.digest_auth is not None:
        return "asks for credentials (401 without valid ones)"
    if middleware.forward_auth is not None:
        return f"asks {middleware.forward_auth.address} first; its non-2xx answer is returned"
    return "does not change the request path or headers"


def _leading_slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _search(pattern: str, text: str):  # type: ignore[no-untyped-def]
    try:
        return re2.compile(pattern).search(text)
    except re2.error:
        return None


def _python_group(match: re.Match[str]) -> str:
    token = match.group(1)
    if token == "$":
        return "$"
    return "\\g<" + token.strip("{}") + ">"


def _ip_in(client_ip: str, ranges: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    for entry in ranges:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


# -- services -------------------------------------------------------------------


def _explain_service(
    snapshot: Snapshot, name: str, out: list[str], *, depth: int, seen: set[str]
) -> tuple[str, bool] | None:
    """Print the service tree; returns (server URL, passHostHeader) of the next pick."""
    pad = "  " * depth
    if name.endswith("@internal"):
        known = name in snapshot.services
        out.append(f"{pad}{name}: built-in service" + ("" if known else " (unknown)"))
        return None
    config: Service | None = snapshot.service_configs.get(name)
    if config is None:
        out.append(f"{pad}{name}: unknown service")
        return None
    if name in seen:
        out.append(f"{pad}{name}: cycle")
        return None
    seen = {*seen, name}
    provider = name.rpartition("@")[2]
    if config.load_balancer is not None:
        lb = config.load_balancer
        out.append(
            f"{pad}{name}  loadBalancer ({lb.strategy or 'wrr'}), "
            f"passHostHeader {str(lb.pass_host_header).lower()}"
            + (f", serversTransport {lb.servers_transport}" if lb.servers_transport else "")
        )
        balancer = snapshot.services.get(name)
        picked = balancer.pick() if isinstance(balancer, LoadBalancer) else None
        for server in lb.servers:
            weight = server.effective_weight
            mark = "*" if picked is not None and picked.url == server.url else " "
            note = "  <- next request goes here" if mark == "*" else ""
            if weight == 0:
                note = "  (weight 0: out of rotation)"
            out.append(f"{pad}  {mark} {server.url}  weight {weight}{note}")
        if not lb.servers:
            out.append(f"{pad}    (no servers: 503)")
        return (picked.url, lb.pass_host_header) if picked is not None else None
    if config.weighted is not None:
        out.append(f"{pad}{name}  weighted")
        first = None
        for child in config.weighted.services:
            out.append(f"{pad}  weight {child.effective_weight}:")
            result = _explain_service(
                snapshot, qualify(child.name, provider), out, depth=depth + 2, seen=seen
            )
            first = first or result
        return first
    if config.mirroring is not None:
        mirroring = config.mirroring
        out.append(f"{pad}{name}  mirroring")
        result = _explain_service(
            snapshot, qualify(mirroring.service, provider), out, depth=depth + 1, seen=seen
        )
        for mirror in mirroring.mirrors:
            out.append(f"{pad}  mirror {mirror.percent}% of requests to:")
            _explain_service(
                snapshot, qualify(mirror.name, provider), out, depth=depth + 2, seen=seen
            )
        return result
    if config.failover is not None:
        failover = config.failover
        out.append(f"{pad}{name}  failover")
        result = _explain_service(
            snapshot, qualify(failover.service, provider), out, depth=depth + 1, seen=seen
        )
        out.append(f"{pad}  fallback when it is down:")
        _explain_service(
            snapshot, qualify(failover.fallback, provider), out, depth=depth + 2, seen=seen
        )
        return result
    if config.highest_random_weight is not None:
        out.append(f"{pad}{name}  highestRandomWeight")
        first = None
        for child in config.highest_random_weight.services:
            result = _explain_service(
                snapshot, qualify(child.name, provider), out, depth=depth + 1, seen=seen
            )
            first = first or result
        return first
    out.append(f"{pad}{name}: no service type")
    return None
