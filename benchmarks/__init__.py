"""Turnout's benchmark suite: `python -m benchmarks --help` (wired to `make bench`).

Layout: __main__ (CLI), runner (start, interleave, medians), scenarios, targets
(direct, turnout, haproxy, nginx, caddy), backends (nginx or the bundled backend.py),
loadgen (bundled uvloop generator), wrk (run + parse), record (result record and
histogram), report (table + JSON), procs (ports, /proc accounting, stop by pid).
"""
