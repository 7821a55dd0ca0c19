"""7. Committed snapshot: migrations/schema.sql is what `alembic upgrade head` builds, so a
reviewer sees every DDL change of a pull request as a diff."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from tests.checks.common import SchemaCheckError, alembic_step, bound, diff, schema_ddl
from tests.support import ROOT, PgServer

SNAPSHOT = ROOT / "migrations" / "schema.sql"
SNAPSHOT_COMMAND = "python -m tests.snapshot"
SNAPSHOT_HEADER = f"""\
-- The schema `alembic upgrade head` builds, as pg_dump --schema-only prints it
-- (alembic_version left out). Generated, do not edit: run `{SNAPSHOT_COMMAND}` after
-- changing a revision and commit the result; a test fails while this file is stale.

"""


def render_snapshot(cfg: Config, server: PgServer) -> str:
    """The snapshot text: the DDL of a fresh database upgraded to head."""
    with server.database("snapshot") as dbname:
        with bound(cfg, server, dbname):
            alembic_step(cfg, "head")
        return SNAPSHOT_HEADER + schema_ddl(server, dbname)


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
