"""Users files and password hashes shared by basicAuth and digestAuth.

Users come as Traefik reads them: the lines of ``usersFile`` (blank lines and
``#`` comments skipped) followed by the inline ``users``, so an inline entry
overrides the file's. Hashes are checked as go-http-auth's ``CheckSecret``
does: ``$2a$``/``$2b$``/``$2x$``/``$2y$`` bcrypt, ``{SHA}`` base64 SHA-1, and
any other ``$magic$salt$hash`` as MD5-crypt with that magic (``$apr1$`` for
Apache, ``$1$``). Plain text passwords are not accepted, as in Traefik.

``bcrypt`` is the one dependency: passlib has had no release since 2020 and
breaks with current bcrypt, and MD5-crypt and SHA-1 are a few lines each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt

from proxy.middlewares.base import BuildError

__all__ = ["UsersTable", "check_password", "is_bcrypt", "load_users", "md5_crypt"]

log = logging.getLogger("turnout")

# How often a users file is looked at for changes (one stat per period).
RECHECK_SECONDS = 1.0

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2x$", "$2y$")
_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def load_users(users_file: str, users: list[str], fields: int) -> list[tuple[list[str], str]]:
    """The entries (split in ``fields`` parts on ":") with the key naming each one.

    A malformed entry or an unreadable file is a BuildError naming the option.
    """
    entries: list[tuple[str, str]] = []
    if users_file:
        try:
            text = Path(users_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BuildError(f"cannot read users file: {error}", "usersFile") from None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append((line, f"usersFile (line {number})"))
    entries.extend((user, f"users[{index}]") for index, user in enumerate(users))
    parsed = []
    for entry, key in entries:
        parts = entry.split(":")
        if len(parts) != fields or not parts[0]:
            shape = "user:hash" if fields == 2 else "user:realm:hash"
            raise BuildError(f"expected {shape}, got {entry.split(':')[0]!r}...", key)
        parsed.append((parts, key))
    return parsed


class UsersTable:
    """Users by key; a users file is re-read when it changes.

    Traefik reads the file when it builds the middleware, and it rebuilds every
    middleware on any configuration change. Turnout keeps a middleware whose
    options did not change, so the file itself is watched instead: at most once
    a second a request stats it, and a changed file is read again. A file that
    became unreadable or malformed keeps the users read before, with a warning.
    """

    __slots__ = ("checked_at", "entries", "fields", "inline", "key_of", "path", "stamp")

    def __init__(
        self,
        users_file: str,
        users: list[str],
        fields: int,
        key_of: Callable[[list[str]], tuple[str, str]],
    ) -> None:
        self.path = users_file
        self.inline = users
        self.fields = fields
        self.key_of = key_of
        self.stamp = _stamp(users_file) if users_file else None
        self.checked_at = time.monotonic()
        self.entries = self._load()

    def _load(self) -> dict[str, str]:
        entries: dict[str, str] = {}
        for parts, _ in load_users(self.path, self.inline, self.fields):
            key, secret = self.key_of(parts)
            entries[key] = secret
        return entries

    def get(self, key: str) -> str:
        if self.path:
            now = time.monotonic()
            if now - self.checked_at >= RECHECK_SECONDS:
                self.checked_at = now
                self._refresh()
        return self.entries.get(key, "")

    def _refresh(self) -> None:
        stamp = _stamp(self.path)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            self.entries = self._load()
        except BuildError as error:
            log.warning(
                "users file %s: %s: %s; keeping the users read before", self.path, error.key, error
            )


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def is_bcrypt(secret: str) -> bool:
    return secret.startswith(_BCRYPT_PREFIXES)


def check_password(password: bytes, secret: str) -> bool:
    """go-http-auth's CheckSecret. bcrypt is slow by design: call it off the event loop."""
    if is_bcrypt(secret):
        # Go's bcrypt computes all four variants alike; refuses passwords over 72 bytes.
        if len(password) > 72:
            return False
        try:
            return bcrypt.checkpw(password, b"$2b$" + secret[4:].encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return False
    if secret.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(password).digest()).decode("ascii")
        return hmac.compare_digest(digest, secret[5:])
    parts = secret.split("$", 3)
    if len(parts) != 4:
        return False
    try:
        raw_secret = secret.encode("ascii")
    except UnicodeEncodeError:
        return False
    magic = b"$" + parts[1].encode("ascii") + b"$"
    return hmac.compare_digest(md5_crypt(password, parts[2].encode("ascii"), magic), raw_secret)


def md5_crypt(password: bytes, salt: bytes, magic: bytes = b"$apr1$") -> bytes:
    """Poul-Henning Kamp's MD5-crypt, the scheme behind Apache's ``$apr1$`` hashes."""
    salt = salt[:8]
    alternate = hashlib.md5(password + salt + password).digest()
    context = hashlib.md5(password + magic + salt)
    for remaining in range(len(password), 0, -16):
        context.update(alternate[: min(16, remaining)])
    length = len(password)
    while length:
        context.update(b"\x00" if length & 1 else password[:1])
        length >>= 1
    final = context.digest()
    for round_ in range(1000):
        step = hashlib.md5(password if round_ & 1 else final)
        if round_ % 3:
            step.update(salt)
        if round_ % 7:
            step.update(password)
        step.update(final if round_ & 1 else password)
        final = step.digest()
    encoded = bytearray()
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        value = final[a] << 16 | final[b] << 8 | final[c]
        for _ in range(4):
            encoded.append(_ITOA64[value & 0x3F])
            value >>= 6
    value = final[11]
    for _ in range(2):
        encoded.append(_ITOA64[value & 0x3F])
        value >>= 6
    return magic + salt + b"$" + bytes(encoded)
