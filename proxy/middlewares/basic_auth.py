"""basicAuth: HTTP Basic authentication against htpasswd users (Traefik's basic auth).

A request without valid credentials gets 401 with ``WWW-Authenticate: Basic
realm="REALM"`` (realm default "traefik") and the body "401 Unauthorized".
On success the user name goes upstream in ``headerField`` when set, and
Authorization is removed with ``removeHeader``.

bcrypt takes tens of milliseconds by design: it runs on a worker thread (the
library releases the GIL) while the exchange waits as PENDING, so the event
loop keeps serving. Successful checks are remembered, keyed by a SHA-256 of
user, password and hash, in a small bounded table: a client sending the same
credentials on every request pays for bcrypt once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

from proxy.config.dynamic import BasicAuth
from proxy.http.headers import is_token
from proxy.middlewares import register
from proxy.middlewares.base import PENDING, Answer, BuildContext, BuildError, Handler, Pending
from proxy.middlewares.chain import answer, resume
from proxy.middlewares.htpasswd import UsersTable, check_password, is_bcrypt

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

VERIFIED_CACHE_SIZE = 1024


def unauthorized(challenge: bytes) -> Answer:
    """go-http-auth's RequireAuth answer."""
    return Answer(
        401,
        [(b"Content-Type", b"text/plain"), (b"WWW-Authenticate", challenge)],
        b"401 Unauthorized\n",
    )


def basic_credentials(ex: Exchange) -> tuple[str, bytes] | None:
    """Go's Request.BasicAuth: the first Authorization header, scheme case-insensitive."""
    values = ex.header("authorization")
    if not values:
        return None
    value = values[0]
    if value[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(value[6:].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "surrogateescape"), password


class BasicAuthHandler(Handler):
    __slots__ = ("challenge", "header_field", "remove_header", "users", "verified")

    def __init__(
        self,
        name: str,
        users: UsersTable,
        realm: str,
        header_field: str,
        remove_header: bool,
    ) -> None:
        super().__init__(name)
        self.users = users
        self.challenge = f'Basic realm="{realm}"'.encode()
        self.header_field = header_field
        self.remove_header = remove_header
        self.verified: OrderedDict[bytes, bool] = OrderedDict()

    def on_request(self, ex: Exchange) -> Answer | Pending | None:
        credentials = basic_credentials(ex)
        if credentials is None:
            return unauthorized(self.challenge)
        user, password = credentials
        secret = self.users.get(user)
        if not secret:
            return unauthorized(self.challenge)
        key = hashlib.sha256(
            b"\0".join((user.encode("utf-8", "surrogateescape"), password, secret.encode()))
        ).digest()
        if key in self.verified:
            self.verified.move_to_end(key)
            self._admit(ex, user)
            return None
        if not is_bcrypt(secret):
            if not check_password(password, secret):
                return unauthorized(self.challenge)
            self._remember(key)
            self._admit(ex, user)
            return None
        loop = asyncio.get_running_loop()
        check = loop.run_in_executor(None, check_password, password, secret)
        check.add_done_callback(lambda done: self._checked(ex, user, key, done))
        return PENDING

    def _checked(self, ex: Exchange, user: str, key: bytes, done: asyncio.Future[bool]) -> None:
        if done.cancelled() or done.exception() is not None or not done.result():
            answer(ex, unauthorized(self.challenge))
            return
        self._remember(key)
        if ex.conn.transport is None or ex.response_state != 0:
            return
        self._admit(ex, user)
        resume(ex)

    def _remember(self, key: bytes) -> None:
        self.verified[key] = True
        if len(self.verified) > VERIFIED_CACHE_SIZE:
            self.verified.popitem(last=False)

    def _admit(self, ex: Exchange, user: str) -> None:
        ex.user = user  # the access log's ClientUsername, as Traefik
        if self.header_field:
            ex.set_header(self.header_field, user)
        if self.remove_header:
            ex.remove_header("Authorization")


def check_options(realm: str, header_field: str) -> None:
    if '"' in realm or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in realm):
        raise BuildError("realm must not contain quotes or control characters", "realm")
    if header_field and not is_token(header_field.encode("utf-8", "surrogateescape")):
        raise BuildError(f"invalid header name {header_field!r}", "headerField")


@register("basic_auth")
def build(name: str, config: BasicAuth, context: BuildContext) -> Handler:
    realm = config.realm or "traefik"
    check_options(realm, config.header_field)
    users = UsersTable(config.users_file, config.users, 2, lambda parts: (parts[0], parts[1]))
    return BasicAuthHandler(name, users, realm, config.header_field, config.remove_header)
