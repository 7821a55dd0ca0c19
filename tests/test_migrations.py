"""Migrations: up, down and up again on a real PostgreSQL; down leaves no trace."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool, text
from sqlmodel import SQLModel

from tests.support import PgServer, alembic_config, migrate, schema_dump


def test_up_down_up_leaves_no_trace(pg_server: PgServer) -> None:
    """upgrade head, downgrade base (same schema as a never-migrated database), upgrade again."""
    with pg_server.database() as empty, pg_server.database() as name:
        url = pg_server.url(name)
        pristine = schema_dump(pg_server, empty)
        migrate(url)
        at_head = schema_dump(pg_server, name)
        assert "CREATE TABLE public.tasks" in at_head
        assert "tr_tasks_set_updated_at" in at_head
        migrate(url, "base", down=True)
        assert schema_dump(pg_server, name) == pristine
        migrate(url)
        assert schema_dump(pg_server, name) == at_head


def test_head_matches_the_models(engine: object) -> None:
    """After upgrade head, Alembic's comparison finds no difference with the models."""
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(ctx, SQLModel.metadata) == []


def test_names_follow_the_convention(engine: object) -> None:
    """Constraint and index names in the database are the naming convention's, not the server's."""
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    insp = inspect(engine)
    assert insp.get_pk_constraint("tasks")["name"] == "pk_tasks"
    assert {c["name"] for c in insp.get_check_constraints("tasks")} == {
        "ck_tasks_user_id_not_blank",
        "ck_tasks_title_not_blank",
    }
    assert {i["name"] for i in insp.get_indexes("tasks")} == {"ix_tasks_user_id_created_at_id"}


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
