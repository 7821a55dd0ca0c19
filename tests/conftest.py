"""Fixtures: one throwaway PostgreSQL per run, migrated once; each test rolled back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlmodel import Session

from models.local import start_server
from tests.support import PgServer, migrate


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """The run's PostgreSQL: TEST_DATABASE_URL's server if set, else a throwaway embedded one."""
    given = os.environ.get("TEST_DATABASE_URL", "").strip()
    if given:
        url = make_url(given)
        host = url.host or str(url.query.get("host", "/tmp"))
        yield PgServer(host, url.port or 5432, url.username or "postgres", url.password)
        return
    # A short path: Unix socket paths are limited to about 100 characters.
    pgdata = Path(tmp_path_factory.mktemp("pg", numbered=True)) / "data"
    server = start_server(pgdata, cleanup_mode="delete")
    info = server.get_postmaster_info()
    yield PgServer(str(info.socket_dir), info.port or 5432)
    server.cleanup()


@pytest.fixture(scope="session")
def engine(pg_server: PgServer) -> Iterator[Engine]:
    """An engine on a database built by `alembic upgrade head` (never by create_all)."""
    with pg_server.database("todo") as name:
        url = pg_server.url(name)
        migrate(url)
        eng = create_engine(url)
        yield eng
        eng.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back when the test ends."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def session(conn: Connection) -> Iterator[Session]:
    """A Session on `conn`; its commits become savepoints, so the test's rollback undoes all."""
    with Session(bind=conn, join_transaction_mode="create_savepoint") as sess:
        yield sess
