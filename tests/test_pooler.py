"""Migrations and the app behind a real PgBouncer in transaction mode (issue 10's findings)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, pool, text

from migrations import lock as lock_module
from migrations.lock import LOCK_KEY, MigrationLock, PoolerError
from models.db import make_engine
from models.errors import DatabaseError
from models.security import APP_ROLE
from models.settings import Settings
from tests import pgbouncer as pgb
from tests.pgbouncer import PgBouncer, running_pgbouncer
from tests.support import ADVISORY_HERE, PgServer, deploys, migrate, run_alembic

ADVISORY = text(f"SELECT count(*) FROM pg_locks WHERE {ADVISORY_HERE}")


@pytest.fixture
def dbname(pg_server: PgServer) -> Iterator[str]:
    """An empty database of its own, reachable directly and through PgBouncer."""
    with pg_server.database("pooled") as name:
        yield name


@pytest.fixture
def direct(pg_server: PgServer, dbname: str) -> Iterator[Engine]:
    """An engine on the test database, not through the pooler."""
    engine = create_engine(pg_server.url(dbname), poolclass=pool.NullPool)
    yield engine
    engine.dispose()


def as_app_role(server: PgServer) -> PgServer:
    """The server as the app role sees it (it logs in without a password on the test server)."""
    return replace(server, user=APP_ROLE, password=None)


def stack_app_bouncer(server: PgServer, tmp_path: Path) -> PgBouncer:
    """A started PgBouncer that logs in to server as the app role (stop it afterwards)."""
    bouncer = PgBouncer(as_app_role(server), tmp_path / "pgb-app")
    bouncer.start()
    return bouncer


SERVERS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
)
TIMEOUTS = text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")


def server_settings(bouncer: PgBouncer, direct: Engine, dbname: str) -> set[tuple[str, str]]:
    """(lock_timeout, statement_timeout) on every server connection PgBouncer keeps for dbname:
    one more client than there are servers each holds a transaction, so each gets its own."""
    with direct.connect() as conn:
        servers = conn.execute(SERVERS, {"d": dbname}).scalar_one()
    engine = create_engine(bouncer.url(dbname), poolclass=pool.NullPool)
    seen: set[tuple[str, str]] = set()
    with ExitStack() as stack:
        for _ in range(servers + 1):
            conn = stack.enter_context(engine.connect())
            lock_timeout, statement_timeout = conn.execute(TIMEOUTS).one()
            seen.add((lock_timeout, statement_timeout))
    engine.dispose()
    return seen


def test_a_deploy_through_the_pooler_is_refused_before_any_ddl(
    pgbouncer: PgBouncer, direct: Engine, dbname: str
) -> None:
    """Finding 1, 3: a lone `alembic upgrade head` through PgBouncer fails with one line naming
    the URL to set, before any DDL, and leaves no lock and no setting on any server."""
    with pytest.raises(CommandError) as exc:
        migrate(pgbouncer.url(dbname))
    line = str(exc.value)
    assert "goes through a transaction pooler (two connections were handed the same" in line
    assert line.endswith("; nothing was changed")
    assert "set DATABASE_URL_UNPOOLED to the direct URL" in line
    with direct.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None
        assert conn.execute(ADVISORY).scalar_one() == 0
    assert server_settings(pgbouncer, direct, dbname) == {("0", "0")}


def test_a_deploy_through_the_pooler_under_app_load_is_refused_and_leaves_nothing(
    pg_server: PgServer, pgbouncer: PgBouncer, direct: Engine, dbname: str
) -> None:
    """Finding 3: with the app busy through the same PgBouncer, a pooled deploy is refused
    before its revision runs; the app sees no error, and no lock or setting is left."""
    migrate(pg_server.url(dbname), "0001")
    app = create_engine(pgbouncer.url(dbname), pool_size=6)
    done, busy, errors, served = threading.Event(), threading.Event(), [], [0]

    def requests() -> None:
        while not done.is_set():
            try:
                with app.connect() as conn:
                    conn.execute(text("SELECT count(*) FROM tasks"))
                served[0] += 1
                if served[0] >= 10:
                    busy.set()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=requests) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        assert busy.wait(30), errors  # the app is busy through the pooler before the deploy
        with pytest.raises(CommandError, match="goes through a transaction pooler"):
            migrate(pgbouncer.url(dbname))
    finally:
        done.set()
        for thread in threads:
            thread.join()
        app.dispose()
    assert errors == []
    with direct.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
        assert conn.execute(ADVISORY).scalar_one() == 0
    assert server_settings(pgbouncer, direct, dbname) == {("0", "0")}


def test_a_session_pooler_is_not_refused(
    pg_server: PgServer, direct: Engine, dbname: str, tmp_path: Path
) -> None:
    """No false alarm: PgBouncer in session mode keeps one server per client, which is all a
    migration needs, so the deploy runs through it."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    with running_pgbouncer(pg_server, tmp_path / "pgb", pool_mode="session") as bouncer:
        migrate(bouncer.url(dbname))
    with direct.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is not None
        assert conn.execute(ADVISORY).scalar_one() == 0


def test_concurrent_deploys_through_the_pooler_never_share_the_lock(
    pgbouncer: PgBouncer, direct: Engine, dbname: str
) -> None:
    """Finding 1: four `alembic upgrade head` at once through PgBouncer: none of them migrates
    beside another (no foreign unlock, no catalog collision, no deadlock), the ones refused
    say why in one line, and no lock or setting is left behind."""
    # A lock left behind would make the others wait: bounded, so it fails as an assertion.
    env = {"DATABASE_URL": pgbouncer.dsn(dbname), "MIGRATION_LOCK_WAIT_SECONDS": "20"}
    procs = deploys(4, env)
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    log = "\n".join(outputs)
    assert "you don't own a lock" not in log and "Traceback" not in log, log
    refused = [o for o in outputs if "FAILED: " in o]
    assert refused and all("goes through a transaction pooler" in o for o in refused), log
    assert log.count("Running upgrade  -> 0001") <= 1
    with direct.connect() as conn:
        held = conn.execute(text(f"SELECT pid, granted FROM pg_locks WHERE {ADVISORY_HERE}")).all()
    assert held == [], log
    assert server_settings(pgbouncer, direct, dbname) == {("0", "0")}


def test_a_lock_leaked_by_a_pooler_connection_is_named_at_the_deadline(
    pgbouncer: PgBouncer, direct: Engine, dbname: str
) -> None:
    """Finding 2: a lock left on an idle PgBouncer server connection stops a deploy on the
    direct URL after MIGRATION_LOCK_WAIT_SECONDS, with one line naming the holder and how to
    release it; releasing it that way lets the deploy through."""
    leaky = create_engine(
        pgbouncer.url(dbname, application_name="crashed-deploy"), poolclass=pool.NullPool
    )
    with leaky.connect() as conn:  # a session lock through the pooler, never unlocked
        conn.execute(text(f"SELECT pg_advisory_lock({LOCK_KEY})"))
        conn.commit()
    leaky.dispose()
    env = {"DATABASE_URL": direct.url.render_as_string(False), "MIGRATION_LOCK_WAIT_SECONDS": "0.3"}
    result = run_alembic("upgrade", "head", env=env, timeout=30)  # before: waited forever
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    [line] = [line for line in output.splitlines() if line.startswith("FAILED: ")]
    with direct.connect() as conn:
        pid = conn.execute(
            text(f"SELECT pid FROM pg_locks WHERE {ADVISORY_HERE} AND granted")
        ).scalar_one()
    assert line.startswith("FAILED: waited 0.3s (MIGRATION_LOCK_WAIT_SECONDS) for the migration")
    assert f"held by backend pid {pid} (application_name 'crashed-deploy'" in line
    assert f"release it with SELECT pg_terminate_backend({pid})" in line
    with direct.connect() as conn:
        assert conn.execute(text(f"SELECT pg_terminate_backend({pid})")).scalar() is True
    migrate(direct.url)  # the lock is gone: the next deploy goes through


def test_a_lock_held_by_the_pooled_session_is_refused(
    pgbouncer: PgBouncer, direct: Engine, dbname: str
) -> None:
    """Finding 1: the lock is re-entrant per server session, so a run handed a pooled session
    that already holds it refuses instead of "winning" it a second time."""
    engine = create_engine(pgbouncer.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as other:
        other.execute(text(f"SELECT pg_advisory_lock({LOCK_KEY})"))
        other.commit()
    with engine.connect() as conn:
        lock = MigrationLock(conn, {"lock_timeout": "1s"})
        with pytest.raises(PoolerError, match=r"server session \d+ already held the migration"):
            lock.take(1)
    engine.dispose()
    with direct.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE {ADVISORY_HERE}"))


def test_every_transaction_must_reach_the_lock_holder(
    pgbouncer: PgBouncer, direct: Engine, dbname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1, 3: after the lock is taken, a transaction handed another server session is
    refused before its first statement, naming both sessions; no timeout is set for the
    session, only per transaction (SET LOCAL)."""
    monkeypatch.setattr(lock_module, "FREE_PATIENCE", 0.1)  # the holder stays busy below
    engine = create_engine(pgbouncer.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as conn, engine.connect() as squatter:
        lock = MigrationLock(conn, {"lock_timeout": "1234ms"})
        lock.take(1)
        with conn.begin():
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "1234ms"
        raw: Any = conn.connection.dbapi_connection  # a transaction the check does not see
        with raw.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone() == ("0",)  # SET LOCAL ended with its transaction
        raw.rollback()
        squatter.begin()
        holder = squatter.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert holder == lock.pid  # PgBouncer handed the idle lock holder to the next client
        with pytest.raises(PoolerError, match=f"reached server sessions {holder} and") as exc:
            conn.execute(text("SELECT 1"))
        squatter.rollback()
    assert f"release its lock: SELECT pg_terminate_backend({holder})" in str(exc.value)
    engine.dispose()
    with direct.connect() as conn:
        assert conn.execute(text(f"SELECT pg_terminate_backend({holder})")).scalar() is True


def test_a_refused_run_walks_the_pooler_to_its_locks_session(
    pgbouncer: PgBouncer, direct: Engine, dbname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1: a pooler hands a client the session released last, which is the refused
    run's own: its clean-up holds that one and asks again, so it reaches the lock's idle
    session below and frees it (no pg_terminate_backend needed, nothing left)."""
    monkeypatch.setattr(lock_module, "FREE_PATIENCE", 1.0)  # retrying alone: never in time
    engine = create_engine(pgbouncer.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as conn, engine.connect() as other:
        lock = MigrationLock(conn, {"lock_timeout": "1234ms"})
        lock.take(1)
        other.begin()  # the lock's session, now idle, goes to another client...
        assert other.execute(text("SELECT pg_backend_pid()")).scalar_one() == lock.pid
        raw: Any = conn.connection.dbapi_connection  # ...so the run is handed a new one
        with raw.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != lock.pid
        other.rollback()  # the lock's session is idle again, then the run's on top of it
        raw.rollback()
        message = str(lock._abandon("this run's transactions reached two server sessions"))
    engine.dispose()
    assert "pg_terminate_backend" not in message, message
    with direct.connect() as conn:
        assert conn.execute(ADVISORY).scalar_one() == 0
    assert server_settings(pgbouncer, direct, dbname) == {("0", "0")}


def test_the_app_crud_works_through_the_pooler(
    pg_server: PgServer, dbname: str, tmp_path: Path
) -> None:
    """The app's engine and CRUD through PgBouncer (logging in as the app role, as the app
    engine requires): 10 threads, every result right."""
    from sqlmodel import Session

    from models import TaskCreate, TaskUpdate, create_task, delete_task, get_task, update_task

    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    migrate(pg_server.url(dbname))
    bouncer = stack_app_bouncer(pg_server, tmp_path)
    engine = make_engine(bouncer.url(dbname), Settings())

    def worker(n: int) -> int:
        user, done = f"user-{n}", 0
        for i in range(10):
            with Session(engine) as session:
                task = create_task(session, user, TaskCreate(title=f"t{i}"))
                assert task.id is not None
                changed = update_task(session, user, task.id, TaskUpdate(complete=True))
                assert changed is not None and changed.complete
                assert get_task(session, "someone-else", task.id) is None
                done += delete_task(session, user, task.id) is True
        return done

    try:
        with ThreadPoolExecutor(10) as pool_:
            assert list(pool_.map(worker, range(10))) == [10] * 10
    finally:
        engine.dispose()
        bouncer.stop()


def test_a_pooler_restart_reaches_the_app_as_one_line(
    pg_server: PgServer, dbname: str, tmp_path: Path
) -> None:
    """Finding 5: requests during a PgBouncer restart fail with the project's one-line error
    (not a raw driver error), and the app's pool recovers once it is back."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    migrate(pg_server.url(dbname))
    with running_pgbouncer(as_app_role(pg_server), tmp_path / "pgb") as bouncer:
        engine = make_engine(bouncer.url(dbname), Settings(), pool_pre_ping=False)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        bouncer.stop()  # an idle pooled connection is now dead, and nothing listens
        with pytest.raises(DatabaseError) as lost, engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM tasks"))
        with pytest.raises(DatabaseError) as down, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        bouncer.start()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 0
        engine.dispose()
    # Lost at the transaction's first statement (it sets the user): nothing was committed.
    assert "the connection was lost" in str(lost.value) and "\n" not in str(lost.value)
    assert str(down.value).startswith(
        "cannot reach PostgreSQL at postgresql+psycopg2://***@127.0.0.1"
    )


def test_an_autocommit_block_through_the_pooler_is_refused_and_frees_the_lock(
    pgbouncer: PgBouncer, direct: Engine, dbname: str
) -> None:
    """Finding 1, 3: before an autocommit block (CREATE INDEX CONCURRENTLY runs statement by
    statement, which no per-transaction check can pin), a second connection must get another
    session; through PgBouncer it gets the run's own, so the run stops, and its lock and
    session settings are freed on that backend."""
    engine = create_engine(pgbouncer.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as conn:
        lock = MigrationLock(conn, {"lock_timeout": "1234ms"})
        lock.take(1)
        holder = lock.pid
        conn.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(PoolerError, match=f"was handed this run's session {holder}") as exc:
            conn.execute(text("SELECT 1"))
    engine.dispose()
    assert "pg_terminate_backend" not in str(exc.value)  # freed, nothing left to release
    with direct.connect() as conn:
        assert conn.execute(ADVISORY).scalar_one() == 0
    assert server_settings(pgbouncer, direct, dbname) == {("0", "0")}
