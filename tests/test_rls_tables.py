"""Row-level security for every table the app role can touch, on synthetic tables: a child
table declared through its parent isolates users as the app role, its plan still on both
tables' indexes; autogenerate protects a newly declared table in one call and writes the
fix for a weakened one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.exc import ProgrammingError

from models.policies import APP_ROLE, Access, own_rows_only
from tests.checks import check_row_level_security
from tests.support import PgServer, migrate
from tests.synthetic import (
    TENANT_TABLES,
    declared_tenant_tables,
    history,
    tenant_history,
    tenant_metadata,
)

# Enough rows that the planner picks indexes on its own (ANALYZE'd, nothing switched off).
SEED = """
INSERT INTO folders (user_id, name) SELECT 'user-' || g, 'f' FROM generate_series(1, 3000) g;
INSERT INTO folders (user_id, name) VALUES ('alice', 'a'), ('bob', 'b');
INSERT INTO notes (folder_id, body) SELECT f.id, 'n' || g FROM folders f, generate_series(1, 3) g;
ANALYZE folders; ANALYZE notes;
"""


@pytest.fixture(scope="module")
def tenants(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine as the app role on tenant_history's head, with 3002 users' folders and notes."""
    cfg = tenant_history(tmp_path_factory.mktemp("tenants"))
    with pg_server.database("tenants") as name:
        migrate(
            pg_server.url(name), version_locations=str(cfg.get_main_option("version_locations"))
        )
        owner = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        with owner.begin() as conn:
            conn.exec_driver_sql(SEED)
        owner.dispose()
        engine = create_engine(replace(pg_server, user=APP_ROLE, password=None).url(name))
        yield engine
        engine.dispose()


@contextmanager
def as_user(engine: Engine, user: str) -> Iterator[Connection]:
    """A transaction as the app role for user, rolled back at the end."""
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
        try:
            yield conn
        finally:
            transaction.rollback()


def folder_of(conn: Connection, user: str) -> int:
    """The id of user's folder, read as that user."""
    conn.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
    found = conn.execute(text("SELECT id FROM folders")).scalar_one()
    return int(found)


def test_a_child_table_isolates_users_through_its_parent(tenants: Engine) -> None:
    """As the app role, alice sees 0 of bob's notes, cannot insert one under bob's folder,
    nor move hers there, nor change or delete his; her own work, RETURNING included."""
    with tenants.connect() as conn, conn.begin():
        bobs = folder_of(conn, "bob")
    with as_user(tenants, "alice") as conn:
        mine = folder_of(conn, "alice")
        count = "SELECT count(*) FROM notes"
        assert conn.execute(text(count)).scalar() == 3
        assert conn.execute(text(f"{count} WHERE folder_id = :f"), {"f": bobs}).scalar() == 0
        for stolen in (
            "INSERT INTO notes (folder_id, body) VALUES (:f, 'spam')",
            "UPDATE notes SET folder_id = :f WHERE folder_id = :mine",
        ):
            with pytest.raises(ProgrammingError, match="row-level security"), conn.begin_nested():
                conn.execute(text(stolen), {"f": bobs, "mine": mine})
        for blind in ("UPDATE notes SET body = 'x' WHERE folder_id = :f", "DELETE FROM notes"):
            done = conn.execute(text(blind.replace("notes", "notes n")), {"f": bobs})
            assert done.rowcount == (3 if blind.startswith("DELETE") else 0)
        added = conn.execute(
            text("INSERT INTO notes (folder_id, body) VALUES (:f, 'mine') RETURNING id, body"),
            {"f": mine},
        ).one()
        assert added.body == "mine"
    with as_user(tenants, "bob") as conn:
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar() == 3


def test_the_child_policy_keeps_both_tables_indexes(tenants: Engine) -> None:
    """EXPLAIN as the app role: a folder's notes are an index range of notes' folder_id,
    each row's check an index probe of folders' key; a join from the user's folders uses
    folders' user_id index. No sequential scan (docs/security.md shows these plans)."""
    with tenants.connect() as conn, conn.begin():
        alices = folder_of(conn, "alice")
        by_folder = "\n".join(
            conn.execute(
                text("EXPLAIN (COSTS OFF) SELECT * FROM notes WHERE folder_id = :f"), {"f": alices}
            ).scalars()
        )
        joined = "\n".join(
            conn.exec_driver_sql(
                "EXPLAIN (COSTS OFF) SELECT n.* FROM folders f JOIN notes n ON n.folder_id = f.id"
            ).scalars()
        )
    assert "ix_notes_folder_id" in by_folder and "ix_folders_user_id" in by_folder, by_folder
    assert "ix_folders_user_id" in joined and "ix_notes_folder_id" in joined, joined
    assert "Seq Scan" not in by_folder + joined, by_folder + joined


def test_autogenerate_protects_a_new_table_and_fixes_drift(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """Tables newly declared in ROW_LEVEL_SECURITY: autogenerate writes one
    ops.enable_row_level_security each, which passes check 13. A weakened policy, RLS not
    forced and a missing grant are drift for `alembic check`, in words; autogenerate
    writes the fix; the downgrades take it all away again."""
    cfg = history(tmp_path, a0002_tenant_tables=TENANT_TABLES)
    cfg.set_section_option("post_write_hooks", "hooks", "")
    versions = Path(str(cfg.get_main_option("version_locations")))
    cfg.attributes["target_metadata"] = tenant_metadata()
    with pg_server.database("autorls") as name:
        engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            command.revision(cfg, "protect", autogenerate=True, version_path=str(versions))
            [written] = versions.glob("0003_*.py")
            source = written.read_text()
            assert source.count("ops.enable_row_level_security(") == 2
            assert source.count("ops.disable_row_level_security(") == 2
            assert max(len(line) for line in source.splitlines()) <= 100
            command.upgrade(cfg, "head")
            command.check(cfg)
            conn.exec_driver_sql(
                "ALTER POLICY pl_notes_select ON notes USING (true); "
                "ALTER TABLE folders NO FORCE ROW LEVEL SECURITY; "
                "REVOKE DELETE ON notes FROM todo_app"
            )
            conn.commit()
            with pytest.raises(CommandError) as drift:
                command.check(cfg)
            assert "  - table notes, policy pl_notes_select: USING: the database has true" in str(
                drift.value
            )
            assert "  - table folders: row-level security is not forced; models/" in str(
                drift.value
            )
            assert "  - table notes: the app role todo_app lacks DELETE, declared in" in str(
                drift.value
            )
            command.revision(cfg, "fix", autogenerate=True, version_path=str(versions))
            [fix] = versions.glob("0004_*.py")
            assert "ops.alter_row_level_security(" in fix.read_text()
            command.upgrade(cfg, "head")
            command.check(cfg)
            command.downgrade(cfg, "0002")
            left = conn.execute(
                text(
                    "SELECT count(*) FROM pg_policies WHERE tablename IN ('folders', 'notes') "
                    "UNION ALL SELECT count(*) FROM pg_class "
                    "WHERE relname IN ('folders', 'notes') AND (relrowsecurity "
                    "OR relforcerowsecurity OR has_any_column_privilege(:role, oid, 'SELECT'))"
                ),
                {"role": APP_ROLE},
            ).scalars()
            assert list(left) == [0, 0]
            conn.rollback()
        engine.dispose()
    del cfg.attributes["connection"]
    check_row_level_security(
        cfg, pg_server, declared_tenant_tables(), tenant_metadata(), role_settings={}
    )


def test_a_malformed_declaration_fails_where_it_is_declared() -> None:
    """A grant that is no privilege, an empty column, or a policy name PostgreSQL would cut
    short: ValueError at the declaration, in one line."""
    for grants, policies, why in (
        (("SELEKT",), (), "expected e.g. 'SELECT'"),
        (("INSERT (a, )",), (), "an empty column name"),
        (("SELECT",), own_rows_only("x" * 60), "longer than 63 bytes"),
    ):
        with pytest.raises(ValueError, match=why) as failed:
            Access(policies, grants)
        assert "\n" not in str(failed.value)
