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


def create_index_concurrently(
    name: str, table: str, columns: str, using: str = "", storage: str = ""
) -> None:
    """CREATE INDEX CONCURRENTLY outside the migration's transaction; writers never wait.

    `columns` is the SQL inside the parentheses, e.g. "user_id, created_at DESC"; `using`
    the index method when not btree (e.g. "gin"); `storage` its storage parameters (e.g.
    "fastupdate = off").
    statement_timeout is lifted for the build (it runs alongside traffic); lock_timeout
    still bounds its waits.
    """
    restore = op.get_context().opts.get("statement_timeout_ms", 0)
    with op.get_context().autocommit_block():
        op.execute("SET statement_timeout = 0")
        if _is_invalid(name):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        method = f" USING {using}" if using else ""
        params = f" WITH ({storage})" if storage else ""
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table}{method} ({columns}){params}"
        )
        op.execute(f"SET statement_timeout = '{restore}ms'")


def create_extension(name: str) -> None:
    """CREATE EXTENSION IF NOT EXISTS, in an autocommit block (rerunnable, like the above)."""
    with op.get_context().autocommit_block():
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")


def drop_extension(name: str) -> None:
    """DROP EXTENSION IF EXISTS (RESTRICT: it fails while anything else still uses it)."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP EXTENSION IF EXISTS {name}")


def drop_index_concurrently(name: str) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS, outside the migration's transaction."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
