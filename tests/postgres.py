"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, pg_ctl on a
free loopback port, trust authentication on loopback only, removed afterwards.

The server binaries come from the Debian ``postgresql-15`` package (or ``$ICLOPT_PG_BIN``).
``initdb`` refuses to run as root, so as root the cluster belongs to the unprivileged
``postgres`` user. Without the binaries the tests that need the server skip, saying why;
CI sets ``ICLOPT_REQUIRE_POSTGRES=1`` so that they fail instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("ICLOPT_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _unavailable(why: str) -> None:
    if os.environ.get("ICLOPT_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (ICLOPT_REQUIRE_POSTGRES=1): {why}")
    pytest.skip(f"needs a PostgreSQL server: {why}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT`` of a fresh cluster (session-wide)."""
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            _unavailable(f"{PG_BIN / tool} is missing (apt-get install postgresql-15)")
    try:
        import psycopg
    except ImportError:
        _unavailable("the psycopg driver is missing (pip install 'iclopt[postgres]')")
    run_as: list[str] = []
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to own the cluster")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="iclopt-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user is not None:
        for p in (root, sock):
            os.chown(p, user.pw_uid, user.pw_gid)
    port = _free_port()
    log = root / "server.log"

    def run(*cmd: str) -> None:
        proc = subprocess.run(
            [*run_as, *cmd], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            pytest.fail(f"{cmd[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")

    try:
        run(
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-o",
            f"-p {port} -k {sock} -h 127.0.0.1 -c fsync=off -c max_connections=60",
            "start",
        )
        base = f"postgresql://postgres@127.0.0.1:{port}"
        for _ in range(50):
            try:
                psycopg.connect(f"{base}/postgres").close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        yield base
    finally:
        subprocess.run(
            [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server, for one test."""
    import psycopg

    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
