"""forwardAuth: ask an authentication server before the service (Traefik's forwardauth).

The auth request is a GET (the request's method with ``preserveRequestMethod``)
to ``address`` with no body, carrying the request's headers (only
``authRequestHeaders`` when set) and X-Forwarded-For, -Method, -Proto, -Host
and -Uri describing the original request; with ``trustForwardHeader`` the
client's own X-Forwarded-* values are kept (and its X-Forwarded-For extended).

A 2xx answer lets the request go on, with the ``authResponseHeaders`` (and
those matching ``authResponseHeadersRegex``) copied from the answer into the
request, replacing what the client sent; ``addAuthCookiesToResponse`` names
cookies of the answer that are set on the final response, replacing the
service's cookies of the same name. Any other answer goes back to the client
as is (status, headers, body), a relative Location made absolute against the
auth server unless ``preserveLocationHeader``. An unreachable auth server is a
500, as in Traefik; an answer body over ``maxResponseBodySize`` a 401.

``forwardBody`` sends the request body to the auth server too: the request
waits for its whole body (held in memory, as Traefik reads it), which then
goes to the service as well. A body over ``maxBodySize`` (-1, the default: no
limit) is refused with 401 before the auth server is asked, as Traefik does.

``tls`` configures the connection to an https auth server: ``ca`` (a PEM
file; the system's trust store otherwise), ``cert`` and ``key`` (a client
certificate), ``insecureSkipVerify``; ``caOptional`` is accepted and, as in
Traefik where it is deprecated, changes nothing.

``headerField`` names the auth answer's header that holds the user: its
first value is the access log's ``ClientUsername``, as in Traefik.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from proxy.config.dynamic import ClientTLSWithCAOptional, ForwardAuth
from proxy.middlewares import register
from proxy.middlewares.base import (
    BODY_FIRST,
    PENDING,
    Answer,
    BuildContext,
    BuildError,
    Handler,
    Pending,
    ResponseHead,
)
from proxy.middlewares.buffering import POLL, payload, payload_size
from proxy.middlewares.chain import answer, answer_from, resume
from proxy.middlewares.subrequest import (
    NOT_COPIED,
    SubrequestError,
    SubResponse,
    Target,
    parse_target,
    send,
)

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

TIMEOUT = 30.0  # Traefik's auth client timeout
MAX_AUTH_BODY = 4 * 1024 * 1024  # when maxResponseBodySize is unset (-1)

# Never copied to the auth server or back from it (RFC 9110 7.6.1, and framing).
HOP_BY_HOP = NOT_COPIED
FORWARDED = ("x-forwarded-for", "x-forwarded-method", "x-forwarded-proto", "x-forwarded-host")
SET_BY_AUTH = frozenset({*FORWARDED, "x-forwarded-uri"})


def canonical(name: str) -> str:
    """Go's http.CanonicalHeaderKey: "x-auth-user" -> "X-Auth-User"."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def cookie_name(set_cookie: str) -> str:
    return set_cookie.partition("=")[0].strip()


class ForwardAuthHandler(Handler):
    __slots__ = (
        "context",
        "cookie_names",
        "cookies",
        "forward_body",
        "header_field",
        "max_body",
        "max_request_body",
        "preserve_location",
        "preserve_method",
        "request_headers",
        "response_headers",
        "response_regex",
        "target",
        "tasks",
        "trust",
    )

    def __init__(
        self, name: str, config: ForwardAuth, target: Target, context: ssl.SSLContext | None
    ) -> None:
        super().__init__(name)
        self.target = target
        self.context = context
        self.forward_body = config.forward_body
        self.header_field = config.header_field
        self.max_request_body = config.max_body_size  # < 0: no limit
        self.trust = config.trust_forward_header
        self.request_headers = frozenset(h.lower() for h in config.auth_request_headers)
        self.response_headers = [canonical(h) for h in config.auth_response_headers]
        self.response_regex = (
            re.compile(config.auth_response_headers_regex)
            if config.auth_response_headers_regex
            else None
        )
        self.cookie_names = frozenset(config.add_auth_cookies_to_response)
        self.preserve_location = config.preserve_location_header
        self.preserve_method = config.preserve_request_method
        self.max_body = config.max_response_body_size
        if self.max_body < 0:
            self.max_body = MAX_AUTH_BODY
        self.cookies: dict[Exchange, list[str]] = {}  # auth cookies for the final response
        self.tasks: set[asyncio.Task[None]] = set()

    # -- the auth request --------------------------------------------------

    def auth_headers(self, ex: Exchange) -> list[tuple[str, str]]:
        wanted = self.request_headers
        headers = [
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
            for lname, name, value in ex.fields
            if lname.decode("latin-1") not in HOP_BY_HOP
            and lname.decode("latin-1") not in SET_BY_AUTH
            and (not wanted or lname.decode("latin-1") in wanted)
        ]
        trusted = self.trust

        def prior(name: str) -> str:
            values = ex.header(name)
            return values[0] if values and trusted else ""

        forwarded_for = ex.client_ip
        if trusted and ex.header("x-forwarded-for"):
            forwarded_for = ", ".join([*ex.header("x-forwarded-for"), ex.client_ip])
        headers.append(("X-Forwarded-For", forwarded_for))
        headers.append(("X-Forwarded-Method", prior("x-forwarded-method") or ex.method))
        headers.append(("X-Forwarded-Proto", prior("x-forwarded-proto") or "http"))
        host = prior("x-forwarded-host") or (
            ex.host_header.decode("latin-1") if ex.host_header else ""
        )
        if host:
            headers.append(("X-Forwarded-Host", host))
        uri = prior("x-forwarded-uri") or ex.target.decode("latin-1")
        headers.append(("X-Forwarded-Uri", uri))
        return headers

    def on_request(self, ex: Exchange) -> Answer | Pending:
        body = b""
        if self.forward_body and (ex.chunked or ex.content_length):
            limit = self.max_request_body
            if not ex.request_done:
                if limit >= 0 and ex.content_length is not None and ex.content_length > limit:
                    return Answer(401)  # Traefik: errBodyTooLarge
                # Hold the whole body (the engine pauses the client past pending_limit).
                if ex.content_length is not None:
                    ex.pending_limit = max(ex.pending_limit, ex.content_length + 1)
                else:
                    # Chunk framing is held too; a limit is watched while the body arrives.
                    ex.pending_limit = 1 << 62
                    if limit >= 0:
                        asyncio.get_running_loop().call_later(POLL, self._watch, ex)
                return BODY_FIRST
            body = payload(ex)
            if 0 <= limit < len(body):
                return Answer(401)
        method = ex.method if self.preserve_method else "GET"
        task = asyncio.ensure_future(self._ask(ex, method, self.auth_headers(ex), body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return PENDING

    def _watch(self, ex: Exchange) -> None:
        """A chunked body under ``maxBodySize``: refused as soon as it passes it."""
        if ex.finished or ex.conn.transport is None or ex.request_done or ex.response_state:
            return
        if payload_size(ex) > self.max_request_body:
            ex.waiting_body = False
            answer_from(ex, self, Answer(401))
            return
        asyncio.get_running_loop().call_later(POLL, self._watch, ex)

    async def _ask(
        self, ex: Exchange, method: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        try:
            reply = await send(
                self.target,
                method,
                self.target.path,
                headers,
                timeout=TIMEOUT,
                max_body=self.max_body,
                body=body,
                context=self.context,
            )
        except SubrequestError as error:
            # Traefik: an answer body over maxResponseBodySize is a 401, the rest 500.
            answer(ex, Answer(401 if "response body over" in str(error) else 500))
            return
        if ex.finished:
            return  # the client left meanwhile
        if self.header_field:
            # Traefik names the user in its access log with this header of the answer.
            users = reply.values(self.header_field)
            if users:
                ex.user = users[0]
        if not 200 <= reply.status < 300:
            answer(ex, self.denied(reply))
            return
        try:
            self.grant(ex, reply)
        except ValueError:
            answer(ex, Answer(500))
            return
        resume(ex)

    # -- the answer --------------------------------------------------------

    def denied(self, reply: SubResponse) -> Answer:
        headers: list[tuple[bytes, bytes]] = []
        for name, value in reply.headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                continue
            if lname == "location" and not self.preserve_location:
                value = urljoin(self.target.url, value)
            headers.append((name.encode("latin-1"), value.encode("utf-8", "surrogateescape")))
        return Answer(reply.status, headers, reply.body)

    def grant(self, ex: Exchange, reply: SubResponse) -> None:
        for name in self.response_headers:
            ex.remove_header(name)
            for value in reply.values(name):
                ex.add_header(name, value)
        regex = self.response_regex
        if regex is not None:
            for _, raw_name, _ in list(ex.fields):
                name = raw_name.decode("latin-1")
                if regex.search(canonical(name)):
                    ex.remove_header(name)
            for name, value in reply.headers:
                if regex.search(canonical(name)):
                    ex.add_header(canonical(name), value)
        if self.cookie_names:
            cookies = [
                value
                for value in reply.values("set-cookie")
                if cookie_name(value) in self.cookie_names
            ]
            if cookies:
                self.cookies[ex] = cookies

    def on_response(self, ex: Exchange, head: ResponseHead) -> None:
        cookies = self.cookies.get(ex)
        if cookies is None:
            return
        names = self.cookie_names
        head.lines = [
            line
            for line in head.lines
            if not (
                line[:11].lower() == b"set-cookie:"
                and cookie_name(line[11:].decode("latin-1")) in names
            )
        ]
        for cookie in cookies:
            head.add("Set-Cookie", cookie)

    def on_done(self, ex: Exchange, status: int) -> None:
        self.cookies.pop(ex, None)


@register("forward_auth")
def build(name: str, config: ForwardAuth, context: BuildContext) -> Handler:
    try:
        target = parse_target(config.address)
    except ValueError as error:
        raise BuildError(str(error), "address") from None
    context = auth_tls(config.tls) if config.tls is not None else None
    if config.max_body_size < -1:
        raise BuildError("must be -1 (no limit) or a number of bytes", "maxBodySize")
    if config.auth_response_headers_regex:
        try:
            re.compile(config.auth_response_headers_regex)
        except re.error as error:
            raise BuildError(f"invalid regex: {error}", "authResponseHeadersRegex") from None
    for index, header in enumerate(config.auth_response_headers):
        if not header or any(c in header for c in " :\r\n\t"):
            raise BuildError(f"invalid header name {header!r}", f"authResponseHeaders[{index}]")
    return ForwardAuthHandler(name, config, target, context)


def auth_tls(tls: ClientTLSWithCAOptional) -> ssl.SSLContext:
    """The client side of TLS to the auth server; a file that does not load names its key."""
    try:
        context = ssl.create_default_context(cafile=tls.ca or None)
    except (OSError, ssl.SSLError) as error:
        raise BuildError(f"cannot load CA file {tls.ca!r}: {error}", "tls.ca") from None
    if tls.key and not tls.cert:
        raise BuildError("a key needs its certificate", "tls.cert")
    if tls.cert:
        try:
            context.load_cert_chain(tls.cert, tls.key or None)
        except (OSError, ssl.SSLError) as error:
            raise BuildError(
                f"cannot load certificate {tls.cert!r} and key {tls.key!r}: {error}", "tls.cert"
            ) from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
