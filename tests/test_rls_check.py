"""The row-level security check (tests/checks/rls.py, check 13): it passes on this project's
history and on a synthetic tenant/child history, and fails, naming the table, the policy
and the revision, on each way to drop or weaken it, or to grant more than declared."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config

from tests.checks import SchemaCheckError, check_row_level_security
from tests.support import PgServer, alembic_config, revision
from tests.synthetic import declared_tenant_tables, tenant_history, tenant_metadata

pytestmark = pytest.mark.schema
BY_0004 = "(last changed by revision 0004 (a0004_change.py))"


def failure(cfg: Config, server: PgServer, **kwargs: Any) -> str:
    """The check's message on a tenant history that must fail it."""
    defaults = {"declared": declared_tenant_tables(), "metadata": tenant_metadata()}
    with pytest.raises(SchemaCheckError) as failed:
        check_row_level_security(cfg, server, **{"role_settings": {}, **defaults, **kwargs})
    message = str(failed.value)
    assert message.startswith("Row-level security is missing, weakened or not as declared")
    return message


def changed(tmp_path: Path, upgrade: str) -> Config:
    """The tenant history plus one revision 0004 doing upgrade."""
    return tenant_history(tmp_path, a0004_change=revision("0004", "0003", upgrade))


def test_the_project_passes(pg_server: PgServer) -> None:
    """Every table the app role can touch is protected at head, as models/policies.py says."""
    check_row_level_security(alembic_config(), pg_server)


def test_a_tenant_and_its_child_table_pass(tmp_path: Path, pg_server: PgServer) -> None:
    """A table with user_id and a child reached through it, each enabled in one call, pass."""
    check_row_level_security(
        tenant_history(tmp_path),
        pg_server,
        declared=declared_tenant_tables(),
        metadata=tenant_metadata(),
        role_settings={},
    )


def test_dropped_or_weakened_policies_are_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A dropped DELETE policy, an always-true SELECT, a new policy for PUBLIC and an UPDATE
    check that no longer filters are each named, with the revision."""
    cfg = changed(
        tmp_path,
        """
        op.execute("DROP POLICY pl_folders_delete ON folders")
        op.execute("ALTER POLICY pl_notes_select ON notes USING (true)")
        op.execute("CREATE POLICY pl_notes_everyone ON notes FOR SELECT USING (true)")
        op.execute("ALTER POLICY pl_notes_update ON notes WITH CHECK (folder_id IS NOT NULL)")
        """,
    )
    message = failure(cfg, pg_server)
    assert f"table folders: no DELETE policy for the app role todo_app {BY_0004}" in message
    assert (
        "table folders, policy pl_folders_delete: is declared in models/policies.py, "
        f"not in the database {BY_0004}" in message
    )
    assert (
        "table notes, policy pl_notes_select: USING is always true for todo_app: every row, "
        f"every user {BY_0004}" in message
    )
    assert "policy pl_notes_everyone: USING is always true for public" in message
    assert "policy pl_notes_everyone: is in the database, not in models/policies.py" in message
    assert (
        "policy pl_notes_update: WITH CHECK ((folder_id IS NOT NULL)) neither compares user_id "
        "with app.user_id nor reads a table under row-level security that does" in message
    )
    assert (
        "policy pl_notes_update: WITH CHECK: the database has (folder_id IS NOT NULL), "
        "models/policies.py (EXISTS ( SELECT 1 FROM folders p WHERE (p.id = notes.folder_id)))"
        in message
    )
    assert "pl_folders_migrations" not in message  # the owner's own policy is allowed


def test_flags_and_grants_beyond_the_declaration_are_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """RLS off or not forced, a granted table without RLS (named), a grant to a column too
    many or missing, TRUNCATE, a sequence, alembic_version, a role setting: each named."""
    cfg = changed(
        tmp_path,
        """
        op.execute("ALTER TABLE folders NO FORCE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE folders DISABLE ROW LEVEL SECURITY")
        op.create_table("labels", sa.Column("id", sa.BigInteger(), primary_key=True))
        op.execute("GRANT SELECT ON labels TO todo_app")
        op.execute("GRANT INSERT (id) ON notes TO todo_app")
        op.execute("REVOKE UPDATE (body) ON notes FROM todo_app")
        op.execute("GRANT TRUNCATE ON notes TO todo_app")
        op.execute("GRANT USAGE ON SEQUENCE notes_id_seq TO todo_app")
        op.execute("GRANT SELECT ON alembic_version TO todo_app")
        op.execute(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE todo_app IN DATABASE %I "
            "SET statement_timeout = 0', current_database()); END $$"
        )
        """,
    )
    message = failure(cfg, pg_server)
    assert f"table folders: row-level security is not enabled {BY_0004}" in message
    assert "table folders: row-level security is not forced" in message
    assert "table labels: row-level security is not enabled" in message
    assert "table labels: no SELECT policy for the app role todo_app" in message
    assert (
        "table labels: the app role todo_app has SELECT, not declared in models/policies.py"
        in message
    )
    assert (
        "table notes: the app role todo_app has INSERT (id), not declared in models/policies.py"
        in message
    )
    assert "table notes: the app role todo_app lacks UPDATE (body), declared in" in message
    assert "table notes: the app role todo_app has TRUNCATE, which row-level security ignores" in (
        message
    )
    assert "notes_id_seq: the app role todo_app has USAGE on it" in message
    assert "alembic_version: the app role todo_app has SELECT on it" in message
    assert (
        "the app role todo_app's statement_timeout in this database is 0, models/policies.py "
        "says not set" in message
    )
    assert "table items" not in message  # neither granted nor declared: another matter


def test_a_declaration_that_drifts_from_the_database_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A declared expression, grant, table or role setting that the migrations do not build,
    and a model with a user_id but no declaration, are named."""
    declared = declared_tenant_tables()
    select, *rest = declared["folders"].policies
    declared["folders"] = replace(
        declared["folders"], policies=(replace(select, using="user_id = current_user"), *rest)
    )
    declared["notes"] = replace(declared["notes"], grants=("SELECT", "DELETE"))
    declared["zz_probe"] = replace(declared["notes"], policies=())
    metadata = tenant_metadata()
    sa.Table("zz_owned", metadata, sa.Column("user_id", sa.String(255)))
    message = failure(
        tenant_history(tmp_path),
        pg_server,
        declared=declared,
        metadata=metadata,
        role_settings={"lock_timeout": "5s"},
    )
    assert "table folders, policy pl_folders_select: USING: the database has" in message
    assert "models/policies.py ((user_id)::text = CURRENT_USER)" in message
    assert (
        "table notes: the app role todo_app has INSERT (body, folder_id), not declared" in message
    )
    assert "table zz_probe: is declared in models/policies.py, not in the database" in message
    assert (
        "table zz_owned: has a user_id in the models but no entry in models/policies.py" in message
    )
    assert (
        "todo_app's lock_timeout in this database is not set, models/policies.py says 5s" in message
    )
