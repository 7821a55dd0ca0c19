"""6. Offline equals online: `alembic upgrade head --sql`, applied by psql, builds the same
schema as the online upgrade (a revision must not ask the database, or skip work)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import create_engine, pool

from tests.checks.common import (
    SchemaCheckError,
    alembic_step,
    bound,
    diff,
    history,
    name,
    offline_sql,
    psql,
    revision_sql,
    schema_ddl,
)
from tests.checks.exceptions import excepted
from tests.support import PgServer


def _version(server: PgServer, dbname: str) -> list[str]:
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT version_num FROM alembic_version ORDER BY 1")
            return list(conn.execute(query).scalars())
    finally:
        engine.dispose()


def check_offline_matches_online(cfg: Config, server: PgServer) -> None:
    """6. `alembic upgrade head --sql` applied by psql builds the same schema as online.

    A revision that waives "offline-matches-online" is applied online in both databases.
    """
    revisions = history(cfg)
    waived = [rev for rev in revisions if excepted(rev, "offline-matches-online")]
    with server.database("online") as online, server.database("offline") as offline:
        with bound(cfg, server, online):
            alembic_step(cfg, "head")
        if waived:  # online up to the last waived revision, offline from there
            with bound(cfg, server, offline):
                alembic_step(cfg, waived[-1].revision)
            after = revisions[revisions.index(waived[-1]) + 1 :]
            sql = "".join(revision_sql(cfg, rev) for rev in after)
        else:
            sql = offline_sql(cfg, "head")
        applied = psql(server, offline, sql)
        if applied.returncode != 0:
            raise SchemaCheckError(
                "The SQL that `alembic upgrade head --sql` prints fails in psql on an empty "
                f"database: {applied.stderr.strip()}"
            )
        want, got = schema_ddl(server, online), schema_ddl(server, offline)
        versions = _version(server, online), _version(server, offline)
    if want != got:
        raise SchemaCheckError(
            "Offline and online upgrades build different schemas: a revision behaves "
            "differently under `--sql` (it asks the database something, or skips work).\n"
            + diff(want, got, "alembic upgrade head", "alembic upgrade head --sql | psql")
        )
    if versions[0] != versions[1]:
        raise SchemaCheckError(
            f"Offline SQL leaves alembic_version at {versions[1]}, online at {versions[0]}"
            + (f" (waived up to {name(waived[-1])})" if waived else "")
        )
