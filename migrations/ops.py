"""Operations for revisions that cannot run inside a transaction, made safe to rerun.

The one pattern for online index changes: Alembic's autocommit block around
CREATE/DROP INDEX CONCURRENTLY. A build that crashed or timed out leaves an INVALID
index behind; the next run finds it, drops it and builds it again. Revisions import this
module (never models/), so it must stay backward compatible.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text


def _is_invalid(name: str) -> bool:
    if op.get_context().as_sql:  # offline SQL: no database to ask
        return False
    found = (
        op.get_bind()
        .execute(
            text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"name": name},
        )
        .scalar()
    )
    return bool(found)


def create_index_concurrently(name: str, table: str, columns: str) -> None:
    """CREATE INDEX CONCURRENTLY outside the migration's transaction; writers never wait.

    `columns` is the SQL inside the parentheses, e.g. "user_id, created_at DESC".
    statement_timeout is lifted for the build (it runs alongside traffic); lock_timeout
    still bounds its waits.
    """
    restore = op.get_context().opts.get("statement_timeout_ms", 0)
    with op.get_context().autocommit_block():
        op.execute("SET statement_timeout = 0")
        if _is_invalid(name):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({columns})")
        op.execute(f"SET statement_timeout = '{restore}ms'")


def drop_index_concurrently(name: str) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS, outside the migration's transaction."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
