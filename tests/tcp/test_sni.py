"""ClientHello peeking: real ClientHellos from Python's ssl module, cut at every length."""

from __future__ import annotations

import ssl

import pytest

from proxy.tcp.sni import MAX_PEEK, Hello, peek_hello


def client_hello(server_name: str | None, alpn: list[str] | None = None) -> bytes:
    context = ssl.create_default_context()
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_sni_and_alpn_are_read_without_consuming() -> None:
    hello = client_hello("Db1.Example.COM.", ["h2", "postgresql"])
    assert peek_hello(hello) == Hello(True, "db1.example.com", ("h2", "postgresql"))


def test_every_cut_short_of_the_record_asks_for_more() -> None:
    hello = client_hello("db.example")
    for cut in range(1, len(hello)):
        answer = peek_hello(hello[:cut])
        assert answer is None, cut
    assert peek_hello(hello + b"extra bytes after the record") == Hello(True, "db.example", ())


def test_tls_without_sni_and_not_tls() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    assert peek_hello(outgoing.read()) == Hello(True, "", ())
    assert peek_hello(b"GET / HTTP/1.1\r\n") == Hello(False)
    assert peek_hello(b"\x00\x00\x00\x08\x04\xd2\x16\x2f") == Hello(False)  # PostgreSQL SSLRequest
    assert peek_hello(b"") is None


def test_garbage_in_a_tls_record_is_tls_without_a_name() -> None:
    record = b"\x16\x03\x01\x00\x05" + b"\x01\x00\x00\xff\xff"
    assert peek_hello(record) == Hello(True)
    assert peek_hello(b"\x80\x2e\x01") == Hello(True)  # SSLv2-compatible hello


def test_the_largest_record_fits_the_bound() -> None:
    header = b"\x16\x03\x01\xff\xff"
    assert peek_hello(header + b"\x00" * 100) is None
    assert peek_hello(header + b"\x01" * 0xFFFF) == Hello(True)
    assert len(header) + 0xFFFF == MAX_PEEK
