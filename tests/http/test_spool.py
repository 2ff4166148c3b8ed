"""BodySpool and ResponseSpool: bodies held in memory, then in a temporary file (buffering).

Its pump to a backend is exercised through a real turnout in
tests/middlewares/test_buffering.py; here, what it holds and how it counts.
"""

from __future__ import annotations

import zlib

from proxy.http.headers import CRLF, LAST_CHUNK, chunk_size_line
from proxy.http.spool import BodySpool, ResponseSpool
from proxy.middlewares.compress import GzipFilter


def chunked_writes(*pieces: bytes) -> list[bytes]:
    """What Exchange.body and body_done send for a chunked body."""
    writes: list[bytes] = []
    for piece in pieces:
        writes += [chunk_size_line(len(piece)), piece, CRLF]
    return [*writes, LAST_CHUNK]


def test_a_small_body_stays_in_memory_and_goes_with_the_head() -> None:
    spool = BodySpool(100, chunked=False, held=[b"abc"])
    spool.write(b"def")
    assert spool.file is None
    assert spool.parts() == [b"abc", b"def"]
    assert (spool.size, spool.payload) == (6, 6)
    assert spool.read_payload() == b"abcdef"


def test_past_the_memory_limit_the_body_moves_to_a_file() -> None:
    spool = BodySpool(10, chunked=False, held=None)
    spool.write(b"x" * 8)
    assert spool.file is None
    spool.write(b"y" * 8)
    assert spool.file is not None and spool.memory == []
    assert spool.parts() is None  # sent by the pump, after the head
    spool.write(b"z" * 4)
    assert spool.read_payload() == b"x" * 8 + b"y" * 8 + b"z" * 4
    file = spool.file
    spool.close()
    assert file.closed and spool.file is None


def test_a_chunked_body_is_held_without_its_framing() -> None:
    pieces = (b"hello", b" wide", b" world" * 10)
    writes = chunked_writes(*pieces)  # the last chunk included
    spool = BodySpool(16, chunked=True, held=writes[:3])
    for data in writes[3:]:
        spool.write(data)
    assert spool.payload == spool.size == sum(len(piece) for piece in pieces)
    assert spool.file is not None
    spool.file.seek(0)
    assert spool.file.read() == b"".join(pieces)  # sent upstream with a Content-Length
    assert spool.read_payload() == b"".join(pieces)
    spool.close()


def test_a_response_filter_inside_buffering_rewrites_what_is_held() -> None:
    spool = ResponseSpool(10, 0, lambda ex: None)
    spool.filter = GzipFilter()
    chosen: list[bytes] = []
    spool.sniff, spool.sniff_size = chosen.append, 8
    assert spool.write(b"abcd")  # below sniff_size: waits, nothing held yet
    assert (chosen, spool.size) == ([], 0)
    assert spool.write(b"efgh" * 10)
    assert chosen == [b"abcd" + b"efgh" * 10]  # decided on the first bytes, once
    assert spool.finish()
    held = spool.first(1 << 20)
    assert spool.size == len(held) and spool.file is not None  # past 10 bytes: in the file
    assert zlib.decompress(held, 31) == b"abcd" + b"efgh" * 10
    spool.close()


def test_the_maximum_bounds_the_filtered_bytes() -> None:
    spool = ResponseSpool(1 << 20, 30, lambda ex: None)
    spool.filter = GzipFilter()
    assert spool.write(b"x" * 1000)  # compresses below 30 bytes
    assert not spool.finish()  # the gzip trailer passes the maximum
    spool.close()
