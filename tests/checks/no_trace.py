"""4. Downgrade leaves no trace: head -> base, one revision at a time, gives back each
revision's starting schema, ending with that of a database that never saw a migration."""

from __future__ import annotations

from alembic.config import Config

from tests.checks.common import alembic_step, bound, history, name, parent
from tests.checks.common import schema_ddl as ddl
from tests.checks.exceptions import excepted
from tests.checks.stairway import leftover_error
from tests.support import PgServer


def check_downgrade_leaves_no_trace(
    cfg: Config, server: PgServer, since: str | None = None
) -> None:
    """4. upgrade head then downgrade to base: every step down restores the schema the
    step up started from; the first revision whose downgrade leaves something is named.

    since: from and back to that revision instead of base (see check_stairway)."""
    revisions = history(cfg, since)
    with server.database("roundtrip") as dbname, bound(cfg, server, dbname):
        if since is not None:
            alembic_step(cfg, since)
        before = {}  # revision -> the schema just before its upgrade
        for rev in revisions:
            before[rev.revision] = ddl(server, dbname)
            alembic_step(cfg, rev.revision)
        extra: set[str] = set()  # lines a waived revision was allowed to leave behind
        for rev in reversed(revisions):
            alembic_step(cfg, parent(rev), down=True, doing=f" (revision {name(rev)})")
            after = ddl(server, dbname)
            kept = "".join(f"{line}\n" for line in after.splitlines() if line not in extra)
            if kept == before[rev.revision]:
                continue
            if not excepted(rev, "no-trace"):
                raise leftover_error(name(rev), before[rev.revision], after)
            extra |= set(after.splitlines()) - set(before[rev.revision].splitlines())
