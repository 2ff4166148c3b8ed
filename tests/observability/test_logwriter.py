"""The access log's writer process, seen from outside: a real ``turnout run`` and its child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import REPO, dynamic_for, free_port, get, wait_for_port, wait_until


def writers_of(pid: int) -> list[int]:
    """Child processes of ``pid`` running the access log writer."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"proxy.observability.logwriter" in command:
                found.append(int(child))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _static(log: Path) -> str:
    return f'[accessLog]\nfilePath = "{log}"\nformat = "json"\n'


def _count(log: Path) -> int:
    if not log.exists():
        return 0
    text = log.read_text()
    assert text == "" or text.endswith("\n"), "a torn last line"
    return len(text.splitlines())


def test_one_writer_process_formats_the_lines(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "access.json"
    proxy = turnout(dynamic_for(server.url), static_extra=_static(log))
    [writer] = writers_of(proxy.pid)
    for index in range(20):
        assert get(proxy.port, f"/n/{index}").status == 200
    assert wait_until(lambda: _count(log) >= 20, 10), _count(log)
    assert writers_of(proxy.pid) == [writer]
    assert f"accessLog: writer process {writer} started" in proxy.stderr()
    # Batch work: it must not preempt the proxy's loop when a frame arrives.
    policy = int(Path(f"/proc/{writer}/stat").read_text().rsplit(")", 1)[1].split()[38])
    assert policy == os.SCHED_BATCH


def test_a_writer_that_dies_is_replaced_and_logging_goes_on(backend, turnout, tmp_path):
    server = backend()
    log = tmp_path / "access.json"
    proxy = turnout(dynamic_for(server.url), static_extra=_static(log))
    [first] = writers_of(proxy.pid)
    assert get(proxy.port, "/before").status == 200
    assert wait_until(lambda: _count(log) >= 1, 10)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: writers_of(proxy.pid) not in ([], [first]), 10), writers_of(proxy.pid)
    [second] = writers_of(proxy.pid)
    assert "exited with status -9; starting another in 1s" in proxy.stderr()
    assert get(proxy.port, "/after").status == 200
    assert wait_until(lambda: '"/after"' in log.read_text(), 10)
    assert second != first and not alive(first)


def _run(
    tmp_path: Path, server_url: str, extra: str = "", **popen: object
) -> tuple[subprocess.Popen[bytes], int]:
    """``turnout run`` with a JSON access log at tmp_path/access.json, stopped by the test.

    ``extra``: more static configuration (TOML tables).
    """
    port = free_port()
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text(dynamic_for(server_url))
    static = tmp_path / "static.toml"
    static.write_text(
        f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n'
        f'[providers.file]\nfilename = "{dynamic}"\n' + _static(tmp_path / "access.json") + extra
    )
    options: dict[str, object] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    options.update(popen)
    process = subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "proxy.cli", "run", "-c", str(static)], cwd=REPO, **options
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        process.wait()
        raise
    return process, port


def test_a_writer_that_cannot_start_is_retried_less_and_less_often(backend, turnout, tmp_path):
    server = backend()
    folder = tmp_path / "logs"
    log = folder / "access.json"
    proxy = turnout(dynamic_for(server.url), static_extra=_static(log))
    [first] = writers_of(proxy.pid)
    folder.rename(tmp_path / "moved")
    folder.write_text("not a folder")  # the next writer cannot open logs/access.json
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: "starting another in 2s" in proxy.stderr(), 10), proxy.stderr()
    # The writer's own message is a line of Turnout's log, with its level.
    assert wait_until(lambda: f"ERR accessLog: cannot open {log}: " in proxy.stderr(), 5)
    assert get(proxy.port, "/meanwhile").status == 200  # traffic never waits for the log
    folder.unlink()
    folder.mkdir()
    assert wait_until(lambda: len(writers_of(proxy.pid)) == 1, 15), proxy.stderr()
    assert get(proxy.port, "/again").status == 200
    assert wait_until(lambda: log.exists() and '"/again"' in log.read_text(), 10)
    assert "lines lost" in proxy.stderr()  # /meanwhile had no writer: counted, not hidden


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def test_every_line_is_written_before_turnout_exits_and_the_writer_goes_with_it(backend, tmp_path):
    """Ctrl-C reaches the whole process group: the writer ignores it and finishes the lines."""
    server = backend()
    # Its own process group, as in a terminal.
    process, port = _run(tmp_path, server.url, stderr=subprocess.PIPE, start_new_session=True)
    try:
        [writer] = writers_of(process.pid)
        for index in range(300):
            assert get(port, f"/n/{index}").status == 200
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        _reap(process)
    assert process.returncode == 0, err.decode(errors="replace")
    assert _count(tmp_path / "access.json") == 300
    assert wait_until(lambda: not alive(writer), 5)


def test_a_killed_turnout_takes_its_writer_along(backend, tmp_path):
    server = backend()
    process, port = _run(tmp_path, server.url)
    try:
        [writer] = writers_of(process.pid)
        assert get(port, "/").status == 200
        process.kill()
        assert process.wait(10) == -9
    finally:
        _reap(process)
    assert wait_until(lambda: not alive(writer), 5)


def test_inline_formats_in_process(backend, tmp_path):
    server = backend()
    log = tmp_path / "access.json"
    env = {**os.environ, "TURNOUT_ACCESS_LOG_WRITER": "inline"}
    process, port = _run(tmp_path, server.url, env=env)
    try:
        assert writers_of(process.pid) == []
        assert get(port, "/inline").status == 200
        assert wait_until(lambda: '"/inline"' in (log.read_text() if log.exists() else ""), 10)
        process.terminate()
        assert process.wait(15) == 0
    finally:
        _reap(process)


def test_the_writers_own_errors_go_to_log_file_path(backend, tmp_path):
    """At 3 a.m. the operator reads log.filePath: what the writer says must be there."""
    server = backend()
    turnout_log = tmp_path / "turnout.log"
    extra = f'[log]\nfilePath = "{turnout_log}"\n'
    process, port = _run(tmp_path, server.url, extra, stderr=subprocess.PIPE)
    try:
        [first] = writers_of(process.pid)
        log = tmp_path / "access.json"
        log.unlink()
        log.mkdir()  # the next writer cannot open access.json
        os.kill(first, signal.SIGKILL)

        def said() -> str:
            return turnout_log.read_text() if turnout_log.exists() else ""

        assert wait_until(lambda: f"ERR accessLog: cannot open {log}: " in said(), 10), said()
        assert wait_until(lambda: "exited with status 1" in said(), 5), said()
        assert get(port, "/meanwhile").status == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0
        assert b"cannot open" not in stderr  # nothing of it left on stderr
    finally:
        _reap(process)
