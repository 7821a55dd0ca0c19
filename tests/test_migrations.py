"""Migrations at head: deterministic names, `alembic check` clean (more in test_schema_checks)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, create_engine, inspect, pool, text

from tests.support import PgServer, alembic_config


def test_names_follow_the_convention(engine: Engine) -> None:
    """Constraint and index names in the database are the naming convention's, not the server's."""
    insp = inspect(engine)
    assert insp.get_pk_constraint("tasks")["name"] == "pk_tasks"
    assert {c["name"] for c in insp.get_check_constraints("tasks")} == {
        "ck_tasks_user_id_not_blank",
        "ck_tasks_title_not_blank",
        "ck_tasks_recurring_needs_due_date",
        "ck_tasks_recurring_end_date_valid",
        "ck_tasks_tags_valid",
    }
    assert {i["name"] for i in insp.get_indexes("tasks")} == {
        "ix_tasks_user_id_created_at_id",
        "ix_tasks_user_id_complete_created_at_id",
        "ix_tasks_user_id_due_date_id",
        "ix_tasks_user_id_priority_id",
        "ix_tasks_user_id_title_id",
        "ix_tasks_user_id_tags",
        "ix_tasks_user_id_title_description",
    }


def test_alembic_check_passes_at_head(pg_server: PgServer) -> None:
    """`alembic check` after `alembic upgrade head` reports no drift."""
    with pg_server.database() as name:
        eng = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        with eng.connect() as conn:
            cfg = alembic_config(conn)
            command.upgrade(cfg, "head")
            command.check(cfg)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        eng.dispose()
        assert version.isdigit()
