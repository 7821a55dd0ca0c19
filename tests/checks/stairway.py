"""3. Stairway: each revision from base goes up, down and up again, and its downgrade
leaves the schema exactly as it found it (pg_dump before == after)."""

from __future__ import annotations

from alembic.config import Config

from tests.checks.common import (
    SchemaCheckError,
    alembic_step,
    bound,
    diff,
    history,
    name,
    parent,
    schema_ddl,
)
from tests.checks.exceptions import excepted
from tests.support import PgServer


def leftover_error(rev_name: str, before: str, after: str) -> SchemaCheckError:
    """The downgrade of one revision left something behind: say which, and show it."""
    return SchemaCheckError(
        f"The downgrade of revision {rev_name} leaves a trace: the schema after its "
        "upgrade and downgrade differs from before (+ lines are left behind; a type created "
        "with checkfirst=True still needs its DROP TYPE in downgrade()).\n"
        + diff(before, after, "before its upgrade", "after its downgrade")
    )


def check_stairway(cfg: Config, server: PgServer, since: str | None = None) -> None:
    """3. From base, one revision at a time: upgrade, downgrade (nothing left), upgrade.

    since: start at that revision instead (upgraded to, unchecked): a test of new revisions
    on top of the project's, which tests/test_schema_checks.py checks in the same run."""
    with server.database("stairway") as dbname, bound(cfg, server, dbname):
        if since is not None:
            alembic_step(cfg, since)
        for rev in history(cfg, since):
            if excepted(rev, "stairway"):
                alembic_step(cfg, rev.revision)
                continue
            where = f" (stairway at revision {name(rev)})"
            before = schema_ddl(server, dbname)
            alembic_step(cfg, rev.revision, doing=where)
            alembic_step(cfg, parent(rev), down=True, doing=where)
            after = schema_ddl(server, dbname)
            if after != before:
                raise leftover_error(name(rev), before, after)
            alembic_step(
                cfg, rev.revision, doing=f"{where[:-1]}, upgrading again after its downgrade)"
            )
