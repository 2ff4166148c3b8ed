"""headers: custom request/response headers, CORS and security headers (Traefik's headers).

Traefik builds this middleware as two layers, and so does this handler, in one:
the outer "header" layer (custom headers and CORS) and the inner "secure" layer
(unrolled/secure: allowed hosts, the deprecated SSL redirects, STS and the
other security headers).

Request, outer then inner:

1. a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) is
   answered here with 200 and the Access-Control-* headers, nothing else;
2. customRequestHeaders are set ("" deletes);
3. allowedHosts refuses other hosts with 500 "Bad Host" (not in isDevelopment);
   hostsProxyHeaders name headers that carry the host instead of Host;
4. sslRedirect (deprecated) sends a request that is not HTTPS to https://host
   (sslHost) with 301, 307 with sslTemporaryRedirect; sslForceHost redirects to
   sslHost even when secure. A request is HTTPS when one sslProxyHeaders
   header has its value: there is no TLS entry point yet.

Response, inner then outer: the security headers are set (they override the
backend's), then customResponseHeaders ("" deletes), Access-Control-Allow-
Origin/-Credentials/-Expose-Headers and Vary: Origin. Strict-Transport-
Security is only sent on HTTPS requests, or always with forceSTSHeader.
"""

from __future__ import annotations

import html
from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy.config.dynamic import Headers
from proxy.http.headers import FORWARDED, has_ctl, is_token
from proxy.middlewares import register
from proxy.middlewares.base import (
    Answer,
    BuildContext,
    BuildError,
    Handler,
    ResponseHead,
    header_line,
)
from proxy.middlewares.goregexp import GoRegexp, RegexpError

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

_TEXT_PLAIN = (b"Content-Type", b"text/plain; charset=utf-8")


def _has_custom(config: Headers) -> bool:
    return bool(config.custom_request_headers or config.custom_response_headers)


def _has_cors(config: Headers) -> bool:
    return bool(
        config.access_control_allow_credentials
        or config.access_control_allow_headers
        or config.access_control_allow_methods
        or config.access_control_allow_origin_list
        or config.access_control_allow_origin_list_regex
        or config.access_control_expose_headers
        or config.access_control_max_age
        or config.add_vary_header
    )


def _has_secure(config: Headers) -> bool:
    return bool(
        config.allowed_hosts
        or config.hosts_proxy_headers
        or config.ssl_redirect
        or config.ssl_temporary_redirect
        or config.ssl_force_host
        or config.ssl_host
        or config.ssl_proxy_headers
        or config.sts_seconds
        or config.sts_include_subdomains
        or config.sts_preload
        or config.force_sts_header
        or config.frame_deny
        or config.custom_frame_options_value
        or config.content_type_nosniff
        or config.browser_xss_filter
        or config.custom_browser_xss_value
        or config.content_security_policy
        or config.content_security_policy_report_only
        or config.public_key
        or config.referrer_policy
        or config.feature_policy
        or config.permissions_policy
        or config.is_development
    )


def _set_request_header(ex: Exchange, name: str, value: str) -> None:
    """Set ("" deletes) a request header, as Traefik does before its own X-Forwarded-*.

    In Traefik the entry point sets X-Forwarded-* before any middleware runs, so
    a middleware may replace or delete them. Turnout writes them when it forwards,
    except those named in ``ex.xforwarded``: naming the header there keeps the
    middleware's choice. X-Forwarded-For is always extended with the client.
    """
    lname = name.lower().encode("latin-1")
    if value:
        ex.set_header(name, value)
    else:
        ex.remove_header(name)
    if lname in FORWARDED:
        if ex.xforwarded is None:
            ex.xforwarded = set()
        ex.xforwarded.add(lname)


class HeadersHandler(Handler):
    __slots__ = (
        "allow_credentials",
        "allowed_hosts",
        "checks_host",
        "expose_headers",
        "force_host",
        "has_cors",
        "host_headers",
        "max_age",
        "origin_list",
        "origin_regexes",
        "plain_response",
        "preflight_headers",
        "public_key",
        "request_adds",
        "request_edits",
        "request_names",
        "response_adds",
        "response_edits",
        "response_firsts",
        "secure_headers",
        "ssl_host",
        "ssl_proxy_headers",
        "ssl_redirect",
        "ssl_status",
        "sts",
        "vary",
    )

    def __init__(self, name: str, config: Headers, origin_regexes: tuple[GoRegexp, ...]) -> None:
        super().__init__(name)
        development = config.is_development
        # Outer layer: custom headers and CORS.
        # Precomputed edits (names and values are checked by the builder):
        # (lower name, field to add or None to delete, name, value, through
        # _set_request_header because the engine writes that header itself).
        self.request_edits = tuple(
            (
                name.lower().encode("latin-1"),
                (name.lower().encode("latin-1"), name.encode("latin-1"), value.encode("utf-8"))
                if value
                else None,
                name,
                value,
                name.lower().encode("latin-1") in FORWARDED or name.lower() == "host",
            )
            for name, value in config.custom_request_headers.items()
        )
        # (b"lower-name:", the line to add or None to delete)
        self.response_edits = tuple(
            (name.lower().encode("latin-1") + b":", header_line(name, value) if value else None)
            for name, value in config.custom_response_headers.items()
        )
        self.has_cors = _has_cors(config)
        self.origin_list = tuple(config.access_control_allow_origin_list)
        self.origin_regexes = origin_regexes
        self.allow_credentials = config.access_control_allow_credentials
        self.expose_headers = ",".join(config.access_control_expose_headers)
        self.vary = config.add_vary_header
        self.max_age = str(config.access_control_max_age).encode()
        preflight: list[tuple[str, str]] = []
        if config.access_control_allow_credentials:
            preflight.append(("Access-Control-Allow-Credentials", "true"))
        if config.access_control_allow_headers:
            allow = ",".join(config.access_control_allow_headers)
            preflight.append(("Access-Control-Allow-Headers", allow))
        if config.access_control_allow_methods:
            allow = ",".join(config.access_control_allow_methods)
            preflight.append(("Access-Control-Allow-Methods", allow))
        self.preflight_headers = preflight
        # Inner layer: unrolled/secure.
        self.host_headers = tuple(config.hosts_proxy_headers)
        self.allowed_hosts = (
            frozenset(host.lower() for host in config.allowed_hosts)
            if config.allowed_hosts and not development
            else None
        )
        self.ssl_proxy_headers = tuple(config.ssl_proxy_headers.items())
        self.ssl_redirect = config.ssl_redirect and not development
        self.force_host = config.ssl_force_host
        self.ssl_host = config.ssl_host
        self.ssl_status = 307 if config.ssl_temporary_redirect else 301
        self.checks_host = bool(
            self.allowed_hosts is not None
            or self.ssl_redirect
            or (self.force_host and self.ssl_host)
        )
        secure: list[tuple[str, str]] = []
        if config.custom_frame_options_value:
            secure.append(("X-Frame-Options", config.custom_frame_options_value))
        elif config.frame_deny:
            secure.append(("X-Frame-Options", "DENY"))
        if config.content_type_nosniff:
            secure.append(("X-Content-Type-Options", "nosniff"))
        if config.custom_browser_xss_value:
            secure.append(("X-XSS-Protection", config.custom_browser_xss_value))
        elif config.browser_xss_filter:
            secure.append(("X-XSS-Protection", "1; mode=block"))
        for header, value in (
            ("Content-Security-Policy", config.content_security_policy),
            ("Content-Security-Policy-Report-Only", config.content_security_policy_report_only),
            ("Referrer-Policy", config.referrer_policy),
            ("Feature-Policy", config.feature_policy),
            ("Permissions-Policy", config.permissions_policy),
        ):
            if value:
                secure.append((header, value))
        self.secure_headers = secure
        # HTTP Public Key Pinning: HTTPS requests only (and never in development).
        self.public_key = "" if development else config.public_key
        self.sts: tuple[str, bool] | None = None
        if config.sts_seconds and not development:
            value = f"max-age={config.sts_seconds}"
            if config.sts_include_subdomains:
                value += "; includeSubDomains"
            if config.sts_preload:
                value += "; preload"
            self.sts = (value, config.force_sts_header)
        # The common case, only custom headers, gets a fast path: when the
        # message has none of the named headers yet (a deletion then has
        # nothing to do), the edits amount to appending the new fields/lines
        # in order. Anything else takes the general path below.
        self.request_names = frozenset(edit[0] for edit in self.request_edits)
        # None: not that case (CORS, host checks, or a header the engine sets itself).
        self.request_adds = (
            tuple(edit[1] for edit in self.request_edits if edit[1] is not None)
            if not (self.has_cors or self.checks_host or any(e[4] for e in self.request_edits))
            else None
        )
        self.plain_response = not (
            self.has_cors or self.ssl_proxy_headers or self.sts or self.secure_headers
        )
        self.response_firsts = frozenset(
            byte for key, _ in self.response_edits for byte in key[:1] + key[:1].upper()
        )
        self.response_adds = tuple(line for _, line in self.response_edits if line is not None)

    # -- request --------------------------------------------------------------

    def on_request(self, ex: Exchange) -> Answer | None:
        adds = self.request_adds
        if adds is not None:
            fields = ex.fields
            names = self.request_names
            for field in fields:
                if field[0] in names:
                    break
            else:
                fields.extend(adds)
                return None
        if self.has_cors and ex.method == "OPTIONS":
            origin = _first(ex, "origin")
            if origin and _first(ex, "access-control-request-method"):
                return self._preflight(origin)
        for lname, field, name, value, special in self.request_edits:
            if special:
                _set_request_header(ex, name, value)
                continue
            fields = [f for f in ex.fields if f[0] != lname]
            if field is not None:
                fields.append(field)
            ex.fields = fields
        if not self.checks_host:
            return None
        host = self._host(ex)
        if self.allowed_hosts is not None and host.lower() not in self.allowed_hosts:
            return self._secure_answer(
                ex,
                Answer(
                    500,
                    [_TEXT_PLAIN, (b"X-Content-Type-Options", b"nosniff")],
                    b"Bad Host\n",
                ),
            )
        if self.ssl_redirect and not self._is_ssl(ex):
            return self._redirect(ex, self.ssl_host or host)
        if self.force_host and self.ssl_host and self.ssl_host != host:
            return self._redirect(ex, self.ssl_host)
        return None

    def _preflight(self, origin: str) -> Answer:
        headers = [(n.encode(), v.encode()) for n, v in self.preflight_headers]
        match = self._allowed_origin(origin)
        if match is not None:
            headers.append((b"Access-Control-Allow-Origin", match.encode()))
        headers.append((b"Access-Control-Max-Age", self.max_age))
        return Answer(200, headers)

    def _host(self, ex: Exchange) -> str:
        for name in self.host_headers:
            value = _first(ex, name.lower())
            if value:
                return value
        return (ex.host_header or b"").decode("latin-1")

    def _is_ssl(self, ex: Exchange) -> bool:
        return any(_first(ex, name.lower()) == value for name, value in self.ssl_proxy_headers)

    def _redirect(self, ex: Exchange, host: str) -> Answer:
        """Go's http.Redirect to https://host + the request target."""
        status = self.ssl_status
        url = "https://" + host + ex.target.decode("utf-8", "surrogateescape")
        location = url.encode("utf-8", "surrogateescape")
        headers = [(b"Location", location)]
        body = b""
        if ex.method in ("GET", "HEAD"):
            headers.append((b"Content-Type", b"text/html; charset=utf-8"))
        if ex.method == "GET":
            phrase = HTTPStatus(status).phrase
            body = f'<a href="{html.escape(url)}">{phrase}</a>.\n\n'.encode()
        return self._secure_answer(ex, Answer(status, headers, body))

    def _secure_answer(self, ex: Exchange, answer: Answer) -> Answer:
        """An answer of the inner layer still passes through the outer one's response side."""
        lines = [name + b": " + value + b"\r\n" for name, value in answer.headers]
        head = ResponseHead(answer.status, lines)
        self._outer_response(ex, head)
        headers = []
        for line in head.lines:
            name, _, value = line.rstrip(b"\r\n").partition(b":")
            headers.append((name, value.strip()))
        return Answer(head.status, headers, answer.body)

    # -- response -------------------------------------------------------------

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        if self.plain_response:
            lines = head.lines
            # A line whose first byte is not that of a custom name (either case)
            # is none of them: when no line is, the edits are appends. (Measured
            # cheaper than joining and lower-casing the head, for a few lines.)
            firsts = self.response_firsts
            for held in lines:
                if held[0] in firsts:
                    break
            else:
                lines.extend(self.response_adds)
                return
            self._outer_response(ex, head)
            return
        # Inner (secure) first, as Traefik's response modifiers unwind.
        ssl = self._is_ssl(ex) if self.ssl_proxy_headers else False
        if ssl and self.ssl_host:
            location = head.get("Location")
            if location is not None and (
                location.startswith(f"http://{self.ssl_host}/")
                or location == f"http://{self.ssl_host}"
            ):
                head.set("Location", "https:" + location[len("http:") :])
        sts = self.sts
        if sts is not None and (ssl or sts[1]):
            head.set("Strict-Transport-Security", sts[0])
        for name, value in self.secure_headers:
            head.set(name, value)
        if ssl and self.public_key:
            head.set("Public-Key-Pins", self.public_key)
        self._outer_response(ex, head)

    def _outer_response(self, ex: Exchange, head: ResponseHead) -> None:
        for key, line in self.response_edits:
            size = len(key)
            lines = [held for held in head.lines if held[:size].lower() != key]
            if line is not None:
                lines.append(line)
            head.lines = lines
        if not self.has_cors:
            return
        match = self._allowed_origin(_first(ex, "origin"))
        if match is not None:
            head.set("Access-Control-Allow-Origin", match)
        if self.allow_credentials:
            head.set("Access-Control-Allow-Credentials", "true")
        if self.expose_headers:
            head.set("Access-Control-Expose-Headers", self.expose_headers)
        if self.vary:
            vary = head.get("Vary") or ""
            if vary != "Origin":
                head.set("Vary", vary + ",Origin" if vary else "Origin")

    def _allowed_origin(self, origin: str) -> str | None:
        """Traefik's isOriginAllowed: the list ("*" or exact) first, then the regexps."""
        for item in self.origin_list:
            if item == "*" or item == origin:
                return item
        for regexp in self.origin_regexes:
            if regexp.search(origin):
                return origin
        return None


def _first(ex: Exchange, lname: str) -> str:
    values = ex.header(lname)  # Go's Header.Get: the first value
    return values[0] if values else ""


def _check_value(value: str, key: str) -> None:
    if has_ctl(value.encode("utf-8", "surrogateescape")):
        raise BuildError("a header value must not contain CR, LF, NUL or other controls", key)


def _check_name(name: str, key: str) -> None:
    if not is_token(name.encode("utf-8", "surrogateescape")):
        raise BuildError(f"invalid header name {name!r}", key)


@register("headers")
def build(name: str, config: Headers, context: BuildContext) -> Handler:
    if not (_has_secure(config) or _has_custom(config) or _has_cors(config)):
        raise BuildError("headers configuration not valid: no option is set")
    for field, mapping in (
        ("customRequestHeaders", config.custom_request_headers),
        ("customResponseHeaders", config.custom_response_headers),
        ("sslProxyHeaders", config.ssl_proxy_headers),
    ):
        for header, value in mapping.items():
            _check_name(header, f"{field}.{header}")
            _check_value(value, f"{field}.{header}")
    for field, values in (
        ("accessControlAllowHeaders", config.access_control_allow_headers),
        ("accessControlAllowMethods", config.access_control_allow_methods),
        ("accessControlAllowOriginList", config.access_control_allow_origin_list),
        ("accessControlExposeHeaders", config.access_control_expose_headers),
        ("allowedHosts", config.allowed_hosts),
    ):
        for index, value in enumerate(values):
            _check_value(value, f"{field}[{index}]")
    for index, header in enumerate(config.hosts_proxy_headers):
        _check_name(header, f"hostsProxyHeaders[{index}]")
    for field, value in (
        ("customFrameOptionsValue", config.custom_frame_options_value),
        ("customBrowserXSSValue", config.custom_browser_xss_value),
        ("contentSecurityPolicy", config.content_security_policy),
        ("contentSecurityPolicyReportOnly", config.content_security_policy_report_only),
        ("referrerPolicy", config.referrer_policy),
        ("featurePolicy", config.feature_policy),
        ("permissionsPolicy", config.permissions_policy),
        ("publicKey", config.public_key),
        ("sslHost", config.ssl_host),
    ):
        _check_value(value, field)
    if config.sts_seconds < 0:
        raise BuildError("stsSeconds must not be negative", "stsSeconds")
    if config.access_control_max_age < 0:
        raise BuildError("accessControlMaxAge must not be negative", "accessControlMaxAge")
    regexes = []
    for index, pattern in enumerate(config.access_control_allow_origin_list_regex):
        try:
            regexes.append(GoRegexp(pattern))
        except RegexpError as error:
            raise BuildError(
                f"error occurred during origin parsing: {error}",
                f"accessControlAllowOriginListRegex[{index}]",
            ) from None
    return HeadersHandler(name, config, tuple(regexes))
