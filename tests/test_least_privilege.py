"""The app role may do what the app does, nothing more (revision 0011), and is a role that
row-level security restricts; a first deploy creates it where the migrations may.

As the app role: the data-access functions work (INSERT/UPDATE ... RETURNING, the
updated_at trigger), while choosing an id, drawing from the sequence, rewriting
created_at/updated_at/user_id and temporary tables are refused, and its session defaults
bound statements, lock waits and idle transactions. A member of the tables' owner fails
the revisions' role check."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session

from models import TaskCreate, TaskUpdate, create_task, list_tasks, update_task
from models.policies import APP_ROLE, APP_ROLE_SETTINGS
from tests.support import PgServer, head, migrate, run_alembic

REFUSED = [
    "INSERT INTO tasks (id, user_id, title) OVERRIDING SYSTEM VALUE VALUES (424242, 'alice', 't')",
    "SELECT nextval('tasks_id_seq')",
    "UPDATE tasks SET created_at = now()",
    "UPDATE tasks SET updated_at = now()",
    "UPDATE tasks SET user_id = 'alice'",
    "CREATE TEMP TABLE scratch (n int)",
]
SETTINGS = "SELECT current_setting(name) FROM unnest(CAST(:names AS text[])) name"


@contextmanager
def admin(server: PgServer) -> Iterator[Engine]:
    """An autocommit engine as the server's superuser, on its postgres database."""
    engine = create_engine(server.url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def privileges(server: PgServer, dbname: str) -> tuple[object, ...]:
    """What 0011 changes: table-wide INSERT, sequence USAGE, TEMP, the role's defaults here."""
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT has_table_privilege(:r, 'tasks', 'INSERT'), "
                "has_sequence_privilege(:r, 'tasks_id_seq', 'USAGE'), "
                "has_database_privilege(:r, current_database(), 'TEMP'), "
                "(SELECT setconfig FROM pg_db_role_setting WHERE setrole = to_regrole(:r) AND "
                "setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()))"
            ),
            {"r": APP_ROLE},
        ).one()
    engine.dispose()
    return tuple(found)


@pytest.fixture(scope="module")
def least(pg_server: PgServer, head_template: str) -> Iterator[str]:
    """A database at head whose 0011 ran here (a template copy keeps neither the role's
    defaults nor the database's privileges): 0011 down, checked, and up again."""
    with pg_server.database("least", template=head_template) as name:
        migrate(pg_server.url(name), "0010", down=True)
        assert privileges(pg_server, name) == (True, True, True, None)
        migrate(pg_server.url(name))
        yield name


def test_the_downgrade_gives_back_what_0010_granted(pg_server: PgServer, least: str) -> None:
    """0011 takes table-wide INSERT, the sequence and TEMP and sets the role's defaults;
    its downgrade gives each back as 0010 left it, and the upgrade takes them again."""
    wanted = [f"{name}={value}" for name, value in APP_ROLE_SETTINGS.items()]
    assert privileges(pg_server, least) == (False, False, False, wanted)
    migrate(pg_server.url(least), "0010", down=True)
    assert privileges(pg_server, least) == (True, True, True, None)
    migrate(pg_server.url(least))
    assert privileges(pg_server, least) == (False, False, False, wanted)


def test_the_app_role_writes_only_what_the_app_writes(pg_server: PgServer, least: str) -> None:
    """As the app role: create, update (RETURNING, the updated_at trigger) and list work;
    an id of its choosing, nextval, created_at/updated_at/user_id and TEMP are refused; its
    timeouts are the declared ones."""
    engine = create_engine(replace(pg_server, user=APP_ROLE, password=None).url(least))
    try:
        with Session(engine) as session:
            task = create_task(session, "alice", TaskCreate(title="mine"))
            assert task.id is not None and task.created_at is not None
            changed = update_task(session, "alice", task.id, TaskUpdate(title="still mine"))
            assert changed is not None and changed.updated_at is not None
            assert changed.title == "still mine" and changed.updated_at > task.updated_at  # type: ignore[operator]
            assert [t.id for t in list_tasks(session, "alice").tasks] == [task.id]
        with engine.connect() as conn:
            conn.execute(text("SELECT set_config('app.user_id', 'alice', true)"))
            for statement in REFUSED:
                with (
                    pytest.raises(ProgrammingError, match="permission denied"),
                    conn.begin_nested(),
                ):
                    conn.exec_driver_sql(statement)
            found = conn.execute(text(SETTINGS), {"names": list(APP_ROLE_SETTINGS)}).scalars()
            assert list(found) == list(APP_ROLE_SETTINGS.values())
            conn.rollback()
    finally:
        engine.dispose()


def test_a_member_of_the_tables_owner_fails_the_role_check(
    pg_server: PgServer, head_template: str
) -> None:
    """The app role as an indirect member of the tables' owner: 0010 refuses on a fresh
    deploy, and 0011 on a database already at 0010, each in one line."""
    expected = f"role {APP_ROLE} owns the tables, or is a member (directly or through other"
    with admin(pg_server) as engine, engine.connect() as conn:
        conn.exec_driver_sql("CREATE ROLE lp_owner NOLOGIN; CREATE ROLE lp_middle NOLOGIN")
        conn.exec_driver_sql("GRANT lp_owner TO lp_middle")
        try:
            with pg_server.database("member", template=head_template) as name:
                url = pg_server.url(name)
                migrate(url, "0009", down=True)
                with create_engine(url, poolclass=pool.NullPool).begin() as db:
                    db.exec_driver_sql("ALTER TABLE tasks OWNER TO lp_owner")
                conn.exec_driver_sql(f"GRANT lp_middle TO {APP_ROLE}")
                with pytest.raises(CommandError, match="revision 0010 failed") as fresh:
                    migrate(url)
                conn.exec_driver_sql(f"REVOKE lp_middle FROM {APP_ROLE}")
                migrate(url, "0010")
                conn.exec_driver_sql(f"GRANT lp_middle TO {APP_ROLE}")
                with pytest.raises(CommandError, match="revision 0011 failed") as upgrade:
                    migrate(url)
        finally:
            conn.exec_driver_sql(f"REVOKE lp_middle FROM {APP_ROLE}")
            conn.exec_driver_sql("DROP ROLE lp_middle; DROP ROLE lp_owner")
    for failed in (fresh, upgrade):
        assert expected in str(failed.value) and "\n" not in str(failed.value)


def test_the_first_deploy_creates_the_app_role_without_a_login(
    pg_server: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    """On a server without the app role, `alembic upgrade head` as a role that may create
    roles creates it NOLOGIN and says in one line how to give it a login; as a role that
    may not, 0010 refuses as before, saying how to create it."""
    away = f"{APP_ROLE}_away"
    with admin(pg_server) as engine, engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER ROLE {APP_ROLE} RENAME TO {away}")
        conn.exec_driver_sql("CREATE ROLE lp_deployer LOGIN")
        try:
            with pg_server.database("first") as name:
                done = run_alembic("upgrade", "head", env={"DATABASE_URL": pg_server.dsn(name)})
                created = conn.execute(
                    text(
                        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles "
                        "WHERE rolname = :r"
                    ),
                    {"r": APP_ROLE},
                ).one()
            conn.exec_driver_sql(f"DROP ROLE {APP_ROLE}")
            with pg_server.database("refused") as name:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" OWNER TO lp_deployer')
                deployer = replace(pg_server, user="lp_deployer", password=None)
                with caplog.at_level(logging.WARNING), pytest.raises(CommandError) as refused:
                    migrate(deployer.url(name))
        finally:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {APP_ROLE}; DROP ROLE lp_deployer")
            conn.exec_driver_sql(f"ALTER ROLE {away} RENAME TO {APP_ROLE}")
    output = done.stdout + done.stderr
    assert done.returncode == 0 and f"-> {head()}," in output, output
    told = [line for line in output.splitlines() if "ALTER ROLE todo_app LOGIN PASSWORD" in line]
    assert len(told) == 1 and "Created the app role todo_app (NOLOGIN" in told[0], output
    assert tuple(created) == (False, False, False, False)
    assert f"role {APP_ROLE} does not exist: create it first" in str(refused.value)
    assert "Created the app role" not in caplog.text
