"""Bundled TCP backend for the L4 relay scenarios: uvloop, two listeners.

- echo port: every byte received is written back (small-message round trips);
- bulk port: every byte received asks for one BULK_SIZE (1 MiB) block back.

Reading stops while the kernel send buffer and uvloop's buffer are full (flow
control), so a client that asks faster than it reads cannot grow our memory.

Run: python -m benchmarks.tcp_backend --echo-port P1 --bulk-port P2 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import uvloop

from benchmarks.backend import serve_until_stopped

BULK_SIZE = 1 << 20


def bulk_block() -> bytes:
    pattern = bytes(range(256))
    return pattern * (BULK_SIZE // len(pattern))


class _FlowControlled(asyncio.Protocol):
    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()


class EchoProtocol(_FlowControlled):
    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


class BulkProtocol(_FlowControlled):
    __slots__ = ()
    block = bulk_block()

    def data_received(self, data: bytes) -> None:
        t = self.transport
        if t is None:
            return
        if len(data) == 1:
            t.write(self.block)
        else:
            t.writelines([self.block] * len(data))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tcp_backend", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--echo-port", type=int, required=True)
    ap.add_argument("--bulk-port", type=int, required=True)
    args = ap.parse_args(argv)
    listeners = [(EchoProtocol, args.echo_port), (BulkProtocol, args.bulk_port)]
    uvloop.run(serve_until_stopped(args.host, listeners))


if __name__ == "__main__":
    main()
