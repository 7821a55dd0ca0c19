"""7. Committed snapshot: migrations/schema.sql is what `alembic upgrade head` builds, so a
reviewer sees every DDL change of a pull request as a diff. Other tools' tables are left
out (pg_dump --exclude-table; migrations/ownership.py)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import text

from tests.checks.common import (
    SchemaCheckError,
    alembic_step,
    bound,
    diff,
    foreign_tables,
    schema_ddl,
)
from tests.support import ROOT, PgServer

SNAPSHOT = ROOT / "migrations" / "schema.sql"
SNAPSHOT_COMMAND = "python -m tests.snapshot"
SNAPSHOT_HEADER = f"""\
-- The schema `alembic upgrade head` builds, as pg_dump --schema-only prints it
-- (alembic_version left out). Generated, do not edit: run `{SNAPSHOT_COMMAND}` after
-- changing a revision and commit the result; a test fails while this file is stale.

"""


# The sequences a table owns (serial columns): pg_dump keeps them when it leaves the table out.
_OWNED_SEQUENCES = text(
    """
    SELECT s.relname FROM pg_class s
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
    JOIN pg_class t ON t.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass
    WHERE s.relkind = 'S' AND d.deptype IN ('a', 'i') AND t.relname = ANY(:tables)
      AND t.relnamespace = current_schema()::regnamespace
    """
)


def render_snapshot(cfg: Config, server: PgServer) -> str:
    """The snapshot text: the DDL of a fresh database upgraded to head (without the tables
    of other tools that the server puts in every new database, if any, and their serial
    sequences; pg_dump cannot leave out their functions or types)."""
    with server.database("snapshot") as dbname:
        with bound(cfg, server, dbname) as conn:
            alembic_step(cfg, "head")
            foreign = foreign_tables(cfg, conn)
            if foreign:
                foreign += conn.execute(_OWNED_SEQUENCES, {"tables": foreign}).scalars()
            conn.rollback()
        return SNAPSHOT_HEADER + schema_ddl(server, dbname, exclude=foreign)


def compare_snapshot(actual: str, path: Path = SNAPSHOT) -> None:
    """Fail, with the diff, when the committed snapshot at path is not `actual`."""
    committed = path.read_text() if path.exists() else ""
    if committed == actual:
        return
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    raise SchemaCheckError(
        f"{shown} is stale: `alembic upgrade head` builds a different schema. "
        f"Run `{SNAPSHOT_COMMAND}` and commit the file.\n"
        + diff(committed, actual, f"{shown} (committed)", "alembic upgrade head (now)")
    )


def check_snapshot(cfg: Config, server: PgServer, path: Path = SNAPSHOT) -> None:
    """7. The committed schema snapshot is what `alembic upgrade head` builds today."""
    compare_snapshot(render_snapshot(cfg, server), path)
