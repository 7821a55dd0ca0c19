"""Fixtures: one throwaway PostgreSQL per run, migrated once; each test rolled back."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, pool
from sqlmodel import Session

from tests import pgbouncer as pgb
from tests.checks import SchemaCheckError
from tests.support import PgServer, in_memory, migrate, open_server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed schema check reports its message (the reason, then the diff), no traceback."""
    report = yield
    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(SchemaCheckError):
        longrepr = call.excinfo.getrepr(style="value")
        if longrepr.reprcrash is not None:  # the -ra summary line: the reason, not the class
            longrepr.reprcrash.message = str(call.excinfo.value).splitlines()[0]
        report.longrepr = longrepr
    return report


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """The run's PostgreSQL: TEST_DATABASE_URL's server if set, else a throwaway embedded one."""
    with open_server(tmp_path_factory.mktemp("pg", numbered=True), durable=False) as server:
        yield server


@pytest.fixture
def memory_path(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory (tmpfs, see support.in_memory) for a test's own embedded server."""
    with in_memory(tmp_path) as home:
        yield home


@pytest.fixture(scope="session")
def pgbouncer(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pgb.PgBouncer]:
    """A real PgBouncer in transaction mode in front of the run's PostgreSQL (127.0.0.1 only).

    Skips, naming the Debian package, where the pgbouncer program is not installed.
    """
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    with pgb.running_pgbouncer(pg_server, tmp_path_factory.mktemp("pgb")) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def engine(pg_server: PgServer) -> Iterator[Engine]:
    """An engine on a database built by `alembic upgrade head` (never by create_all)."""
    with pg_server.database("todo") as name:
        url = pg_server.url(name)
        migrate(url)
        eng = create_engine(url)
        yield eng
        eng.dispose()


@pytest.fixture(scope="session")
def head_template(pg_server: PgServer) -> Iterator[str]:
    """A database that `alembic upgrade head` built, to copy (CREATE DATABASE ... TEMPLATE)
    for tests that start at head: a copy takes 0.02 s, the upgrade 0.15 s."""
    with pg_server.database("head") as name:
        migrate(pg_server.url(name))  # NullPool: no connection stays open to block a copy
        yield name


@pytest.fixture
def db(pg_server: PgServer) -> Iterator[Engine]:
    """An empty database of its own (dropped afterwards) and an engine on it."""
    with pg_server.database() as name:
        engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        yield engine
        engine.dispose()


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
