"""Tenant isolation enforced by PostgreSQL: connected as the app role, a transaction sees and
changes only the rows of the user it was started for, and nothing without one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, create_engine, pool, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlmodel import Session

from models import TaskCreate, create_task, get_task
from models.db import get_engine
from models.security import (
    APP_ROLE,
    acting_as,
    bind_user,
    bound_user,
    create_app_role,
    get_user_session,
)
from tests import pgbouncer as pgb
from tests.support import (
    SEED,
    PgServer,
    head,
    migrate,
    revision,
    run_alembic,
    run_python,
    seeded_copy,
    with_revisions,
)

OWNER_ROLE = "todo_owner"  # a table owner that is not a superuser (superusers skip RLS)


@pytest.fixture(scope="module")
def rls_db(pg_server: PgServer, head_template: str) -> Iterator[str]:
    """A copy of head with committed rows of two users (alice 2, bob 1)."""
    with seeded_copy(pg_server, head_template, "rls") as name:
        yield name


def app_url(server: PgServer, dbname: str) -> URL:
    """The URL of dbname as the app role (it logs in without a password on the test server)."""
    return replace(server, user=APP_ROLE, password=None).url(dbname)


@pytest.fixture(scope="module")
def app(pg_server: PgServer, rls_db: str) -> Iterator[Engine]:
    """An engine connected as the app role."""
    engine = create_engine(app_url(pg_server, rls_db))
    yield engine
    engine.dispose()


@contextmanager
def session_for(engine: Engine, user: str | None) -> Iterator[Session]:
    """A session bound to user (None: unbound), rolled back at the end."""
    with Session(engine) as session:
        if user is not None:
            bind_user(session, user)
        try:
            yield session
        finally:
            session.rollback()


def user_ids(session: Session) -> list[str]:
    """user_id of every row a raw, unfiltered SELECT returns."""
    return list(session.execute(text("SELECT user_id FROM tasks")).scalars())


def test_a_raw_select_returns_only_the_current_users_rows(app: Engine) -> None:
    """SELECT * FROM tasks with no WHERE: alice gets her 2 rows, bob his 1."""
    for user, count in SEED.items():
        with session_for(app, user) as session:
            assert user_ids(session) == [user] * count


def test_another_users_rows_cannot_be_changed_or_deleted(app: Engine) -> None:
    """UPDATE/DELETE aimed at bob's rows affect 0 rows; moving a row to bob fails."""
    with session_for(app, "alice") as session:
        changed = session.execute(text("UPDATE tasks SET title = 'x' WHERE user_id = 'bob'"))
        deleted = session.execute(text("DELETE FROM tasks WHERE user_id <> 'alice'"))
        assert (changed.rowcount, deleted.rowcount) == (0, 0)  # type: ignore[attr-defined]
        # user_id is not the app role's to update (0011); the policy's WITH CHECK stays behind it
        with pytest.raises(ProgrammingError, match="permission denied for table tasks"):
            session.execute(text("UPDATE tasks SET user_id = 'bob'"))
    with session_for(app, "bob") as session:
        assert user_ids(session) == ["bob"]


def test_inserting_a_row_for_another_user_fails(app: Engine) -> None:
    """alice cannot insert a row owned by bob: the policy's WITH CHECK rejects it."""
    with (
        session_for(app, "alice") as session,
        pytest.raises(ProgrammingError, match='row-level security policy for table "tasks"'),
    ):
        session.execute(text("INSERT INTO tasks (user_id, title) VALUES ('bob', 'spam')"))


@pytest.mark.parametrize(
    "set_up",
    [
        "SELECT 1",
        "SELECT set_config('app.user_id', '', true)",
        "SELECT set_config('app.user_id', 'alice', false); RESET app.user_id",
    ],
    ids=["never-set", "empty", "reset"],
)
def test_no_user_means_no_rows_and_no_writes(app: Engine, set_up: str) -> None:
    """Without a user (never set, '' or RESET): 0 rows read, changed or deleted; inserts fail."""
    with session_for(app, None) as session:
        session.execute(text(set_up))
        assert user_ids(session) == []
        assert session.execute(text("UPDATE tasks SET title = 'x'")).rowcount == 0  # type: ignore[attr-defined]
        assert session.execute(text("DELETE FROM tasks")).rowcount == 0  # type: ignore[attr-defined]
        for user in ("alice", ""):
            with (
                pytest.raises(ProgrammingError, match="row-level security"),
                session.begin_nested(),
            ):
                session.execute(
                    text("INSERT INTO tasks (user_id, title) VALUES (:u, 't')"), {"u": user}
                )


HOSTILE = [
    "alice' OR '1'='1",
    "'; DELETE FROM tasks; --",
    "%",
    "alice%",
    "\\",
    "alice\\",
    "$$; RESET ROLE; $$",
    "x" * 10_000,
]


@pytest.mark.parametrize("user", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_user_ids_are_plain_values(app: Engine, user: str) -> None:
    """Quotes, %, backslashes, 10k characters: a bound value that matches only itself."""
    with session_for(app, user) as session:
        assert session.execute(text("SELECT current_setting('app.user_id')")).scalar() == user
        assert user_ids(session) == []
        assert session.execute(text("DELETE FROM tasks")).rowcount == 0  # type: ignore[attr-defined]
        if len(user) <= 255:
            session.execute(
                text("INSERT INTO tasks (user_id, title) VALUES (:u, 't')"), {"u": user}
            )
            assert user_ids(session) == [user]
    for seeded, count in SEED.items():
        with session_for(app, seeded) as session:
            assert user_ids(session) == [seeded] * count


def test_a_nul_or_blank_user_id_is_a_clean_error(app: Engine) -> None:
    """NUL, '' and whitespace are refused with one readable line before any SQL."""
    for user, why in (("ali\x00ce", "NUL"), ("", "non-empty"), ("  ", "non-empty")):
        with Session(app) as session, pytest.raises(ValueError, match=why) as failed:
            bind_user(session, user)
        assert "\n" not in str(failed.value)
        assert bound_user(session) is None


def test_a_session_serves_one_user(app: Engine) -> None:
    """Binding a second user to a session is refused; the first stays bound."""
    with session_for(app, "alice") as session:
        with pytest.raises(ValueError, match="one session per user"):
            bind_user(session, "bob")
        assert user_ids(session) == ["alice", "alice"]


def test_binding_inside_an_open_transaction_applies_at_once(app: Engine) -> None:
    """bind_user on a session already in a transaction sets the user for that transaction."""
    with session_for(app, None) as session:
        assert user_ids(session) == []
        bind_user(session, "bob")
        assert user_ids(session) == ["bob"]


def test_the_user_does_not_outlive_its_transaction(app: Engine) -> None:
    """After commit the setting is gone from the pooled connection; the next transaction of
    the bound session sets it again."""
    with Session(app) as session:
        bind_user(session, "alice")
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        session.commit()
        assert user_ids(session) == ["alice", "alice"]
    with app.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == pid  # same connection
        setting = conn.execute(text("SELECT current_setting('app.user_id', true)")).scalar()
        assert setting in (None, "")
        assert list(conn.execute(text("SELECT user_id FROM tasks"))) == []


def test_the_data_access_functions_work_through_a_bound_session(app: Engine) -> None:
    """create_task/get_task through a session bound to the same user work as the app role;
    another user's session does not see the task, and cannot be used for its owner."""
    with session_for(app, "carol") as session:
        task = create_task(session, "carol", TaskCreate(title="mine"))
        assert task.id is not None and get_task(session, "carol", task.id) is not None
        tid = task.id
    with session_for(app, "dave") as session:
        assert get_task(session, "dave", tid) is None
        with pytest.raises(ValueError, match="bound to another user"):
            get_task(session, "carol", tid)


def test_acting_as_lets_data_access_serve_an_unbound_session(app: Engine) -> None:
    """acting_as (for the data-access functions): an unbound session works for the block's
    user, commit and refresh included, and is unbound again after; a session bound to
    another user is refused."""
    with session_for(app, None) as session:
        with acting_as(session, "erin"):
            task = create_task(session, "erin", TaskCreate(title="hers"))
        assert task.id is not None and bound_user(session) is None
        with acting_as(session, "frank"):
            assert get_task(session, "frank", task.id) is None
            assert user_ids(session) == []
        with acting_as(session, "erin"):
            assert get_task(session, "erin", task.id) is not None
    with (
        session_for(app, "erin") as session,
        pytest.raises(ValueError, match="another user"),
        acting_as(session, "frank"),
    ):
        pass


def test_get_user_session_binds_the_apps_engine(
    pg_server: PgServer, rls_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_user_session(user) (for a FastAPI dependency) is a session on the app's engine
    whose transactions run for that user."""
    monkeypatch.setenv("DATABASE_URL", app_url(pg_server, rls_db).render_as_string(False))
    monkeypatch.setattr("models.db._engine", None)  # built afresh from DATABASE_URL
    try:
        for session in get_user_session("bob"):
            assert bound_user(session) == "bob"
            assert user_ids(session) == ["bob"]
    finally:
        get_engine().dispose()


APP_ON_THE_EMBEDDED_DEFAULT = """
from alembic.config import main
from sqlalchemy import text
from models.db import get_engine
main(argv=["upgrade", "head"])
with get_engine().connect() as conn:
    print("app connects as", conn.execute(text("SELECT current_user")).scalar())
"""


def test_the_embedded_default_creates_and_uses_the_app_role(memory_path: Path) -> None:
    """With no DATABASE_URL, alembic migrates as the superuser and the app's engine connects
    as the app role, which the embedded default created."""
    done = run_python(
        "-c", APP_ON_THE_EMBEDDED_DEFAULT, env={"LOCAL_PGDATA": str(memory_path / "pgdata")}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"-> {head()}," in done.stderr
    assert f"app connects as {APP_ROLE}" in done.stdout


def test_the_app_role_has_least_privilege(app: Engine) -> None:
    """The app role: no superuser/BYPASSRLS, owns nothing, only DML on tasks, and cannot
    switch row-level security off."""
    with app.connect() as conn:
        role = conn.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles "
                "WHERE rolname = current_user"
            )
        ).one()
        assert tuple(role) == (False, False, False, False)
        owned = conn.execute(
            text("SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole")
        ).scalar()
        assert owned == 0
        granted = conn.execute(
            text(
                "SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',"
                "'REFERENCES','TRIGGER']) p WHERE has_table_privilege('tasks', p)"
            )
        ).scalars()
        # INSERT and UPDATE: on some columns only (tests/test_least_privilege.py).
        assert sorted(granted) == ["DELETE", "SELECT"]
        assert not conn.execute(
            text("SELECT has_table_privilege('alembic_version', 'SELECT')")
        ).scalar()
        for escape in (
            "ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY",
            "DROP POLICY pl_tasks_select ON tasks",
            "SET row_security = off; SELECT * FROM tasks",
        ):
            with pytest.raises(DBAPIError), conn.begin_nested():
                conn.exec_driver_sql(escape)
        conn.rollback()


def test_the_revision_requires_a_safe_app_role(pg_server: PgServer) -> None:
    """`alembic upgrade head` stops with one line when the app role has BYPASSRLS (the
    revision never changes the server-wide role itself; a missing one, and a member of
    the owner: tests/test_least_privilege.py)."""
    admin = create_engine(pg_server.url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    cases = [
        (
            f"ALTER ROLE {APP_ROLE} BYPASSRLS",
            f"ALTER ROLE {APP_ROLE} NOBYPASSRLS",
            f"role {APP_ROLE} is a superuser or has BYPASSRLS",
        ),
    ]
    for change, undo, expected in cases:
        with pg_server.database("role") as name, admin.connect() as conn:
            conn.exec_driver_sql(change)
            try:
                done = run_alembic("upgrade", "head", env={"DATABASE_URL": pg_server.dsn(name)})
            finally:
                conn.exec_driver_sql(undo)
        output = done.stdout + done.stderr
        assert done.returncode != 0
        failed = [line for line in output.splitlines() if line.startswith("FAILED")]
        assert len(failed) == 1 and expected in failed[0], output
        assert "failed and was rolled back" in failed[0] and "Traceback" not in output
    admin.dispose()


# ------------------------------------------------------- many users, shared connections


def interleaved_users(
    app_url: URL, threads: int = 20, rounds: int = 10, pool_size: int = 4
) -> tuple[int, int]:
    """threads workers, one user each, every transaction through a client pool of pool_size
    connections (fewer than threads: users take turns on the same server connections):
    insert a row, then an unfiltered SELECT. Returns (rows of another user seen, server
    connections shared by several users). Works on any URL of the app role: the server, or
    a PgBouncer in transaction mode (pool_size=threads there, so that PgBouncer, not the
    client pool, interleaves the users' transactions on its server connections).
    """
    engine = create_engine(app_url, pool_size=pool_size, max_overflow=0, pool_timeout=30)
    lock = threading.Lock()
    users_of_pid: dict[int, set[str]] = {}

    def worker(n: int) -> int:
        user, foreign = f"load-{n}", 0
        for i in range(rounds):
            with Session(engine) as session:
                bind_user(session, user)
                session.execute(
                    text("INSERT INTO tasks (user_id, title) VALUES (:u, :t)"),
                    {"u": user, "t": f"#{i}"},
                )
                seen = user_ids(session)
                foreign += sum(1 for owner in seen if owner != user)
                foreign += 0 if len(seen) == i + 1 else 1
                pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                session.commit()
            with lock:
                users_of_pid.setdefault(pid, set()).add(user)
        return foreign

    try:
        with ThreadPoolExecutor(threads) as executor:
            foreign = sum(executor.map(worker, range(threads)))
    finally:
        engine.dispose()
    return foreign, sum(1 for users in users_of_pid.values() if len(users) > 1)


def test_twenty_users_on_shared_connections_never_see_each_other(pg_server: PgServer) -> None:
    """20 threads, each transaction for its own user, 4 shared connections: 0 cross-user rows."""
    with pg_server.database("load") as name:
        migrate(pg_server.url(name))
        foreign, shared = interleaved_users(app_url(pg_server, name))
    assert foreign == 0
    assert shared >= 1  # users really took turns on the same server connections


def test_twenty_users_through_pgbouncer_never_see_each_other(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same 20 users through a real PgBouncer in transaction mode, logging in to the
    server as the app role on 4 server connections: 0 cross-user rows, the users'
    transactions interleaved on those connections."""
    if pgb.binary() is None:
        pytest.skip(pgb.MISSING)
    app_role = replace(pg_server, user=APP_ROLE, password=None)
    with (
        pg_server.database("bounced") as name,
        pgb.running_pgbouncer(
            app_role, tmp_path_factory.mktemp("pgb-rls"), default_pool_size="4"
        ) as bouncer,
    ):
        migrate(pg_server.url(name))
        probe = create_engine(bouncer.url(name), poolclass=pool.NullPool)
        with probe.connect() as conn:  # the policies apply: not a superuser behind it
            assert conn.execute(text("SELECT current_user")).scalar_one() == APP_ROLE
        probe.dispose()
        foreign, shared = interleaved_users(bouncer.url(name), pool_size=20)
    assert foreign == 0
    assert shared >= 1


# ------------------------------------------------------------------ the owner's backfill


def test_a_backfill_by_the_owner_updates_every_users_rows(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """Migrations run by a non-superuser owner (FORCE is on): a data revision updates all
    users' rows, through the owner's own policy."""
    admin = create_engine(pg_server.url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        create_app_role(conn, OWNER_ROLE)  # the same attributes: login, nothing more
        # ...but what 0011 needs to set the app role's defaults (Neon's owner role has it)
        conn.exec_driver_sql(f"ALTER ROLE {OWNER_ROLE} CREATEROLE")
        conn.exec_driver_sql(f"GRANT {APP_ROLE} TO {OWNER_ROLE} WITH ADMIN OPTION")
    with pg_server.database("backfill") as name:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" OWNER TO {OWNER_ROLE}')
        owner_url = replace(pg_server, user=OWNER_ROLE, password=None).url(name)
        migrate(owner_url)
        users = [f"user-{n}" for n in range(5)]
        app_engine = create_engine(app_url(pg_server, name), poolclass=pool.NullPool)
        for user in users:
            with Session(app_engine) as session:
                bind_user(session, user)
                create_task(session, user, TaskCreate(title="before"))
        app_engine.dispose()
        backfill = revision(
            "9001", head(), "op.execute(\"UPDATE tasks SET title = title || ' (backfilled)'\")"
        )
        cfg = with_revisions(tmp_path, a9001_backfill=backfill)
        migrate(owner_url, version_locations=cfg.get_main_option("version_locations") or "")
        owner = create_engine(owner_url, poolclass=pool.NullPool)
        with owner.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == OWNER_ROLE
            rows = conn.execute(text("SELECT user_id, title FROM tasks ORDER BY user_id")).all()
        owner.dispose()
    admin.dispose()
    assert [tuple(row) for row in rows] == [(user, "before (backfilled)") for user in users]
