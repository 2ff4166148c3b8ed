"""Real database servers for TCP tests: PostgreSQL (initdb in a temporary folder, run as the
postgres user) and Redis, each on a free loopback port and stopped by its process id."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.harness import free_port, wait_for_port
from tests.runtime.support import require_binary


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return require_binary(name)  # skips, or fails with CI=true


class Postgres:
    def __init__(self) -> None:
        initdb, postgres = postgres_bin("initdb"), postgres_bin("postgres")
        account = pwd.getpwnam("postgres")
        # Not pytest's tmp_path: its parents are root-only, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="turnout-pg-"))
        os.chown(self.root, account.pw_uid, account.pw_gid)
        data = self.root / "data"
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        subprocess.run(
            [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            cwd=self.root,
            **run_as,  # type: ignore[arg-type]
        )
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                postgres,
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "postgres.log").open("wb"),
            cwd=self.root,
            **run_as,  # type: ignore[arg-type]
        )
        wait_for_port(self.port, timeout=30)
        # Listening is not accepting queries yet: wait until a query answers.
        deadline = time.monotonic() + 30
        while self.psql(self.port, "select 1").returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError((self.root / "postgres.log").read_text())
            time.sleep(0.2)

    @staticmethod
    def psql(port: int, query: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                require_binary("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                query,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                require_binary("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
