"""digestAuth: HTTP Digest authentication, MD5 with qop=auth, as Traefik (go-http-auth).

Users are htdigest lines ``user:realm:HA1`` (HA1 = MD5("user:realm:password"));
only the entries of the middleware's ``realm`` can log in. The challenge is
``Digest realm="R", nonce="N", opaque="O", algorithm=MD5, qop="auth"``; the
opaque value is fixed for the middleware, nonces are issued by each 401 and
remembered (the 1000 most recent, plus 100 of slack, as go-http-auth) with the
last nonce count seen: a replayed or out-of-order count, or an unknown nonce,
gets a new challenge with ``stale=true``. The ``uri`` of the credentials must
be the request target, or a path prefix of it (go-http-auth's leniency).

Nonces live in the process that issued them: with ``--workers N`` a client
whose connections land on different workers is asked again (``stale=true``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from proxy.config.dynamic import DigestAuth
from proxy.middlewares import register
from proxy.middlewares.base import Answer, BuildContext, Handler
from proxy.middlewares.basic_auth import check_options, unauthorized
from proxy.middlewares.htpasswd import UsersTable

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange

CLIENT_CACHE_SIZE = 1000
CLIENT_CACHE_TOLERANCE = 100


def random_key() -> str:
    return base64.b64encode(os.urandom(12)).decode("ascii")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogateescape")).hexdigest()


def parse_pairs(value: str) -> dict[str, str]:
    """go-http-auth's ParsePairs over http's ParseList: comma-separated, quotes kept together."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value.strip():
        if escaped:
            escaped = False
            current.append(ch)
        elif quoted:
            if ch == "\\":
                escaped = True
                continue
            if ch == '"':
                quoted = False
            current.append(ch)
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    pairs: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        if sep and len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = val[1:-1]
        pairs[key] = val
    return pairs


class DigestAuthHandler(Handler):
    __slots__ = ("clients", "header_field", "opaque", "realm", "remove_header", "users")

    def __init__(
        self,
        name: str,
        users: UsersTable,
        realm: str,
        header_field: str,
        remove_header: bool,
    ) -> None:
        super().__init__(name)
        self.users = users  # "user:realm" -> HA1
        self.realm = realm
        self.opaque = random_key()
        self.header_field = header_field
        self.remove_header = remove_header
        # nonce -> last nonce count, least recently used first
        self.clients: OrderedDict[str, int] = OrderedDict()

    def on_request(self, ex: Exchange) -> Answer | None:
        user, stale = self._check(ex)
        if user is None:
            return self._challenge(stale)
        ex.user = user  # the access log's ClientUsername, as Traefik
        if self.header_field:
            ex.set_header(self.header_field, user)
        if self.remove_header:
            ex.remove_header("Authorization")
        return None

    def _challenge(self, stale: bool) -> Answer:
        clients = self.clients
        if len(clients) > CLIENT_CACHE_SIZE + CLIENT_CACHE_TOLERANCE:
            for _ in range(CLIENT_CACHE_TOLERANCE * 2):
                clients.popitem(last=False)
        nonce = random_key()
        clients[nonce] = 0
        value = (
            f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{self.opaque}", '
            'algorithm=MD5, qop="auth"'
        )
        if stale:
            value += ", stale=true"
        return unauthorized(value.encode())

    def _check(self, ex: Exchange) -> tuple[str | None, bool]:
        """go-http-auth's CheckAuth: (user, False) on success, (None, stale?) otherwise."""
        values = ex.header("authorization")
        scheme, _, rest = (values[0] if values else "").partition(" ")
        if scheme != "Digest" or not rest:
            return None, False
        auth = parse_pairs(rest)
        auth.setdefault("algorithm", "MD5")
        if auth.get("opaque") != self.opaque or auth["algorithm"] != "MD5":
            return None, False
        if auth.get("qop") != "auth":
            return None, False
        uri = auth.get("uri", "")
        target = ex.target.decode("utf-8", "surrogateescape")
        if uri != target:
            try:
                path = urlsplit(uri).path
            except ValueError:
                return None, False
            if len(path) > len(ex.path) or not ex.path.startswith(path):
                return None, False
        user = auth.get("username", "")
        ha1 = self.users.get(f"{user}:{self.realm}")
        ha2 = _md5(f"{ex.method}:{uri}")
        nonce, nc, cnonce = auth.get("nonce", ""), auth.get("nc", ""), auth.get("cnonce", "")
        expected = _md5(":".join((ha1, nonce, nc, cnonce, "auth", ha2)))
        if not ha1 or not hmac.compare_digest(expected, auth.get("response", "")):
            return None, False
        try:
            count = int(nc, 16)
        except ValueError:
            return None, False
        last = self.clients.get(nonce)
        if last is None or (last != 0 and last >= count):
            return None, True
        self.clients[nonce] = count
        self.clients.move_to_end(nonce)
        return user, False


@register("digest_auth")
def build(name: str, config: DigestAuth, context: BuildContext) -> Handler:
    realm = config.realm or "traefik"
    check_options(realm, config.header_field)
    users = UsersTable(
        config.users_file, config.users, 3, lambda parts: (f"{parts[0]}:{parts[1]}", parts[2])
    )
    return DigestAuthHandler(name, users, realm, config.header_field, config.remove_header)
