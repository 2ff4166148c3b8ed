"""PROXY protocol v1 (text) and v2 (binary) headers: an incremental parser and two encoders.

A load balancer in front of Turnout (HAProxy ``send-proxy``, an AWS NLB...)
opens each connection with one header naming the client it accepted; Turnout
reads it before the first byte of the real protocol. Turnout in turn opens a
backend connection with a header when a TCP service asks for
``proxyProtocol.version`` 1 or 2.

Theory of operation (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt):

- v1 is one ASCII line, ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n``, at most
  107 bytes with its CRLF; ``PROXY UNKNOWN ...`` says the sender does not know
  the addresses (the connection's own are used).
- v2 is a 12-byte signature, a version/command byte (``0x20`` LOCAL: a health
  check of the sender itself, addresses ignored; ``0x21`` PROXY), a
  family/transport byte, a 16-bit big-endian length, the addresses, then TLVs
  (type, 16-bit length, value) that Turnout checks for framing and skips.

:class:`HeaderParser` is fed the first bytes of a connection as they arrive
and answers "need more", "no header here" (the bytes can go to the next
protocol untouched), or the header and the bytes that followed it. It never
holds more than the header can be long: 107 bytes for v1, 16 + 65,535 for v2
(the format's own limit, so no valid header is refused), and any byte that
cannot start or continue a header is an error that says what was wrong.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final, Literal

# The v2 signature; a v1 header starts with "PROXY " (also the first bytes of
# no other protocol Turnout serves: HTTP methods are upper case but none is PROXY).
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX: Final = b"PROXY "
V1_MAX_BYTES: Final = 107  # the spec's worst case: "PROXY UNKNOWN" + two IPv6 + ports + CRLF
V2_FIXED_BYTES: Final = 16
V2_MAX_BYTES: Final = V2_FIXED_BYTES + 0xFFFF

_V2_HEAD = struct.Struct("!12sBBH")
_IPV4_PORTS = struct.Struct("!4s4sHH")
_IPV6_PORTS = struct.Struct("!16s16sHH")
_TLV_HEAD = struct.Struct("!BH")

# v2 family (high nibble) and transport (low nibble) of the 14th byte.
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_STREAM, _DGRAM = 0x1, 0x2
_ADDRESS_BYTES = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}

Address = tuple[str, int]
Transport = Literal["tcp", "udp"]


class ProxyProtocolError(ValueError):
    """A malformed PROXY protocol header (or one larger than allowed)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a PROXY header said.

    ``source`` and ``destination`` are None when the header carries no IP
    addresses (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC or UNIX): the connection's own
    addresses stand.
    """

    version: Literal[1, 2]
    source: Address | None
    destination: Address | None
    transport: Transport = "tcp"
    local: bool = False  # v2 LOCAL: the sender speaking for itself (e.g. a health check)


class _NoHeader:
    """The connection does not start with a PROXY header."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_HEADER"


NO_HEADER: Final = _NoHeader()


class HeaderParser:
    """Reads one PROXY header off the start of a connection, fed as bytes arrive.

    ``feed`` returns None while more bytes are needed, :data:`NO_HEADER` when
    the connection does not start with a header (``rest`` then holds every byte
    fed), or a :class:`ProxyHeader` (``rest`` holds what followed it). A
    malformed header raises :class:`ProxyProtocolError`. After an answer other
    than None the parser is done; feeding it again is a programming error.
    """

    __slots__ = ("_buffer", "rest")

    def __init__(self) -> None:
        self._buffer = b""
        self.rest = b""

    @property
    def pending(self) -> bytes:
        """Bytes fed so far that may still start a header (while ``feed`` answers None)."""
        return self._buffer

    def feed(self, data: bytes) -> ProxyHeader | _NoHeader | None:
        buffer = self._buffer + data if self._buffer else data
        first = buffer[:1]
        if first == b"P":
            if not V1_PREFIX.startswith(buffer[:6]):
                return self._none(buffer)
            if len(buffer) < 6:
                return self._more(buffer)
            return self._v1(buffer)
        if first == b"\r":
            if not V2_SIGNATURE.startswith(buffer[:12]):
                return self._none(buffer)
            if len(buffer) < V2_FIXED_BYTES:
                return self._more(buffer)
            return self._v2(buffer)
        if not buffer:
            return None
        return self._none(buffer)

    def _more(self, buffer: bytes) -> None:
        self._buffer = buffer
        return None

    def _none(self, buffer: bytes) -> _NoHeader:
        self._buffer = b""
        self.rest = buffer
        return NO_HEADER

    def _done(self, header: ProxyHeader, buffer: bytes, end: int) -> ProxyHeader:
        self._buffer = b""
        self.rest = buffer[end:]
        return header

    # -- v1 -----------------------------------------------------------------

    def _v1(self, buffer: bytes) -> ProxyHeader | None:
        end = buffer.find(b"\r\n", 0, V1_MAX_BYTES)
        if end < 0:
            if len(buffer) >= V1_MAX_BYTES:
                raise ProxyProtocolError(f"PROXY v1 header: no CRLF within {V1_MAX_BYTES} bytes")
            if b"\n" in buffer:
                raise ProxyProtocolError("PROXY v1 header: line ends with LF, not CRLF")
            return self._more(buffer)
        return self._done(parse_v1_line(buffer[:end]), buffer, end + 2)

    # -- v2 -----------------------------------------------------------------

    def _v2(self, buffer: bytes) -> ProxyHeader | None:
        _, version_command, family_transport, length = _V2_HEAD.unpack_from(buffer)
        end = V2_FIXED_BYTES + length
        if version_command >> 4 != 2:
            raise ProxyProtocolError(f"PROXY v2 header: version {version_command >> 4}, expected 2")
        command = version_command & 0x0F
        if command > 1:
            raise ProxyProtocolError(f"PROXY v2 header: unknown command {command:#x}")
        family, transport = family_transport >> 4, family_transport & 0x0F
        if family not in _ADDRESS_BYTES or transport > _DGRAM:
            raise ProxyProtocolError(
                f"PROXY v2 header: unknown address family/transport {family_transport:#04x}"
            )
        address_bytes = _ADDRESS_BYTES[family]
        if length < address_bytes:
            raise ProxyProtocolError(
                f"PROXY v2 header: length {length} is shorter than the "
                f"{address_bytes}-byte address block of its family"
            )
        if len(buffer) < end:
            return self._more(buffer)
        _check_tlvs(buffer, V2_FIXED_BYTES + address_bytes, end)
        kind: Transport = "udp" if transport == _DGRAM else "tcp"
        if command == 0:
            return self._done(ProxyHeader(2, None, None, kind, local=True), buffer, end)
        source: Address | None = None
        destination: Address | None = None
        if family == _AF_INET:
            src, dst, sport, dport = _IPV4_PORTS.unpack_from(buffer, V2_FIXED_BYTES)
            source = (socket.inet_ntop(socket.AF_INET, src), sport)
            destination = (socket.inet_ntop(socket.AF_INET, dst), dport)
        elif family == _AF_INET6:
            src, dst, sport, dport = _IPV6_PORTS.unpack_from(buffer, V2_FIXED_BYTES)
            source = (socket.inet_ntop(socket.AF_INET6, src), sport)
            destination = (socket.inet_ntop(socket.AF_INET6, dst), dport)
        return self._done(ProxyHeader(2, source, destination, kind), buffer, end)


def parse_v1_line(line: bytes) -> ProxyHeader:
    """``PROXY TCP4 192.0.2.1 192.0.2.2 56324 443`` (no CRLF) as a header."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header: not ASCII") from None
    parts = text.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        raise ProxyProtocolError(f"PROXY v1 header: malformed line {text!r}")
    protocol = parts[1]
    if protocol == "UNKNOWN":
        # The spec: the receiver ignores anything after UNKNOWN.
        return ProxyHeader(1, None, None)
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(
            f"PROXY v1 header: protocol {protocol!r}, expected TCP4, TCP6 or UNKNOWN"
        )
    if len(parts) != 6:
        raise ProxyProtocolError(
            f"PROXY v1 header: expected 'PROXY {protocol} SRC DST SPORT DPORT', got {text!r}"
        )
    family = socket.AF_INET if protocol == "TCP4" else socket.AF_INET6
    source = (_v1_ip(parts[2], family, protocol), _v1_port(parts[4]))
    destination = (_v1_ip(parts[3], family, protocol), _v1_port(parts[5]))
    return ProxyHeader(1, source, destination)


def _v1_ip(text: str, family: int, protocol: str) -> str:
    try:
        # inet_pton is strict (no leading zeros in IPv4, no zone ids), as the spec is.
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        raise ProxyProtocolError(
            f"PROXY v1 header: {text!r} is not an {'IPv4' if protocol == 'TCP4' else 'IPv6'} "
            "address"
        ) from None


def _v1_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"PROXY v1 header: {text!r} is not a port number")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 header: port {port} is out of range")
    return port


def _check_tlvs(buffer: bytes, start: int, end: int) -> None:
    """TLVs after the addresses are skipped, but each must fit the header exactly."""
    offset = start
    while offset < end:
        if end - offset < _TLV_HEAD.size:
            raise ProxyProtocolError(
                f"PROXY v2 header: {end - offset} stray byte(s) where a TLV should start"
            )
        kind, length = _TLV_HEAD.unpack_from(buffer, offset)
        offset += _TLV_HEAD.size + length
        if offset > end:
            raise ProxyProtocolError(
                f"PROXY v2 header: TLV {kind:#04x} of {length} bytes runs past the header"
            )


# -- encoders ----------------------------------------------------------------


def _families(
    source: Address | None, destination: Address | None
) -> tuple[int, bytes, bytes] | None:
    """The common address family of both ends and their packed addresses.

    An IPv4 end talking to an IPv6 end is written as IPv4-mapped IPv6, as
    HAProxy does; None when either end is not an IP address.
    """
    if source is None or destination is None:
        return None
    packed = []
    for host, _ in (source, destination):
        try:
            packed.append((socket.AF_INET, socket.inet_pton(socket.AF_INET, host)))
        except OSError:
            try:
                packed.append((socket.AF_INET6, socket.inet_pton(socket.AF_INET6, host)))
            except OSError:
                return None
    (sf, src), (df, dst) = packed
    if sf == df:
        return sf, src, dst
    if sf == socket.AF_INET:
        src = b"\0" * 10 + b"\xff\xff" + src
    else:
        dst = b"\0" * 10 + b"\xff\xff" + dst
    return socket.AF_INET6, src, dst


def encode_v1(source: Address | None, destination: Address | None) -> bytes:
    """The v1 line for a TCP connection from ``source`` to ``destination``.

    ``PROXY UNKNOWN`` when either is not known (or not an IP address).
    """
    found = _families(source, destination)
    if found is None:
        return b"PROXY UNKNOWN\r\n"
    assert source is not None and destination is not None
    family, src, dst = found
    protocol = "TCP4" if family == socket.AF_INET else "TCP6"
    return (
        f"PROXY {protocol} {socket.inet_ntop(family, src)} {socket.inet_ntop(family, dst)} "
        f"{source[1]} {destination[1]}\r\n"
    ).encode("ascii")


def encode_v2(
    source: Address | None, destination: Address | None, transport: Transport = "tcp"
) -> bytes:
    """The v2 header for a connection (or UDP flow) from ``source`` to ``destination``.

    A LOCAL header (the receiver keeps the connection's own addresses) when
    either is not known.
    """
    found = _families(source, destination)
    if found is None:
        return _V2_HEAD.pack(V2_SIGNATURE, 0x20, 0x00, 0)
    assert source is not None and destination is not None
    family, src, dst = found
    kind = _DGRAM if transport == "udp" else _STREAM
    if family == socket.AF_INET:
        body = _IPV4_PORTS.pack(src, dst, source[1], destination[1])
        family_transport = _AF_INET << 4 | kind
    else:
        body = _IPV6_PORTS.pack(src, dst, source[1], destination[1])
        family_transport = _AF_INET6 << 4 | kind
    return _V2_HEAD.pack(V2_SIGNATURE, 0x21, family_transport, len(body)) + body
