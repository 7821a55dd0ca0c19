"""migrations/adoption/revisions.json: each revision's schema, as adoption reads a live one.

Every revision is applied in turn to a scratch database and the schema described after
each (migrations/adoption/catalog.py). `python -m tests.snapshot` writes the file with
migrations/schema.sql; tests/test_adopt.py fails while it is stale.
"""

from __future__ import annotations

import json

from alembic.config import Config

from migrations.adoption.catalog import describe
from migrations.adoption.recognise import REVISIONS
from tests.checks.common import SchemaCheckError, alembic_step, bound, diff, history
from tests.support import PgServer

COMMAND = "python -m tests.snapshot"


def render_revisions(cfg: Config, server: PgServer) -> str:
    """The file's text: revision id -> its schema, from the first revision to head."""
    found = {}
    with server.database("revisions") as dbname, bound(cfg, server, dbname) as conn:
        for rev in history(cfg):
            alembic_step(cfg, rev.revision)
            found[rev.revision] = describe(conn).as_json()
            conn.rollback()
    return json.dumps(found, indent=1, ensure_ascii=False) + "\n"


def compare_revisions(actual: str) -> None:
    """Fail, with the diff, when the committed file is not `actual`."""
    committed = REVISIONS.read_text() if REVISIONS.exists() else ""
    if committed != actual:
        raise SchemaCheckError(
            f"migrations/adoption/revisions.json is stale: the revisions build other schemas. "
            f"Run `{COMMAND}` and commit the file.\n"
            + diff(committed, actual, "revisions.json (committed)", "the revisions (now)")
        )
