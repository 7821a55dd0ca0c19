"""Fail closed (issue 18): the app engine refuses a role that row-level security cannot
restrict, every transaction sets its user ('' for none), a savepoint cannot unbind a
session silently, and lost connections, a full pool and unknown errors are one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, Engine, create_engine, pool, text
from sqlalchemy.exc import DataError
from sqlmodel import Session

from models import DatabaseError, TaskCreate, create_task, get_task, list_tasks
from models.db import make_engine
from models.security import APP_ROLE, bind_user, bound_user, create_app_role
from models.settings import Settings
from tests import pgbouncer as pgb
from tests.support import SEED, PgServer, seeded_copy


@pytest.fixture(scope="module")
def fc_db(pg_server: PgServer, head_template: str) -> Iterator[str]:
    """A copy of head with committed rows of two users (alice 2, bob 1)."""
    with seeded_copy(pg_server, head_template, "fc") as name:
        yield name


@pytest.fixture(scope="module")
def admin(pg_server: PgServer) -> Iterator[Engine]:
    """The server's superuser, autocommit (roles, settings, pg_terminate_backend)."""
    engine = create_engine(pg_server.url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def as_role(server: PgServer, dbname: str, role: str = APP_ROLE) -> URL:
    """The URL of dbname as role (roles log in without a password on the test server)."""
    return replace(server, user=role, password=None).url(dbname)


def user_ids(session: Session) -> list[str]:
    """user_id of every row a raw, unfiltered SELECT returns."""
    return list(session.execute(text("SELECT user_id FROM tasks ORDER BY user_id")).scalars())


def refusal(url: URL, **options: Any) -> str:
    """The one line with which the app engine refuses its first connection on url."""
    engine = make_engine(url, Settings(), **options)
    try:
        with pytest.raises(DatabaseError) as refused, engine.connect():
            pass
    finally:
        engine.dispose()
    message = str(refused.value)
    assert "\n" not in message and "connect as the app role todo_app" in message
    return message


# ------------------------------------------------------------ the role the app connects as


def test_the_app_engine_refuses_roles_row_level_security_cannot_restrict(
    pg_server: PgServer, fc_db: str, admin: Engine
) -> None:
    """The owner's URL (a superuser here, a plain role on Neon), a member of the owner role,
    a BYPASSRLS role, a member of a superuser: each refused in one line naming the role;
    the app role is not."""
    roles = {kind: f"fc_{kind}_{id(fc_db)}" for kind in ("owner", "member", "bypass", "super")}
    with admin.connect() as conn:
        for role in roles.values():
            create_app_role(conn, role)
        conn.exec_driver_sql(f'GRANT "{roles["owner"]}" TO "{roles["member"]}"')
        conn.exec_driver_sql(f'ALTER ROLE "{roles["bypass"]}" BYPASSRLS')
        conn.exec_driver_sql(f'GRANT "{pg_server.user}" TO "{roles["super"]}"')
    try:
        assert "role postgres at" in refusal(pg_server.url(fc_db))
        assert "it is a superuser" in refusal(pg_server.url(fc_db))
        found = refusal(as_role(pg_server, fc_db, roles["bypass"]))
        assert f"role {roles['bypass']} at" in found and "it has BYPASSRLS" in found
        found = refusal(as_role(pg_server, fc_db, roles["super"]))
        assert "it can SET ROLE to postgres, a superuser or BYPASSRLS role" in found
        with pg_server.database("owned", template=fc_db) as copy:
            owned = create_engine(pg_server.url(copy), poolclass=pool.NullPool)
            with owned.begin() as conn:
                conn.exec_driver_sql(f'ALTER TABLE tasks OWNER TO "{roles["owner"]}"')
            owned.dispose()
            found = refusal(as_role(pg_server, copy, roles["owner"]))
            assert f"role {roles['owner']} at" in found and "it owns tasks" in found
            found = refusal(as_role(pg_server, copy, roles["member"]))
            assert f"role {roles['member']} at" in found
            assert "it is a member of the owner of tasks" in found
        app = make_engine(as_role(pg_server, fc_db), Settings())
        with app.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == APP_ROLE
        app.dispose()
    finally:
        with admin.connect() as conn:
            for role in roles.values():
                conn.exec_driver_sql(f'DROP ROLE "{role}"')


def test_reachable_tables_without_forced_rls_are_refused(pg_server: PgServer, fc_db: str) -> None:
    """The app role reaching a table whose RLS is not forced, or one without RLS, or
    allowed to TRUNCATE (which ignores RLS): refused, naming the table."""
    with pg_server.database("open", template=fc_db) as name:
        owner = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        steps = [
            ("ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY", "reach tasks, without forced"),
            (
                "ALTER TABLE tasks FORCE ROW LEVEL SECURITY; CREATE TABLE notes (x int); "
                f"GRANT SELECT ON notes TO {APP_ROLE}",
                "reach notes, without forced",
            ),
            (f"DROP TABLE notes; GRANT TRUNCATE ON tasks TO {APP_ROLE}", "TRUNCATE tasks"),
        ]
        for change, expected in steps:
            with owner.begin() as conn:
                conn.exec_driver_sql(change)
            assert expected in refusal(as_role(pg_server, name))
        owner.dispose()


def test_an_admin_engine_opts_out_visibly_and_the_check_runs_once(
    pg_server: PgServer,
    fc_db: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """make_engine(..., admin=True) connects as the owner and logs one warning naming the
    role; the check runs on the engine's first connection only, not per checkout."""
    import models.security

    calls: list[int] = []
    check = models.security.why_unrestricted

    def counted(dbapi_connection: Any) -> tuple[str, str | None]:
        calls.append(1)
        return check(dbapi_connection)

    monkeypatch.setattr(models.security, "why_unrestricted", counted)
    engine = make_engine(pg_server.url(fc_db), Settings(), admin=True)
    with caplog.at_level(logging.WARNING, logger="models"):
        with engine.connect() as one, engine.connect() as two:  # two pooled connections
            rows = one.execute(text("SELECT count(*) FROM tasks")).scalar_one()
            two.execute(text("SELECT 1"))
        for _ in range(3):
            with engine.connect() as again:
                again.execute(text("SELECT 1"))
    engine.dispose()
    assert rows == sum(SEED.values())  # the owner sees every user's rows
    assert calls == [1]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "admin engine: row-level security does not restrict role postgres (it is a superuser)"
    ]


# ------------------------------------------------------ every transaction sets its user


@pytest.fixture(scope="module")
def app(pg_server: PgServer, fc_db: str) -> Iterator[Engine]:
    """The app engine as the app role, one pooled connection (so every session reuses it)."""
    engine = make_engine(as_role(pg_server, fc_db), Settings(), pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def test_a_session_level_setting_left_on_a_pooled_connection_is_not_inherited(
    app: Engine,
) -> None:
    """A debugging `SET app.user_id = 'bob'` (session level) on the app's pooled
    connection: unbound sessions and Core connections still see no rows, bound ones only
    their own."""
    with app.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.execute(text("SET app.user_id = 'bob'"))
        conn.commit()
    try:
        with Session(app) as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
            assert user_ids(session) == []
            session.commit()
            assert user_ids(session) == []  # every transaction, not the first one only
        with app.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 0
        with Session(app) as session:
            bind_user(session, "alice")
            assert user_ids(session) == ["alice", "alice"]
    finally:
        with app.connect() as conn:
            conn.execute(text("RESET app.user_id"))
            conn.commit()


def test_a_setting_left_on_a_pgbouncer_server_connection_is_not_inherited(
    pg_server: PgServer, fc_db: str, tmp_path: Path
) -> None:
    """Through a real PgBouncer (transaction mode, one server connection): another client's
    session-level `SET app.user_id = 'bob'` stays on that server connection; the app's
    unbound transactions still see no rows."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    app_role = replace(pg_server, user=APP_ROLE, password=None)
    with pgb.running_pgbouncer(app_role, tmp_path / "pgb", default_pool_size="1") as bouncer:
        debugging = create_engine(bouncer.url(fc_db), poolclass=pool.NullPool)
        with debugging.connect() as conn:
            conn.execute(text("SET app.user_id = 'bob'"))
            conn.commit()
        with debugging.connect() as conn:  # a plain client now runs as bob: the hazard
            assert conn.execute(text("SELECT user_id FROM tasks")).scalars().all() == ["bob"]
        debugging.dispose()
        engine = make_engine(bouncer.url(fc_db), Settings())
        try:
            for _ in range(3):
                with Session(engine) as session:
                    assert user_ids(session) == []
                    assert list_tasks(session, "alice", with_count=True).count == 2
        finally:
            engine.dispose()


def test_a_rolled_back_savepoint_does_not_unbind_the_session(app: Engine) -> None:
    """bind_user inside a savepoint that rolls back: the session stays bound to bob and
    runs as bob (the rollback undid the setting; it is set again)."""
    with Session(app) as session:
        assert user_ids(session) == []
        savepoint = session.begin_nested()
        bind_user(session, "bob")
        savepoint.rollback()
        assert bound_user(session) == "bob"
        assert user_ids(session) == ["bob"]
        assert list_tasks(session, "bob", with_count=True).count == 1
        with pytest.raises(DataError), session.begin_nested():  # left by a failure
            session.execute(text("SELECT set_config('app.user_id', 'alice', true)"))
            session.execute(text("SELECT 1 / 0"))
        assert user_ids(session) == ["bob"]


def test_a_data_access_call_leaves_an_unbound_transaction_without_a_user(app: Engine) -> None:
    """get_task on an unbound session binds its owner for the call only: a raw statement
    after it, in the same open transaction, sees no rows."""
    with Session(app) as session:
        task_id = list_tasks(session, "alice").tasks[0].id
        session.commit()
        assert get_task(session, "alice", task_id) is not None
        assert session.in_transaction() and bound_user(session) is None
        assert user_ids(session) == []


# ------------------------------------------------ lost connections, a full pool, errors


def test_a_connection_lost_before_the_user_is_set_is_one_line_and_closes_quietly(
    pg_server: PgServer, fc_db: str, admin: Engine
) -> None:
    """The pooled connection killed (pg_terminate_backend) between transactions, pre-ping
    off: the next transaction's user setting fails as one DatabaseError line, close() is
    quiet, and the next session gets a fresh connection."""
    engine = make_engine(as_role(pg_server, fc_db), Settings(), pool_pre_ping=False)
    try:
        with Session(engine) as session:
            bind_user(session, "bob")
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            session.commit()
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(DatabaseError) as lost:
                session.execute(text("SELECT 1"))
        message = str(lost.value)
        assert "\n" not in message and "the connection was lost" in message
        with Session(engine) as session:
            assert list_tasks(session, "bob", with_count=True).count == 1
    finally:
        engine.dispose()


def test_an_exhausted_pool_is_one_line_and_the_session_closes_quietly(
    pg_server: PgServer, fc_db: str
) -> None:
    """Every pooled connection taken: the next session's first statement fails after
    pool_timeout as one DatabaseError line (no TimeoutError), and closes quietly."""
    engine = make_engine(
        as_role(pg_server, fc_db), Settings(), pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    try:
        with engine.connect() as held:
            held.execute(text("SELECT 1"))
            with Session(engine) as session, pytest.raises(DatabaseError) as full:
                list_tasks(session, "alice")
        assert str(full.value).startswith("no free database connection after 0.05s: all 1")
    finally:
        engine.dispose()


def test_errors_carry_no_values(pg_server: PgServer, fc_db: str, admin: Engine) -> None:
    """An id parked by the owner breaks the next create with one line naming the constraint,
    no SQL and no value; a failing statement hides its parameters; a statement timeout is
    one DatabaseError line."""
    with pg_server.database("parked", template=fc_db) as name:
        owner = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        with owner.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tasks (id, user_id, title) OVERRIDING SYSTEM VALUE "
                    "VALUES (nextval(pg_get_serial_sequence('tasks', 'id')) + 1, 'eve', "
                    "'parked secret')"
                )
            )
        owner.dispose()
        engine = make_engine(as_role(pg_server, name), Settings())
        try:
            with Session(engine) as session, pytest.raises(DatabaseError) as parked:
                create_task(session, "alice", TaskCreate(title="my private title"))
            with Session(engine) as session, pytest.raises(Exception) as failed:
                session.execute(text("SELECT :v, 1 / 0"), {"v": "a secret value"})
            with Session(engine) as session, pytest.raises(DatabaseError) as slow:
                session.execute(text("SET LOCAL statement_timeout = 1"))
                session.execute(text("SELECT pg_sleep(1)"))
        finally:
            engine.dispose()
    message = str(parked.value)
    assert message == (
        "the database refused the write (unique_violation on pk_tasks); no value of it is shown"
    )
    assert "secret value" not in str(failed.value) and "parameters hidden" in str(failed.value)
    assert "statement timeout" in str(slow.value) and "\n" not in str(slow.value)
