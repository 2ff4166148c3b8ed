"""The result record every load generator produces, and the latency histogram."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class LoadResult:
    """One load run, whichever tool produced it. Latencies are in microseconds."""

    tool: str
    requests: int
    duration_s: float
    requests_per_s: float
    p50_us: float
    p99_us: float
    errors: int = 0
    non_2xx: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# CPUs' worth of work by processes other than the proxy, the backend and the load
# generator above which a run is flagged as noisy. Approximate: softirq work for our
# own loopback traffic can land outside our processes' accounting.
NOISY_CORES = 0.5


# --- compact log-linear histogram -------------------------------------------------
#
# Values are integer microseconds. Values below 128 get one bucket each; above that,
# each power of two is split in 64 buckets (relative error <= 1/64, about 1.6 %).
# Index = (shift << 6) + (v >> shift) where shift = v.bit_length() - 7 is contiguous:
# [128, 256) -> 128..191, [256, 512) -> 192..255, ...

HIST_BUCKETS = 2048  # enough for values up to 2**36 us (about 19 hours)
_MAX_US = (1 << 36) - 1


def bucket_index(us: int) -> int:
    if us < 128:
        return us if us > 0 else 0
    if us > _MAX_US:
        us = _MAX_US
    shift = us.bit_length() - 7
    return (shift << 6) + (us >> shift)


def bucket_bounds(idx: int) -> tuple[int, int]:
    """[low, high) microseconds covered by bucket `idx`."""
    if idx < 128:
        return idx, idx + 1
    shift = (idx >> 6) - 1
    low = (idx - (shift << 6)) << shift
    return low, low + (1 << shift)


def percentile(hist: list[int] | dict[int, int], q: float) -> float:
    """The q-th percentile (0 < q <= 100) of a histogram, as a bucket midpoint in us."""
    items = sorted(hist.items()) if isinstance(hist, dict) else list(enumerate(hist))
    total = sum(c for _, c in items)
    if total == 0:
        return 0.0
    rank = max(1, int(total * q / 100.0 + 0.999999))
    seen = 0
    for idx, count in items:
        if not count:
            continue
        seen += count
        if seen >= rank:
            low, high = bucket_bounds(idx)
            return low if high - low == 1 else (low + high - 1) / 2
    low, high = bucket_bounds(items[-1][0])
    return float(low)


def sparse(hist: list[int]) -> dict[int, int]:
    return {i: c for i, c in enumerate(hist) if c}


def merge(hists: list[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for i, c in h.items():
            out[int(i)] = out.get(int(i), 0) + c
    return out
