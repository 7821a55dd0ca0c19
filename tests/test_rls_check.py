"""The row-level security check (tests/checks/rls.py, check 13): it passes on this project's
history and fails, naming the table, the policy and the revision, on each way to drop or
weaken it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config

from models.security import ROW_LEVEL_SECURITY
from tests.checks import SchemaCheckError, check_row_level_security
from tests.support import PgServer, alembic_config, head, revision, with_revisions

pytestmark = pytest.mark.schema


def failure(cfg: Config, server: PgServer, **kwargs: object) -> str:
    """The check's message on a history that must fail it."""
    with pytest.raises(SchemaCheckError) as failed:
        check_row_level_security(cfg, server, **kwargs)  # type: ignore[arg-type]
    message = str(failed.value)
    assert message.startswith("Row-level security is missing, weakened or not as declared")
    return message


def on_top(tmp_path: Path, upgrade: str) -> Config:
    """The project's history plus one test revision 9001 doing upgrade."""
    return with_revisions(tmp_path, a9001_change=revision("9001", head(), upgrade))


BY_9001 = "(last changed by revision 9001 (a9001_change.py))"


def test_the_project_passes(pg_server: PgServer) -> None:
    """Every table with a user_id is protected at head, exactly as models/security.py says."""
    check_row_level_security(alembic_config(), pg_server)


def test_a_dropped_policy_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """Dropping the DELETE policy names the table, the policy, the command and the revision."""
    cfg = on_top(tmp_path, 'op.execute("DROP POLICY pl_tasks_delete ON tasks")')
    message = failure(cfg, pg_server)
    assert f"table tasks: no DELETE policy for the app role todo_app {BY_9001}" in message
    assert (
        "table tasks, policy pl_tasks_delete: is declared in models/security.py, "
        f"not in the database {BY_9001}" in message
    )


def test_an_always_true_policy_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A SELECT policy rewritten to USING (true), and a new one for PUBLIC, are named."""
    cfg = on_top(
        tmp_path,
        """
        op.execute("ALTER POLICY pl_tasks_select ON tasks USING (true)")
        op.execute("CREATE POLICY pl_tasks_everyone ON tasks FOR SELECT USING (true)")
        """,
    )
    message = failure(cfg, pg_server)
    assert (
        "table tasks, policy pl_tasks_select: USING is always true for todo_app: every row, "
        f"every user {BY_9001}" in message
    )
    assert "policy pl_tasks_everyone: USING is always true for public" in message
    assert "policy pl_tasks_everyone: is in the database, not in models/security.py" in message
    assert "pl_tasks_migrations" not in message  # the owner's own policy is allowed


def test_a_policy_that_no_longer_filters_by_user_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """An UPDATE policy that only checks user_id IS NOT NULL is named, and differs from the
    declaration."""
    cfg = on_top(
        tmp_path,
        'op.execute("ALTER POLICY pl_tasks_update ON tasks WITH CHECK (user_id IS NOT NULL)")',
    )
    message = failure(cfg, pg_server)
    assert "policy pl_tasks_update: WITH CHECK ((user_id IS NOT NULL)) does not compare" in message
    assert "policy pl_tasks_update: check: the database has (user_id IS NOT NULL)" in message


def test_rls_switched_off_or_not_forced_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """NO FORCE and DISABLE ROW LEVEL SECURITY are each named with the revision."""
    cfg = on_top(
        tmp_path,
        """
        op.execute("ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE tasks DISABLE ROW LEVEL SECURITY")
        """,
    )
    message = failure(cfg, pg_server)
    assert f"table tasks: row-level security is not enabled {BY_9001}" in message
    assert "table tasks: row-level security is not forced" in message


def test_a_new_table_with_a_user_id_needs_rls(tmp_path: Path, pg_server: PgServer) -> None:
    """A new table with a user_id and no policies fails: not enabled, not forced, not declared."""
    cfg = on_top(
        tmp_path,
        'op.create_table("zz_rls_probe", sa.Column("id", sa.BigInteger(), primary_key=True), '
        'sa.Column("user_id", sa.String(255), nullable=False))',
    )
    message = failure(cfg, pg_server)
    assert "table zz_rls_probe: row-level security is not enabled" in message
    assert "table zz_rls_probe: no SELECT policy for the app role todo_app" in message
    assert "table zz_rls_probe: is not declared in models/security.py" in message
    assert "table tasks" not in message


def test_extra_privileges_of_the_app_role_are_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """GRANT ALL on tasks and SELECT on alembic_version to the app role are named."""
    cfg = on_top(
        tmp_path,
        """
        op.execute("GRANT ALL ON tasks TO todo_app")
        op.execute("GRANT SELECT ON alembic_version TO todo_app")
        """,
    )
    message = failure(cfg, pg_server)
    assert "tasks: the app role todo_app has TRUNCATE on it" in message
    assert "alembic_version: the app role todo_app has SELECT on it" in message


def test_a_declaration_that_drifts_from_the_database_is_caught(pg_server: PgServer) -> None:
    """A declared expression or table that the migrations do not build is named."""
    select, *rest = ROW_LEVEL_SECURITY["tasks"]
    declared = {
        "tasks": (replace(select, using="user_id = current_user"), *rest),
        "zz_rls_probe": (),
    }
    message = failure(alembic_config(), pg_server, declared=declared)
    assert "table tasks, policy pl_tasks_select: using: the database has" in message
    assert "models/security.py ((user_id)::text = CURRENT_USER)" in message
    assert "table zz_rls_probe: is declared in models/security.py, not in the database" in message


def test_a_model_with_a_user_id_must_be_declared(pg_server: PgServer) -> None:
    """A model table with a user_id but no entry in the declaration is named."""
    metadata = sa.MetaData()
    sa.Table("tasks", metadata, sa.Column("user_id", sa.String(255)))
    sa.Table("zz_rls_probe", metadata, sa.Column("user_id", sa.String(255)))
    message = failure(alembic_config(), pg_server, metadata=metadata)
    assert (
        "table zz_rls_probe: has a user_id in the models but no entry in models/security.py"
        in message
    )
