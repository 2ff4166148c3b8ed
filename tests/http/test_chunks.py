"""ChunkScanner follows chunk framing over raw bytes and refuses bad chunk extensions."""

from __future__ import annotations

import pytest

from proxy.http.chunks import MAX_EXTENSION_BYTES, ChunkScanner
from proxy.http.errors import BadRequest

BODY = b'5;name=value;quoted="a \\" b"\r\nhello\r\n3 ; x\r\nabc\r\n0\r\nTrailer: yes\r\n\r\n'


def scan(*pieces: bytes) -> ChunkScanner:
    scanner = ChunkScanner()
    for piece in pieces:
        scanner.feed(piece)
    return scanner


def test_valid_body_is_followed_to_its_end_whatever_the_reads() -> None:
    assert scan(BODY).done
    # Split at every byte: the scanner's state carries across reads.
    assert scan(*(BODY[i : i + 1] for i in range(len(BODY)))).done
    assert not scan(BODY[:-1]).done


def test_bytes_after_the_end_belong_to_the_next_message() -> None:
    scanner = scan(BODY + b"GET / HTTP/1.1\r\n")
    assert scanner.done


@pytest.mark.parametrize(
    "line",
    [b"5;", b"5;a;;b", b"5;=v", b"5;a=", b"5;a b", b"5;a\x00", b'5;a="x', b"x5", b"5\x0b"],
)
def test_bad_chunk_lines_are_refused(line: bytes) -> None:
    with pytest.raises(BadRequest):
        scan(line + b"\r\nhello\r\n0\r\n\r\n")


def test_extensions_over_the_limit_in_one_line_or_in_total() -> None:
    long_line = b"1;" + b"a" * MAX_EXTENSION_BYTES + b"\r\nx\r\n0\r\n\r\n"
    with pytest.raises(BadRequest):
        scan(long_line)
    many = b"".join(b"1;" + b"e" * 999 + b"\r\nx\r\n" for _ in range(5)) + b"0\r\n\r\n"
    with pytest.raises(BadRequest):
        scan(many)
    # Just under the limit in total is fine.
    fine = b"".join(b"1;" + b"e" * 999 + b"\r\nx\r\n" for _ in range(4)) + b"0\r\n\r\n"
    assert scan(fine).done


def test_a_size_line_that_never_ends_is_refused_before_it_grows_unbounded() -> None:
    scanner = ChunkScanner()
    with pytest.raises(BadRequest):
        for _ in range(100):
            scanner.feed(b"1;" + b"a" * 100)
