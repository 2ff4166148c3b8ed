"""Property-based fuzzing of the request parser (issue 3, "How it is checked").

Hypothesis mutates valid requests: bytes among ``\\r \\n \\x00 : , ; SP HTAB``
inserted or replacing others, header lines duplicated or swapped, the input
split into several writes. Each input goes to a real Turnout in front of a
recording backend, and a strict reference parser written here (RFC 9112, with
the refusals issue 3 asks for) says what the input means. The property:

- every request Turnout forwards is one the reference accepted, in order, with
  the same method, target, Host, headers (less hop-by-hop ones, framing and the
  X-Forwarded-* Turnout sets) and body bytes; what reaches the backend is itself
  valid under the strict reference (one framing header, CRLF endings);
- a request the reference refuses is answered 4xx (or the 501 / 505 the issue
  asks for) and is never forwarded, nor is anything after it;
- never another 5xx, never a hang (every expected answer within 1.5 s), never an
  unhandled exception in Turnout's log.

Two leniencies of RFC 9112 that cannot smuggle anything through a proxy that
rebuilds the request line are left to Turnout (it may read them as the reference
does, or refuse): empty lines or stray CR / LF bytes before a request line (2.2),
and runs of spaces between the parts of the request line (3).

Refusing a request the reference accepts is allowed by the property (a proxy may
be stricter than the RFC), but it is counted and printed at the end of the run
(``pytest -s``) so that false refusals are visible.

h11 is not used as the reference: it accepts obs-fold, bare LF line endings
and two equal Content-Length headers, all of which issue 3 requires refused.

The default run is bounded (``TURNOUT_FUZZ_EXAMPLES``, default 3000, well under a
minute); nightly: ``TURNOUT_FUZZ_EXAMPLES=50000 pytest tests/integration/test_fuzz.py``.
A failure is reported as found, with its input, template and mutations, not
shrunk; ``TURNOUT_FUZZ_SHRINK=1`` shrinks it (slow: each attempt may wait for a hang).
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httptools
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.harness import Backend, Turnout, dynamic_for, get

EXAMPLES = int(os.environ.get("TURNOUT_FUZZ_EXAMPLES", "3000"))
# Shrinking a failure costs a hang timeout per attempt: off unless asked for.
SHRINK = os.environ.get("TURNOUT_FUZZ_SHRINK", "") not in ("", "0")
HANG = 1.5  # seconds: longer than this for an expected answer is a hang
ALPHABET = b"\r\n\x00:,; \t"
REFUSALS = set(range(400, 500)) | {501, 505}

# -- the strict reference parser -----------------------------------------------------------

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
FIELD_VCHAR = frozenset([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])
TARGET_CHARS = frozenset(range(0x21, 0x7F)) - {ord("#")}
QDTEXT = frozenset([0x09, 0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F), *range(0x80, 0x100)])
HEX = frozenset(b"0123456789abcdefABCDEF")
HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(?::[0-9]{0,5})?")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
SET_BY_TURNOUT = {
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-real-ip",
}


class Reject(Exception):
    pass


class Incomplete(Exception):
    pass


@dataclass
class Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    host: bytes | None = None
    framing: str = "none"  # none, length, chunked
    keep_alive: bool = True
    lenient: bool = False  # preceded by stray CR/LF bytes: skipping or refusing is fine

    def expected_fields(self) -> list[tuple[str, str]]:
        """The headers a backend must see, less those Turnout owns or drops."""
        listed = set()
        for name, value in self.headers:
            if name.lower() == b"connection":
                listed |= {t.strip().lower().decode("latin-1") for t in value.split(b",")}
        return [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.headers
            if _kept(name.decode("latin-1").lower(), listed)
        ]


def _kept(lname: str, listed: set[str]) -> bool:
    return lname not in HOP_BY_HOP and lname not in SET_BY_TURNOUT and lname not in listed


@dataclass
class Parse:
    requests: list[Request] = field(default_factory=list)
    tail: str = "end"  # end, reject, incomplete, closed (rest ignored after Connection: close)
    reason: str = ""


def _line(data: bytes, pos: int) -> tuple[bytes, int]:
    """One CRLF-terminated line; a bare CR or LF is refused."""
    end = data.find(b"\r\n", pos)
    chunk = data[pos:] if end < 0 else data[pos:end]
    if b"\n" in chunk:
        raise Reject("bare LF")
    cr = chunk.find(b"\r")
    if cr >= 0 and (end >= 0 or pos + cr + 1 < len(data)):
        raise Reject("bare CR")
    if end < 0:
        raise Incomplete
    return chunk, end + 2


def _field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise Reject("obs-fold or whitespace before a field")
    name, colon, value = line.partition(b":")
    if not colon:
        raise Reject("no colon")
    if not name or not all(b in TCHAR for b in name):
        raise Reject(f"bad field name {name!r}")
    value = value.strip(b" \t")
    if not all(b in FIELD_VCHAR for b in value):
        raise Reject("control byte in a field value")
    return name, value


def _fields(data: bytes, pos: int) -> tuple[list[tuple[bytes, bytes]], int]:
    fields = []
    while True:
        line, pos = _line(data, pos)
        if not line:
            return fields, pos
        fields.append(_field(line))


def _chunk_ext(ext: bytes) -> None:
    """``*( ";" token [ "=" ( token / quoted-string ) ] )`` with no whitespace."""
    pos = 0
    while pos < len(ext):
        if ext[pos : pos + 1] != b";":
            raise Reject("bad chunk extension")
        pos += 1
        start = pos
        while pos < len(ext) and ext[pos] in TCHAR:
            pos += 1
        if pos == start:
            raise Reject("empty chunk extension name")
        if ext[pos : pos + 1] == b"=":
            pos += 1
            if ext[pos : pos + 1] == b'"':
                pos += 1
                while True:
                    if pos >= len(ext):
                        raise Reject("unterminated quoted string")
                    byte = ext[pos]
                    if byte == ord('"'):
                        pos += 1
                        break
                    if byte == ord("\\"):
                        if pos + 1 >= len(ext) or ext[pos + 1] not in FIELD_VCHAR:
                            raise Reject("bad quoted pair")
                        pos += 2
                    elif byte in QDTEXT:
                        pos += 1
                    else:
                        raise Reject("bad byte in a quoted string")
            else:
                start = pos
                while pos < len(ext) and ext[pos] in TCHAR:
                    pos += 1
                if pos == start:
                    raise Reject("empty chunk extension value")


def _chunked(data: bytes, pos: int) -> tuple[bytes, int]:
    body = []
    while True:
        line, pos = _line(data, pos)
        size_end = 0
        while size_end < len(line) and line[size_end] in HEX:
            size_end += 1
        if size_end == 0 or size_end > 15:
            raise Reject("bad chunk size")
        _chunk_ext(line[size_end:])
        size = int(line[:size_end], 16)
        if size == 0:
            _, pos = _fields(data, pos)  # trailers: validated, never forwarded
            return b"".join(body), pos
        if len(data) < pos + size + 2:
            if len(data) > pos + size and data[pos + size : pos + size + 1] != b"\r":
                raise Reject("chunk data longer than declared")
            raise Incomplete
        body.append(data[pos : pos + size])
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise Reject("no CRLF after chunk data")
        pos += size + 2


def _host_of_absolute(target: bytes) -> tuple[bytes, bytes]:
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https") or not rest:
        raise Reject("bad absolute-form")
    authority, slash, path = rest.partition(b"/")
    if not authority or b"@" in authority or not HOST.fullmatch(authority):
        raise Reject("bad authority")
    return authority, slash + path if slash else b"/"


def parse_one(data: bytes, pos: int) -> tuple[Request, int]:
    lenient = False
    while data[pos : pos + 1] in (b"\r", b"\n") and pos < len(data):
        # RFC 9112 2.2 lets a server skip empty lines before a request line; stray
        # CR or LF bytes there are left to Turnout: skipped or refused.
        lenient = lenient or data[pos : pos + 2] != b"\r\n"
        pos += 2 if data[pos : pos + 2] == b"\r\n" else 1
    if pos >= len(data):
        raise Incomplete
    line, pos = _line(data, pos)
    parts = [part for part in line.split(b" ") if part]
    if len(parts) != 3:
        raise Reject("request line")
    # RFC 9112 3 lets a recipient split the request line on runs of spaces; Turnout
    # rebuilds the line, so extra spaces are left to it: accepted as read, or refused.
    lenient = lenient or line != b" ".join(parts)
    method, target, version = parts
    if not method or not all(b in TCHAR for b in method):
        raise Reject("method")
    if not target or not all(b in TARGET_CHARS for b in target):
        raise Reject("target")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise Reject("version")
    headers, pos = _fields(data, pos)
    request = Request(method, target, version, headers, lenient=lenient)
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    hosts = by_name.get(b"host", [])
    if len(hosts) > 1:
        raise Reject("two Host")
    if hosts:
        if not HOST.fullmatch(hosts[0]):
            raise Reject("bad Host")
        request.host = hosts[0]
    if target.startswith(b"/"):
        pass
    else:
        request.host, request.target = _host_of_absolute(target)
        request.headers = [(n, v) for n, v in headers if n.lower() != b"host"]
    if version == b"HTTP/1.1" and not hosts:
        raise Reject("HTTP/1.1 without Host")
    tokens = {t.strip().lower() for v in by_name.get(b"connection", []) for t in v.split(b",")}
    if version == b"HTTP/1.1":
        request.keep_alive = b"close" not in tokens
    else:
        request.keep_alive = b"keep-alive" in tokens
    lengths = by_name.get(b"content-length", [])
    codings = by_name.get(b"transfer-encoding", [])
    if len(lengths) > 1 or len(codings) > 1:
        raise Reject("two framing headers")
    if lengths and codings:
        raise Reject("Content-Length and Transfer-Encoding")
    if codings:
        if version != b"HTTP/1.1" or codings[0].lower() != b"chunked":
            raise Reject("Transfer-Encoding")
        request.framing = "chunked"
        request.body, pos = _chunked(data, pos)
    elif lengths:
        if not lengths[0].isdigit() or len(lengths[0]) > 15:
            raise Reject("Content-Length")
        size = int(lengths[0])
        if len(data) < pos + size:
            raise Incomplete
        request.framing = "length"
        request.body = data[pos : pos + size]
        pos += size
    return request, pos


def reference(data: bytes) -> Parse:
    result = Parse()
    pos = 0
    while pos < len(data):
        try:
            request, pos = parse_one(data, pos)
        except Reject as exc:
            result.tail, result.reason = "reject", str(exc)
            return result
        except Incomplete:
            result.tail = "incomplete"
            return result
        result.requests.append(request)
        if not request.keep_alive:
            result.tail = "closed"
            return result
    return result


# -- requests to mutate --------------------------------------------------------------------


def _msg(line: bytes, fields: list[bytes], body: bytes = b"") -> tuple[bytes, list[bytes], bytes]:
    return line, fields, body


TEMPLATES = [
    [
        _msg(
            b"GET /path/a?x=1&y=2 HTTP/1.1",
            [b"Host: example.com", b"User-Agent: fuzz/1.0", b"Accept: */*", b"X-List: one, two"],
        )
    ],
    [
        _msg(
            b"POST /submit HTTP/1.1",
            [b"Host: example.com:8080", b"Content-Type: text/plain", b"Content-Length: 11"],
            b"hello world",
        )
    ],
    [
        _msg(
            b"POST /chunks HTTP/1.1",
            [b"Host: h", b"Transfer-Encoding: chunked", b"X-A: 1"],
            b'5\r\nhello\r\n6;ext=v;q="a b"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n',
        )
    ],
    [
        _msg(b"GET /one HTTP/1.1", [b"Host: a"]),
        _msg(b"PUT /two HTTP/1.1", [b"Host: a", b"Content-Length: 3"], b"abc"),
        _msg(b"GET /three HTTP/1.1", [b"Host: a", b"Accept: text/html"]),
    ],
    [_msg(b"GET /old HTTP/1.0", [b"User-Agent: old"])],
    [_msg(b"GET http://abs.example/p?q=1 HTTP/1.1", [b"Host: abs.example", b"X-B: 2"])],
    [
        _msg(b"GET /first HTTP/1.1", [b"Host: a", b"Connection: close"]),
        _msg(b"GET /second HTTP/1.1", [b"Host: a"]),
    ],
    [
        _msg(
            b"DELETE /x HTTP/1.1",
            [
                b"Host: a",
                b"X-Forwarded-For: 6.6.6.6",
                b"Connection: keep-alive, X-Remove",
                b"X-Remove: gone",
                b"X-Keep: kept",
            ],
        )
    ],
    [
        _msg(
            b"OPTIONS /opt HTTP/1.1",
            [b"Host: a", b"Transfer-Encoding: chunked"],
            b"3\r\nabc\r\n0\r\n\r\n",
        ),
        _msg(b"GET /after HTTP/1.1", [b"Host: a"]),
    ],
]


def serialize(messages) -> bytes:
    out = b""
    for line, fields, body in messages:
        out += line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body
    return out


@st.composite
def mutated(draw) -> tuple[bytes, list[int], str]:
    template = draw(st.sampled_from(range(len(TEMPLATES))))
    messages = [(line, list(fields), body) for line, fields, body in TEMPLATES[template]]
    ops = []
    for _ in range(draw(st.integers(0, 2))):  # structural: duplicate or swap header lines
        index = draw(st.integers(0, len(messages) - 1))
        fields = messages[index][1]
        a = draw(st.integers(0, len(fields) - 1))
        if draw(st.booleans()):
            fields.insert(draw(st.integers(0, len(fields))), fields[a])
            ops.append(f"dup{index}.{a}")
        else:
            b = draw(st.integers(0, len(fields) - 1))
            fields[a], fields[b] = fields[b], fields[a]
            ops.append(f"swap{index}.{a}.{b}")
    data = bytearray(serialize(messages))
    for _ in range(draw(st.integers(0 if ops else 1, 3))):  # bytes
        byte = draw(st.sampled_from(ALPHABET))
        where = draw(st.integers(0, len(data)))
        if draw(st.booleans()) or where == len(data):
            data.insert(where, byte)
            ops.append(f"ins{where}:{bytes([byte])!r}")
        else:
            data[where] = byte
            ops.append(f"rep{where}:{bytes([byte])!r}")
    splits = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=3))))
    return bytes(data), splits, f"template {template}: {' '.join(ops)}"


# -- running one input ---------------------------------------------------------------------


class Answers:
    """Responses read off a client socket with httptools."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.statuses: list[int] = []
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())

    def wait(self, count: int, timeout: float) -> bool:
        """Read until ``count`` answers, a close, or the timeout; True unless timed out."""
        deadline = time.monotonic() + timeout
        while len(self.statuses) < count and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionError:
                data = b""
            if not data:
                self.closed = True
                break
            self.parser.feed_data(data)
        return True

    def wait_closed(self, timeout: float) -> bool:
        self.wait(len(self.statuses) + 1, timeout)
        return self.closed


@dataclass
class Run:
    turnout: Turnout
    backend: Backend
    baseline: dict
    refused_valid: Counter = field(default_factory=Counter)
    refused_examples: list = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Run(port={self.turnout.port})"


def check(run: Run, data: bytes, splits: list[int], label: str) -> None:
    ref = reference(data)
    valid = ref.requests
    backend = run.backend
    backend.settle()  # what the previous example sent is counted there, not here
    seen_requests = len(backend.requests)
    seen_bytes = len(backend.raw_bytes)
    seen_errors = backend.parse_errors
    context = f"{label}\ninput {data!r} splits {splits}\nreference {ref.tail} {ref.reason}"

    with socket.create_connection(("127.0.0.1", run.turnout.port), 3) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bounds = [0, *splits, len(data)]
        try:
            for start, end in itertools.pairwise(bounds):
                sock.sendall(data[start:end])
                if end != len(data):
                    time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the rest was sent
        answers = Answers(sock)
        # Every valid request is answered (200, or a refusal that ends it all) in time.
        assert answers.wait(len(valid), HANG), (
            f"hang: {answers.statuses} of {len(valid)}\n{context}"
        )
        statuses = answers.statuses
        refused = [s for s in statuses if s != 200]
        if not refused:
            if ref.tail == "reject":
                assert answers.wait(len(valid) + 1, HANG), f"hang on a bad request\n{context}"
            elif ref.tail == "incomplete":
                answers.wait(len(valid) + 1, 0.05)
            elif ref.tail == "closed":
                assert answers.wait_closed(HANG), f"not closed after Connection: close\n{context}"
        statuses = answers.statuses
        refused = [s for s in statuses if s != 200]
        if refused:
            assert answers.closed or answers.wait_closed(3), (
                f"left open after {statuses}\n{context}"
            )
    forwarded = statuses[: statuses.index(refused[0])] if refused else statuses

    # Answers: 200s for forwarded requests, then at most one refusal, nothing else.
    assert all(s == 200 for s in forwarded), f"answers {statuses}\n{context}"
    assert len(refused) <= 1, f"answers {statuses}\n{context}"
    if refused:
        assert refused[0] in REFUSALS, f"answered {refused[0]}\n{context}"
    assert len(forwarded) <= len(valid), (
        f"forwarded {len(forwarded)} requests, the reference accepts {len(valid)}\n{context}"
    )
    if ref.tail == "reject" and len(forwarded) == len(valid):
        assert refused, f"a request the reference refuses got no refusal: {statuses}\n{context}"

    # The backend got exactly the forwarded requests, as the reference reads them.
    got = backend.requests[seen_requests:]
    assert len(got) == len(forwarded), (
        f"backend got {[(r.method, r.target) for r in got]}, client saw {statuses}\n{context}"
    )
    for want, have in zip(valid, got, strict=False):
        assert have.method == want.method.decode(), context
        assert have.target == want.target.decode("latin-1"), context
        assert have.body == want.body, context
        if want.host is not None:
            assert have.header_all("host") == [want.host.decode("latin-1")], context
        listed = set()
        for name, value in have.headers:
            if name.lower() == "connection":
                listed |= {t.strip().lower() for t in value.split(",")}
        fields = [(n, v.strip(" \t")) for n, v in have.headers if _kept(n.lower(), listed)]
        want_fields = [(n, v.strip(" \t")) for n, v in want.expected_fields()]
        assert fields == want_fields, f"headers {fields} != {want_fields}\n{context}"
        assert have.header_all("x-forwarded-for") == ["127.0.0.1"], context
        framing = [
            n.lower()
            for n, _ in have.headers
            if n.lower() in ("content-length", "transfer-encoding")
        ]
        expected = {"none": [], "length": ["content-length"], "chunked": ["transfer-encoding"]}
        assert framing == expected[want.framing], f"framing {framing}\n{context}"
    raw = bytes(backend.raw_bytes[seen_bytes:])
    upstream = reference(raw)
    assert len(upstream.requests) == len(got), f"upstream bytes {raw!r}\n{context}"
    allowed_tails = {"end"} if not splits else {"end", "incomplete"}
    assert upstream.tail in allowed_tails and not any(r.lenient for r in upstream.requests), (
        f"what Turnout sent upstream is not strictly valid ({upstream.reason}): {raw!r}\n{context}"
    )
    assert backend.parse_errors == seen_errors, context
    assert run.turnout.process is not None and run.turnout.process.poll() is None, "turnout died"

    run.outcomes[ref.tail] += 1
    if len(forwarded) < len(valid) and not valid[len(forwarded)].lenient:
        run.refused_valid[label.split(":")[0]] += 1
        if len(run.refused_examples) < 20:
            run.refused_examples.append((refused, data))


# -- the test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    backend = Backend().start()
    turnout = Turnout(tmp_path_factory.mktemp("turnout-fuzz"), dynamic_for(backend.url)).start()
    time.sleep(0.3)  # the start-up port probe has come and gone
    state = Run(turnout, backend, turnout.stats())
    yield state
    print(f"\nfuzz outcomes by reference: {dict(state.outcomes)}")
    if state.refused_valid:
        print(f"valid requests Turnout refused, by template: {dict(state.refused_valid)}")
        for statuses, data in state.refused_examples:
            print(f"  {statuses} for {data!r}")
    log = turnout.stderr()
    assert turnout.stop() == 0, log[-3000:]
    backend.stop()
    assert "Traceback" not in log, log[-3000:]


def test_templates_are_forwarded_exactly(run):
    for messages in TEMPLATES:
        data = serialize(messages)
        ref = reference(data)
        assert ref.tail in ("end", "closed") and ref.reason == "", (data, ref)
        before = len(run.backend.requests)
        check(run, data, [], "template")
        assert len(run.backend.requests) - before == len(ref.requests)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutated())
def test_mutated_requests_are_forwarded_as_the_reference_reads_them_or_refused(run, case):
    data, splits, label = case
    check(run, data, splits, label)


def test_turnout_survived_the_fuzz_and_leaks_nothing(run):
    assert "Traceback" not in run.turnout.stderr()
    baseline = run.baseline
    deadline = time.monotonic() + 5
    while True:
        stats = run.turnout.stats()
        # Pooled connections to the backend stay open on purpose; nothing else may.
        back = (
            stats["connections"] == {"web": 0}
            and stats["tasks"] <= baseline["tasks"]
            and stats["fds"] - stats["upstream_open"] <= baseline["fds"]
            and stats["upstream_open"] == stats["upstream_idle"]
        )
        if back or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert back, f"after the fuzz {stats}, before {baseline}"
    assert get(run.turnout.port).status == 200
