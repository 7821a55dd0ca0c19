"""Migrations at head: deterministic names, `alembic check` clean (more in test_schema_checks)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, create_engine, pool, text

from tests.support import PgServer, alembic_config

CONSTRAINTS = text(
    """
    SELECT c.relname, k.contype, k.conname FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relname <> 'alembic_version'
      AND k.contype <> 'n'  -- PostgreSQL 18 records NOT NULL too, named by the server
    """
)
INDEXES = text(
    """
    SELECT tablename, indexname FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename <> 'alembic_version'
      AND indexname NOT IN (SELECT conname FROM pg_constraint)
    """
)
PREFIX = {"p": "pk", "c": "ck", "f": "fk", "u": "uq", "x": "ex"}


def test_names_follow_the_convention(engine: Engine) -> None:
    """Every constraint and index name at head is the naming convention's, not the server's
    (pk_<table>, ck_/fk_/uq_<table>_..., ix_<table>_...), whatever tables head has."""
    with engine.connect() as conn:
        constraints = conn.execute(CONSTRAINTS).all()
        indexes = conn.execute(INDEXES).all()
    assert constraints and indexes
    wrong = [
        (table, name)
        for table, kind, name in constraints
        if not (
            name == f"pk_{table}" if kind == "p" else name.startswith(f"{PREFIX[kind]}_{table}_")
        )
    ] + [(table, name) for table, name in indexes if not name.startswith(f"ix_{table}_")]
    assert wrong == []


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
