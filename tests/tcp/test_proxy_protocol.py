"""PROXY protocol v1/v2: parsed from any split of the bytes, encoded, refused when malformed."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.tcp.proxy_protocol import (
    NO_HEADER,
    V1_MAX_BYTES,
    V2_SIGNATURE,
    HeaderParser,
    ProxyHeader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
)


def parse(*pieces: bytes) -> tuple[object, bytes]:
    """Feed the pieces as reads; the answer and the bytes the next protocol gets."""
    parser = HeaderParser()
    for index, piece in enumerate(pieces):
        answer = parser.feed(piece)
        if answer is not None:
            return answer, parser.rest + b"".join(pieces[index + 1 :])
    return None, b""


def every_split(data: bytes) -> list[tuple[bytes, ...]]:
    return [(data,), tuple(data[i : i + 1] for i in range(len(data)))] + [
        (data[:i], data[i:]) for i in range(1, len(data))
    ]


# -- v1 -----------------------------------------------------------------------


def test_v1_tcp4_whatever_the_reads() -> None:
    data = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n"
    for pieces in every_split(data):
        header, rest = parse(*pieces)
        assert header == ProxyHeader(1, ("192.0.2.1", 56324), ("198.51.100.7", 443))
        assert rest == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_and_unknown() -> None:
    header, rest = parse(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n")
    assert header == ProxyHeader(1, ("2001:db8::1", 1), ("::1", 65535))
    assert rest == b""
    # The spec: whatever follows UNKNOWN is ignored, the connection's addresses stand.
    header, rest = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
    assert header == ProxyHeader(1, None, None)
    assert rest == b"rest"
    assert parse(b"PROXY UNKNOWN\r\n")[0] == ProxyHeader(1, None, None)


def test_no_header_hands_every_byte_on() -> None:
    for data in (b"GET / HTTP/1.1\r\n", b"POST /", b"PUT /x", b"\r\nGET", b"\x16\x03\x01", b"P\r"):
        parser = HeaderParser()
        assert parser.feed(data) is NO_HEADER
        assert parser.rest == data
    # Decided only once the bytes differ from a header's start.
    parser = HeaderParser()
    assert parser.feed(b"PRO") is None
    assert parser.feed(b"PFIND / HTTP/1.1") is NO_HEADER
    assert parser.rest == b"PROPFIND / HTTP/1.1"
    parser = HeaderParser()
    assert parser.feed(b"\r\n\r\n") is None
    assert parser.feed(b"GET") is NO_HEADER
    assert parser.rest == b"\r\n\r\nGET"
    assert HeaderParser().feed(b"") is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", "LF, not CRLF"),
        (b"PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n", "protocol 'TCP5'"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n", "expected 'PROXY TCP4 SRC DST SPORT DPORT'"),
        (b"PROXY TCP4 192.0.2.1  192.0.2.2 1 2\r\n", "expected"),
        (b"PROXY TCP4 ::1 192.0.2.2 1 2\r\n", "'::1' is not an IPv4 address"),
        (b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n", "'192.0.2.1' is not an IPv6 address"),
        (b"PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", "port 65536 is out of range"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n", "'-1' is not a port number"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", "'01' is not a port number"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 \xd9\xa1 2\r\n", "not ASCII"),
        (b"PROXY \r\n", "protocol '', expected TCP4, TCP6 or UNKNOWN"),
    ],
)
def test_v1_malformed_lines_are_refused_with_the_reason(line: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(line)


def test_v1_without_crlf_in_107_bytes_is_refused_not_buffered() -> None:
    parser = HeaderParser()
    assert parser.feed(b"PROXY TCP6 " + b"1" * (V1_MAX_BYTES - 12)) is None
    with pytest.raises(ProxyProtocolError, match="no CRLF within 107 bytes"):
        parser.feed(b"1" * 10)
    # The longest legal line is accepted.
    longest = (
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    )
    assert len(longest) == 104
    assert parse(longest)[0] == ProxyHeader(
        1,
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
    )


# -- v2 -----------------------------------------------------------------------


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def test_v2_tcp4_with_tlvs_skipped_whatever_the_reads() -> None:
    addresses = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 56324, 443)
    # PP2_TYPE_ALPN "h2" and a NOOP padding TLV of 3 bytes, as HAProxy sends them.
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x03\x00\x00\x00"
    data = v2(1, 0x11, addresses + tlvs) + b"\x16\x03\x01"
    for pieces in every_split(data):
        header, rest = parse(*pieces)
        assert header == ProxyHeader(2, ("192.0.2.1", 56324), ("198.51.100.7", 443))
        assert rest == b"\x16\x03\x01"


def test_v2_tcp6_udp_local_unspec_unix() -> None:
    src = ipaddress.IPv6Address("2001:db8::1").packed
    dst = ipaddress.IPv6Address("::1").packed
    header, _ = parse(v2(1, 0x21, src + dst + struct.pack("!HH", 1, 2)))
    assert header == ProxyHeader(2, ("2001:db8::1", 1), ("::1", 2))
    header, _ = parse(v2(1, 0x12, bytes(8) + struct.pack("!HH", 53, 53)))
    assert header == ProxyHeader(2, ("0.0.0.0", 53), ("0.0.0.0", 53), "udp")
    # LOCAL: the sender speaks for itself; addresses (even present ones) are ignored.
    header, rest = parse(v2(0, 0x11, bytes(12)) + b"x")
    assert header == ProxyHeader(2, None, None, local=True)
    assert rest == b"x"
    assert parse(v2(0, 0x00, b""))[0] == ProxyHeader(2, None, None, local=True)
    # PROXY over UNSPEC or a UNIX socket: no IP to use, the connection's addresses stand.
    assert parse(v2(1, 0x00, b""))[0] == ProxyHeader(2, None, None)
    assert parse(v2(1, 0x31, bytes(216)))[0] == ProxyHeader(2, None, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1, expected 2"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command 0x2"),
        (V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), "unknown address family/transport 0x41"),
        (V2_SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12), "unknown address family/transport 0x13"),
        (V2_SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "shorter than the 12-byte address block"),
        (V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "shorter than the 36-byte address block"),
        (V2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(14), "2 stray byte"),
        (V2_SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x05h", "runs past the header"),
    ],
)
def test_v2_malformed_headers_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(data)


def test_v2_length_is_checked_before_the_body_arrives() -> None:
    # A too-short length is refused from the fixed 16 bytes, not after waiting.
    with pytest.raises(ProxyProtocolError):
        parse(V2_SIGNATURE + b"\x21\x11\x00\x04")


def test_v2_waits_for_its_declared_length_and_no_more() -> None:
    parser = HeaderParser()
    head = V2_SIGNATURE + b"\x21\x11\xff\xff"
    assert parser.feed(head) is None
    assert parser.feed(bytes(12) + b"\x04\xff\xf0" + bytes(0xFFF0 - 1)) is None
    header = parser.feed(b"\x00next")
    assert header == ProxyHeader(2, ("0.0.0.0", 0), ("0.0.0.0", 0))
    assert parser.rest == b"next"


# -- encoders -----------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
# The form the parser answers with (inet_ntop: "::ffff:0.0.0.0", not "::ffff:0:0").
ipv6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))
ports = st.integers(0, 65535)


def _split(data: bytes, cut: int) -> tuple[bytes, ...]:
    cut = cut % (len(data) + 1)
    return (data[:cut], data[cut:])


@given(
    st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    ports,
    ports,
    st.binary(max_size=40),
    st.integers(0, 200),
)
def test_v1_round_trip(
    hosts: tuple[str, str], sport: int, dport: int, payload: bytes, cut: int
) -> None:
    source, destination = (hosts[0], sport), (hosts[1], dport)
    data = encode_v1(source, destination)
    assert len(data) <= V1_MAX_BYTES
    header, rest = parse(*_split(data + payload, cut))
    assert header == ProxyHeader(1, source, destination)
    assert rest == payload


@given(
    st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    ports,
    ports,
    st.sampled_from(["tcp", "udp"]),
    st.binary(max_size=40),
    st.integers(0, 200),
)
def test_v2_round_trip(
    hosts: tuple[str, str], sport: int, dport: int, transport: str, payload: bytes, cut: int
) -> None:
    source, destination = (hosts[0], sport), (hosts[1], dport)
    data = encode_v2(source, destination, transport)  # type: ignore[arg-type]
    header, rest = parse(*_split(data + payload, cut))
    assert header == ProxyHeader(2, source, destination, transport)  # type: ignore[arg-type]
    assert rest == payload


def test_mixed_families_are_sent_as_ipv4_mapped_ipv6() -> None:
    source, destination = ("192.0.2.1", 1000), ("2001:db8::2", 443)
    assert encode_v1(source, destination) == b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1000 443\r\n"
    header, _ = parse(encode_v2(source, destination))
    assert header == ProxyHeader(2, ("::ffff:192.0.2.1", 1000), destination)


def test_unknown_addresses_are_sent_as_unknown_and_local() -> None:
    assert encode_v1(None, ("192.0.2.1", 80)) == b"PROXY UNKNOWN\r\n"
    assert encode_v1(("/run/sock", 0), ("192.0.2.1", 80)) == b"PROXY UNKNOWN\r\n"
    assert encode_v2(None, None) == V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert parse(encode_v2(None, None))[0] == ProxyHeader(2, None, None, local=True)


def test_encodings_match_the_spec_bytes() -> None:
    assert encode_v1(("192.0.2.1", 56324), ("198.51.100.7", 443)) == (
        b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
    )
    assert encode_v2(("192.0.2.1", 56324), ("198.51.100.7", 443)) == (
        V2_SIGNATURE
        + b"\x21\x11\x00\x0c"
        + bytes([192, 0, 2, 1, 198, 51, 100, 7])
        + b"\xdc\x04\x01\xbb"
    )


@given(st.binary(max_size=300), st.integers(0, 300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes, cut: int) -> None:
    try:
        answer, rest = parse(*_split(data, cut))
    except ProxyProtocolError:
        return
    if answer is NO_HEADER:
        assert rest == data
    elif answer is not None:
        assert isinstance(answer, ProxyHeader)
        assert data.endswith(rest)


@given(st.sampled_from([b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", v2(1, 0x11, bytes(12))]), st.data())
def test_any_corruption_is_refused_or_parsed_never_crashes(
    header: bytes, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(header) - 1))
    byte = data.draw(st.integers(0, 255))
    corrupted = header[:index] + bytes([byte]) + header[index + 1 :]
    try:
        parse(corrupted)
    except ProxyProtocolError as error:
        assert str(error).startswith("PROXY v")
