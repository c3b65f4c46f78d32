"""Throwaway servers the tests may stop and restart for real: a redis-server and a PostgreSQL cluster,
each on its own loopback port and its own data directory, gone when the test run ends."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis as redis_lib


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout}s")


class RedisServer:
    """A redis-server with no persistence: a restart loses every key, as a crashed cache would."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dataflow-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL of its database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait(self._answers, 20, "redis-server")

    def _answers(self) -> bool:
        try:
            return bool(redis_lib.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis_lib.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        """Kill it (SIGKILL: nothing is saved, every queue and job is gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Kill it and start it again, empty, on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop it and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresCluster:
    """A PostgreSQL cluster made with initdb, run with pg_ctl as a non-root user when we are root."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
        if not binaries and shutil.which("pg_ctl") is None:
            raise RuntimeError("PostgreSQL's initdb and pg_ctl are not installed")
        self.bin = Path(binaries[-1]).parent if binaries else Path(shutil.which("pg_ctl")).parent
        self.dir = Path(tempfile.mkdtemp(prefix="dataflow-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def url(self, database: str = "postgres") -> str:
        """A URL for a database of the cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the cluster (crash recovery included, after an immediate stop) and wait for it."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
            "-c shared_buffers=32MB -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop it with pg_ctl's ``fast`` (clients cut, clean shutdown) or ``immediate`` (crash) mode."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """Stop it with ``mode`` and start it again."""
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        """Create a database (dropped first if it is there); return its URL."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop it and delete its files."""
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _major(path: str) -> float:
    with contextlib.suppress(ValueError):
        return float(Path(path).parent.parent.name)
    return 0.0


def kill_process_tree(root: int) -> None:
    """kill -9 of a process and all its descendants at once (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
