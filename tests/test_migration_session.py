"""env.py's session: any connectable, a caller's transaction joined, every wait bounded."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
from pathlib import Path

import pytest
import pytest_alembic
import pytest_alembic.tests.experimental as experimental
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pytest_alembic.plugin.error import AlembicTestFailure
from pytest_alembic.tests.experimental.downgrade_leaves_no_trace import WrappingConnection
from sqlalchemy import Engine, create_engine, pool, text

from models.db import neon_direct, parse_url, resolve_url
from models.settings import Settings
from tests import synthetic
from tests.support import (
    ADVISORY_HERE,
    PgServer,
    alembic_config,
    extra_versions,
    head,
    migrate,
    revision,
)

FAST = Settings(
    lock_timeout_seconds=0.2, migration_lock_retries=2, migration_retry_pause_seconds=0.1
)


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        return set(found.scalars())


def non_transactional_revisions(cfg: Config | None = None) -> list[str]:
    """Revisions that need an autocommit block (CREATE INDEX CONCURRENTLY and the like),
    base first."""
    script = ScriptDirectory.from_config(cfg or alembic_config())
    return [
        rev.revision
        for rev in reversed(list(script.walk_revisions()))
        if "autocommit_block" in inspect.getsource(rev.module)
        or "_concurrently(" in inspect.getsource(rev.module)
    ]


def test_a_callers_open_transaction_is_joined_not_committed(db: Engine) -> None:
    """Finding 6: upgrade on a connection inside the caller's transaction runs in it; the
    caller's rollback undoes it all (no commit, no lock or setting left for the session)."""
    with db.connect() as conn:
        conn.begin()
        command.upgrade(alembic_config(conn, FAST), "0001")
        assert "tasks" in tables_on(conn)
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "200ms"  # SET LOCAL
        conn.rollback()
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
    assert tables(db) == set()


def tables_on(conn: object) -> set[str]:
    found = conn.execute(  # type: ignore[attr-defined]
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    )
    return set(found.scalars())


def test_any_connectable_works(db: Engine) -> None:
    """Finding 6: anything with .connect() (pytest-alembic's wrapper, as Alembic's cookbook
    allows) is migrated itself, not some other connection."""
    with db.connect() as conn:
        conn.begin()
        command.upgrade(alembic_config(WrappingConnection(conn)), "0001")  # type: ignore[arg-type]
        assert "tasks" in tables_on(conn)
        conn.rollback()
    assert tables(db) == set()


def test_a_single_connection_engine_migrates_to_head(db: Engine) -> None:
    """A caller's engine with one connection (StaticPool): the pooler probe gets that same
    connection, sees one client, and the run (CONCURRENTLY blocks included) goes through."""
    single = create_engine(db.url, poolclass=pool.StaticPool)
    try:
        with single.connect() as conn:
            command.upgrade(alembic_config(conn), "head")
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            locks = conn.execute(text(f"SELECT count(*) FROM pg_locks WHERE {ADVISORY_HERE}"))
            assert (version, locks.scalar()) == (head(), 0)
    finally:
        single.dispose()


def test_a_concurrent_revision_in_a_callers_transaction_says_why(db: Engine) -> None:
    """A revision that needs an autocommit block refuses, in one line, to run inside a
    caller's transaction (it would have to commit it)."""
    [rev, *_] = non_transactional_revisions()
    with db.connect() as conn:
        conn.begin()
        with pytest.raises(CommandError, match=f"revision {rev} cannot run inside the caller's"):
            command.upgrade(alembic_config(conn), rev)
        conn.rollback()


def downgrade_leaves_no_trace(server: PgServer, cfg: Config) -> None:
    """pytest-alembic's experimental test on a fresh database, skipping (with its own
    skip_revisions) the revisions that cannot run inside its transaction."""
    skipped = non_transactional_revisions(cfg)
    with server.database("pytest_alembic") as dbname:
        engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
        config = pytest_alembic.Config(alembic_config=cfg, skip_revisions=skipped)
        try:
            with pytest_alembic.runner(config=config, engine=engine) as alembic_runner:
                experimental.test_downgrade_leaves_no_trace(alembic_runner)
        finally:
            engine.dispose()


def test_pytest_alembic_downgrade_leaves_no_trace(pg_server: PgServer) -> None:
    """Finding 6: pytest-alembic's experimental test passes for every transactional revision
    (0002 builds its indexes CONCURRENTLY, so it is skipped)."""
    assert "0002" in non_transactional_revisions()
    downgrade_leaves_no_trace(pg_server, alembic_config())


def test_pytest_alembic_downgrade_leaves_no_trace_can_fail(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """The same test, run the same way, catches a downgrade that forgets its column (on a
    synthetic history: tests/synthetic.py)."""
    add = 'op.add_column("items", sa.Column("extra", sa.Text()))'
    cfg = synthetic.history(tmp_path, a0002=revision("0002", "0001", add, "pass"))
    with pytest.raises(AlembicTestFailure, match="post-'0002'-downgrade"):
        downgrade_leaves_no_trace(pg_server, cfg)


def test_a_busy_version_table_is_retried(db: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Finding 4: a lock timeout on alembic_version (before any revision) is retried like a
    revision's, and logged as what it is: the run succeeds once the lock is gone."""
    migrate(db.url, "0001")
    busy = threading.Event()

    class OnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            busy.set()

    handler = OnRetry(logging.WARNING)
    logging.getLogger("models").addHandler(handler)
    try:
        with db.connect() as holder, caplog.at_level(logging.WARNING, logger="models"):
            holder.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))

            # Released once the first try has timed out and said so, however slow the machine.
            def release_after_first_try() -> None:
                busy.wait(30)
                holder.rollback()

            release = threading.Thread(target=release_after_first_try)
            release.start()
            patient = dataclasses.replace(FAST, migration_lock_retries=8)
            migrate(db.url, settings=patient)
            release.join()
    finally:
        logging.getLogger("models").removeHandler(handler)
    assert "The version table alembic_version was busy (lock_timeout); try 2 of 9" in caplog.text
    with db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()


def test_a_busy_version_table_is_explained(db: Engine) -> None:
    """Finding 4: a version table locked through every retry is reported as what it is, not
    as a connection problem."""
    migrate(db.url, "0001")
    quick = Settings(
        lock_timeout_seconds=0.1, migration_lock_retries=1, migration_retry_pause_seconds=0.05
    )
    with db.connect() as holder:
        holder.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(CommandError) as exc:
            migrate(db.url, settings=quick)
        holder.rollback()
    assert str(exc.value) == (
        "the version table alembic_version was busy: another transaction holds a lock on it "
        "(lock_timeout 0.1s, 2 tries); nothing was applied; run the deploy again once that "
        "transaction has finished"
    )


def test_where_the_database_stands_is_read_afresh(db: Engine, tmp_path: Path) -> None:
    """Finding 4: after a revision loses its connection, "the database is at" is read again
    on a new one (the run's own view is gone), not reported as unknown or stale."""
    kill = 'op.execute("SELECT pg_terminate_backend(pg_backend_pid())")'
    locations = extra_versions(tmp_path, a0099_test_only=revision("0099", head(), kill))
    migrate(db.url)
    with pytest.raises(CommandError) as exc:
        migrate(db.url, version_locations=locations)
    message = str(exc.value)
    assert message.startswith("revision 0099 failed and was rolled back (")
    assert message.endswith(f"; the database is at {head()}")


def test_neon_pooled_host_migrates_through_its_direct_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neon's `-pooler` host: migrations use the endpoint without -pooler, said in one line;
    the app keeps the pooled host; other hosts are left alone."""
    pooled = "postgresql://u:p@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/db"
    settings = Settings(database_url=pooled)
    with caplog.at_level(logging.INFO, logger="models"):
        url = resolve_url(settings, for_migrations=True)
    assert url.host == "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
    assert "migrating through its direct host ep-cool-darkness-123456.us-east-2" in caplog.text
    assert resolve_url(settings).host == "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
    assert neon_direct(parse_url("postgresql://u:p@db-pooler.example.com/db")) is None
    assert neon_direct(parse_url("postgresql://u:p@ep-x.us-east-2.aws.neon.tech/db")) is None
