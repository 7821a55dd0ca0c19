"""Deploy safety: concurrent deploys, lock timeouts, rollback on failure, online indexes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from alembic.util import CommandError
from sqlalchemy import Engine, inspect, text

from models.settings import Settings
from tests.checks import schema_ddl
from tests.support import (
    ROOT,
    PgServer,
    deploys,
    extra_versions,
    head,
    migrate,
    revision,
    run_alembic,
)

FAST = Settings(
    lock_timeout_seconds=0.2, migration_lock_retries=2, migration_retry_pause_seconds=0.1
)
ONE_TRY = Settings(lock_timeout_seconds=0.2, migration_lock_retries=0)
# Deploys released at once in the serialization test: three make a queue (one migrates
# while two wait for the lock); eight proved nothing more and cost ~5 s of the suite.
DEPLOYS = 3


def add_note_column(tmp_path: Path, then: str = "pass") -> str:
    """version_locations with a test-only revision 0099 on head: ALTER TABLE tasks (needs
    an ACCESS EXCLUSIVE lock), then `then`."""
    upgrade = f'op.add_column("tasks", sa.Column("note", sa.Text()))\n{then}'
    return extra_versions(
        tmp_path,
        a0099_test_only=revision("0099", head(), upgrade, 'op.drop_column("tasks", "note")'),
    )


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_concurrent_deploys_serialize(db: Engine) -> None:
    """Three `alembic upgrade head` released at once: all exit 0, each revision runs once."""
    env = {"DATABASE_URL": db.url.render_as_string(False), "MIGRATION_LOCK_TIMEOUT_SECONDS": "60"}
    with db.connect() as gate:
        # A starting gate: every run must read alembic_version, which stays locked until
        # all the processes are connected and waiting, so they really start together.
        gate.execute(
            text(
                "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        gate.commit()
        gate.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        procs = deploys(DEPLOYS, env)
        connected = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'todo-schema-migrate'"
        )
        deadline = time.monotonic() + 60
        while gate.execute(connected).scalar_one() < DEPLOYS and time.monotonic() < deadline:
            gate.execute(text("SELECT pg_stat_clear_snapshot()"))  # fresh view, same transaction
            time.sleep(0.05)
        gate.rollback()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    log = "\n".join(outputs)
    assert [p.returncode for p in procs] == [0] * DEPLOYS, log
    assert log.count("Running upgrade  -> 0001") == 1
    assert log.count(f"-> {head()},") == 1
    assert versions(db) == [head()]


def test_busy_table_gives_up_and_the_app_keeps_working(
    pg_server: PgServer, db: Engine, tmp_path: Path
) -> None:
    """A migration blocked by an open transaction retries, then fails; app queries still run."""
    migrate(db.url)
    before = schema_ddl(pg_server, str(db.url.database))
    app_errors: list[BaseException] = []
    app_queries = 0
    done = threading.Event()

    def app() -> None:
        nonlocal app_queries
        while not done.is_set():
            try:
                with db.connect() as conn:
                    conn.execute(text("SELECT count(*) FROM tasks")).scalar_one()
                app_queries += 1
            except BaseException as exc:  # pragma: no cover - reported below
                app_errors.append(exc)
            time.sleep(0.01)

    with db.connect() as holder:
        holder.execute(text("SELECT * FROM tasks LIMIT 1"))  # ACCESS SHARE, kept open
        thread = threading.Thread(target=app)
        thread.start()
        try:
            with pytest.raises(CommandError) as exc:
                migrate(db.url, settings=FAST, version_locations=add_note_column(tmp_path))
        finally:
            done.set()
            thread.join()
        holder.rollback()
    message = str(exc.value)
    assert message.startswith("revision 0099 was not applied: a table it changes was busy")
    assert "3 tries" in message
    assert app_errors == [] and app_queries > 3
    assert versions(db) == [head()]
    assert schema_ddl(pg_server, str(db.url.database)) == before


def test_failed_revision_rolls_back_only_itself(
    pg_server: PgServer, db: Engine, tmp_path: Path
) -> None:
    """A revision failing halfway is rolled back whole; earlier ones of the run stay applied."""
    with pg_server.database() as at_head:
        migrate(pg_server.url(at_head))
        expected = schema_ddl(pg_server, at_head)
    locations = add_note_column(tmp_path, then='op.execute("SELECT 1 / 0")')
    with pytest.raises(CommandError) as exc:
        migrate(db.url, version_locations=locations)
    assert str(exc.value) == (
        f"revision 0099 failed and was rolled back (division by zero); the database is at {head()}"
    )
    assert versions(db) == [head()]
    assert schema_ddl(pg_server, str(db.url.database)) == expected


def test_failed_revision_from_the_cli_is_one_line(db: Engine, tmp_path: Path) -> None:
    """`alembic upgrade head` with a failing revision: exit non-zero, one FAILED line."""
    locations = add_note_column(tmp_path, then='op.execute("SELECT 1 / 0")')
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        (ROOT / "alembic.ini")
        .read_text()
        .replace("%(here)s", str(ROOT))
        .replace("[alembic]\n", f"[alembic]\nversion_locations = {locations}\n", 1)
    )
    result = run_alembic(
        "-c", str(ini), "upgrade", "head", env={"DATABASE_URL": db.url.render_as_string(False)}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    failed = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert failed == [
        "FAILED: revision 0099 failed and was rolled back (division by zero); "
        f"the database is at {head()}"
    ]


def index_state(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, i.indisvalid FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'tasks'::regclass "
                "AND NOT i.indisprimary"
            )
        ).all()
    return {name: valid for name, valid in rows}


def test_concurrent_index_recovers_from_a_crash(db: Engine) -> None:
    """CREATE INDEX CONCURRENTLY that dies halfway leaves an INVALID index; the rerun repairs it."""
    migrate(db.url, "0001")
    with db.connect() as conn:
        conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('alice', 't')"))
        conn.commit()
    with db.connect() as writer:
        # An open write transaction: the concurrent build must wait for it, and times out.
        writer.execute(text("UPDATE tasks SET complete = true"))
        with pytest.raises(CommandError, match="revision 0002 was not applied"):
            migrate(db.url, "0002", settings=ONE_TRY)
        writer.rollback()
    assert index_state(db) == {"ix_tasks_user_id": True, "ix_tasks_user_id_created_at_id": False}
    assert versions(db) == ["0001"]
    migrate(db.url, "0002")
    assert index_state(db) == {
        "ix_tasks_user_id_created_at_id": True,
        "ix_tasks_user_id_complete_created_at_id": True,
    }
    assert versions(db) == ["0002"]
    migrate(db.url, "0002")  # and once more: nothing to do, nothing breaks


def test_direct_url_is_used_for_migrations(db: Engine) -> None:
    """With DATABASE_URL_UNPOOLED set, alembic migrates through it, not through DATABASE_URL."""
    env = {
        "DATABASE_URL": "postgresql://app:pooled@127.0.0.1:9/unreachable",
        "DATABASE_URL_UNPOOLED": db.url.render_as_string(False),
        "DB_CONNECT_RETRY_SECONDS": "0",
    }
    result = run_alembic("upgrade", "head", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert versions(db) == [head()]


def test_database_ahead_of_the_code_is_explained(db: Engine) -> None:
    """An unknown revision in alembic_version: one line saying the database is newer."""
    migrate(db.url)
    with db.connect() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        conn.commit()
    result = run_alembic("upgrade", "head", env={"DATABASE_URL": db.url.render_as_string(False)})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "FAILED: the database is at revision 0999, which this code does not have" in output


def test_data_survives_upgrade_and_a_down_up_round_trip(db: Engine) -> None:
    """Rows written at 0001 survive upgrade to head and a head -> 0001 -> head round trip."""
    migrate(db.url, "0001")
    insert = text(
        "INSERT INTO tasks (user_id, title, description, complete) "
        "VALUES ('alice', 'é😀 title', NULL, true), ('bob', 'b', 'd', false)"
    )
    with db.connect() as conn:
        conn.execute(insert)
        conn.commit()
        # The columns 0001 made: later revisions may add others (compared by check 5).
        columns = ", ".join(c["name"] for c in inspect(conn).get_columns("tasks"))
        select = text(f"SELECT {columns} FROM tasks ORDER BY id")
        rows = conn.execute(select).all()
    migrate(db.url)
    with db.connect() as conn:
        assert conn.execute(select).all() == rows
    migrate(db.url, "0001", down=True, allow_data_loss=True)
    migrate(db.url)
    with db.connect() as conn:
        assert conn.execute(select).all() == rows
