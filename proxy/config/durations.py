"""Traefik duration values, carried as float seconds.

Traefik reads durations with paerser's ``types.Duration``: a bare integer is a
number of seconds, anything else goes through Go's ``time.ParseDuration``
(``10s``, ``1m30s``, ``100ms``, ``1.5h``, ``2us``/``2µs``, ``300ns``, ``-5s``).
Turnout accepts the same, plus a bare float or numeric string (``"1.5"``) as
seconds, which Go refuses but which is unambiguous.

``Duration`` is a ``float`` subclass, so a Struct field typed ``Duration``
holds plain seconds that arithmetic and ``asyncio`` timeouts take as they are.
msgspec treats it as a custom type and builds it through :func:`dec_hook`.
"""

import re
from typing import Any

__all__ = ["Duration", "DurationError", "dec_hook", "parse_duration"]

# Go's unit table (time/format.go). Both micro signs are accepted, as in Go:
# U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU.
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# One "<number><unit>" component. Go allows "1.", ".5" but not ".".
_COMPONENT = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_NUMERIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class DurationError(ValueError):
    """A value that is not a Traefik duration."""


class Duration(float):
    """A duration in seconds, decoded from Traefik's duration syntax."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Duration({float(self)!r})"


def parse_duration(value: object) -> Duration:
    """Turn a Traefik duration (``"1m30s"``, ``10``, ``"2.5"``) into seconds.

    Raises :class:`DurationError` with a message that says what was expected.
    """
    if isinstance(value, Duration):
        return value
    # bool is an int subclass; "true" is never a duration.
    if isinstance(value, bool):
        raise DurationError(_bad(str(value).lower()))
    if isinstance(value, (int, float)):
        return Duration(value)
    if not isinstance(value, str):
        raise DurationError(_bad(f"a {type(value).__name__}"))
    text = value.strip()
    if _NUMERIC.fullmatch(text):
        return Duration(float(text))
    return Duration(_parse_go_duration(text, value))


def _parse_go_duration(text: str, original: str) -> float:
    sign = 1.0
    rest = text
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise DurationError(_bad(repr(original)))
    total = 0.0
    pos = 0
    while pos < len(rest):
        match = _COMPONENT.match(rest, pos)
        if match is None:
            raise DurationError(_bad(repr(original)))
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return sign * total


def _bad(original: str) -> str:
    return (
        f"invalid duration {original}: expected a number of seconds or a Go duration "
        "such as '10s', '1m30s', '100ms', '1.5h' (units ns, us, ms, s, m, h)"
    )


def dec_hook(tp: type, obj: Any) -> Any:
    """msgspec ``dec_hook`` that builds :class:`Duration` values."""
    if tp is Duration:
        return parse_duration(obj)
    raise NotImplementedError(f"no decoder for {tp!r}")
