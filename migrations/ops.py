"""Operations for a live table: each one safe to rerun, none holding a lock while it scans.

Revisions import this module (never models/), so it must stay backward compatible.

Steps outside the revision's transaction (Alembic's autocommit block), each safe to
rerun: a run that crashed or timed out halfway is finished by the next one. A revision
using them must use nothing else (a CONCURRENTLY build that fails after ordinary DDL
leaves that DDL committed and the revision unrecorded):
- `create_index_concurrently` / `drop_index_concurrently`: CREATE/DROP INDEX CONCURRENTLY;
  a build that crashed leaves an INVALID index, which the next run drops and builds again;
- `backfill`: an UPDATE in batches, each batch its own transaction;
- `add_enum_value`: ALTER TYPE ... ADD VALUE IF NOT EXISTS, committed before the revisions
  that use the value (PostgreSQL cannot use a value in the transaction that added it).

Steps inside the revision's transaction, for a revision after the one that added a
constraint `NOT VALID` (`op.create_check_constraint(..., postgresql_not_valid=True)`,
`op.create_foreign_key(..., postgresql_not_valid=True)`):
- `validate_constraint`: VALIDATE it, a scan that blocks no writer;
- `set_not_null` / `drop_not_null`: NOT NULL through a validated `CHECK (col IS NOT NULL)`,
  so SET NOT NULL skips its own scan under ACCESS EXCLUSIVE (PostgreSQL 12+).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op
from sqlalchemy import text

# Longest identifier PostgreSQL keeps (longer ones are truncated, silently).
MAX_IDENTIFIER = 63


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


@contextmanager
def _online() -> Iterator[None]:
    """An autocommit block without statement_timeout: the step runs alongside traffic and
    takes no lock that writers wait for; lock_timeout still bounds its waits."""
    restore = op.get_context().opts.get("statement_timeout_ms", 0)
    with op.get_context().autocommit_block():
        op.execute("SET statement_timeout = 0")
        yield
        op.execute(f"SET statement_timeout = '{restore}ms'")


def create_index_concurrently(
    name: str,
    table: str,
    columns: str,
    using: str = "",
    storage: str = "",
    *,
    unique: bool = False,
    where: str | None = None,
) -> None:
    """CREATE [UNIQUE] INDEX CONCURRENTLY outside the migration's transaction; writers never wait.

    `columns` is the SQL inside the parentheses, e.g. "user_id, created_at DESC"; `using`
    the index method when not btree (e.g. "gin"); `storage` its storage parameters (e.g.
    "fastupdate = off"); `where` makes it a partial index. statement_timeout is lifted for
    the build (it runs alongside traffic); lock_timeout still bounds its waits.
    """
    kind = "UNIQUE INDEX" if unique else "INDEX"
    predicate = f" WHERE {where}" if where else ""
    with _online():
        if _is_invalid(name):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        method = f" USING {using}" if using else ""
        params = f" WITH ({storage})" if storage else ""
        op.execute(
            f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {name} ON {table}{method} ({columns})"
            f"{params}{predicate}"
        )


def create_extension(name: str) -> None:
    """CREATE EXTENSION IF NOT EXISTS, in an autocommit block (rerunnable, like the above)."""
    with op.get_context().autocommit_block():
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")


def drop_extension(name: str) -> None:
    """DROP EXTENSION IF EXISTS (RESTRICT: it fails while anything else still uses it)."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP EXTENSION IF EXISTS {name}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def add_enum_value(
    type_name: str, value: str, *, before: str | None = None, after: str | None = None
) -> None:
    """ALTER TYPE type_name ADD VALUE IF NOT EXISTS value [BEFORE/AFTER a value], committed.

    In an autocommit block: PostgreSQL 12+ runs ADD VALUE in a transaction, but no statement
    of that transaction may use the new value (a default, a row, a CHECK): committed here,
    the revisions after this one can. Rerunnable (IF NOT EXISTS). No downgrade can drop an
    enum value: to remove one, see the README (Daily workflow).
    """
    where = f" BEFORE {_quote(before)}" if before else f" AFTER {_quote(after)}" if after else ""
    with op.get_context().autocommit_block():
        op.execute(f"ALTER TYPE {type_name} ADD VALUE IF NOT EXISTS {_quote(value)}{where}")


def drop_index_concurrently(name: str) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS, outside the migration's transaction."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


@contextmanager
def _unbounded() -> Iterator[None]:
    """No statement_timeout for the block's statements (scans that block no writer)."""
    restore = op.get_context().opts.get("statement_timeout_ms", 0)
    op.execute("SET LOCAL statement_timeout = 0")
    yield
    op.execute(f"SET LOCAL statement_timeout = '{restore}ms'")


def validate_constraint(table: str, name: str) -> None:
    """ALTER TABLE ... VALIDATE CONSTRAINT, in the revision's own transaction.

    The constraint was added `NOT VALID` by an earlier revision (a brief lock; every new
    row is checked since). Validating scans the old rows under SHARE UPDATE EXCLUSIVE,
    which blocks no reader or writer, so statement_timeout is lifted for it. Rerunning it
    is harmless: a valid constraint is skipped.
    """
    with _unbounded():
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def not_null_check_name(table: str, column: str) -> str:
    """The name of the `CHECK (column IS NOT NULL)` that set_not_null relies on."""
    return f"ck_{table}_{column}_not_null"[:MAX_IDENTIFIER]


def set_not_null(table: str, column: str) -> None:
    """SET NOT NULL without a scan under ACCESS EXCLUSIVE (PostgreSQL 12+).

    An earlier revision added `CHECK (column IS NOT NULL) NOT VALID` named
    `not_null_check_name(table, column)`; this validates it (a scan that blocks no writer),
    then SET NOT NULL trusts it and skips its own scan, and the CHECK is dropped. Rows
    holding NULL make the VALIDATE fail, naming the CHECK: backfill them first.
    """
    check = not_null_check_name(table, column)
    validate_constraint(table, check)
    op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {check}")


def drop_not_null(table: str, column: str) -> None:
    """The downgrade of set_not_null: DROP NOT NULL, and the NOT VALID CHECK back."""
    check = not_null_check_name(table, column)
    op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID")


def backfill(table: str, set_: str, where: str, *, batch: int = 5000, key: str = "id") -> None:
    """UPDATE table SET <set_> WHERE <where>, `batch` rows per transaction, until none is left.

    `where` must stop matching a row once it is updated (e.g. "new_col IS NULL"), which
    makes the loop finish and a crashed run resumable. Each batch commits on its own, so
    no lock is held for long and the app keeps writing. Offline (`--sql`) it prints one
    batch statement to repeat until it updates no row.
    """
    statement = (
        f"UPDATE {table} SET {set_} WHERE {key} IN "
        f"(SELECT {key} FROM {table} WHERE {where} LIMIT {batch})"
    )
    with op.get_context().autocommit_block():
        if op.get_context().as_sql:
            op.execute(f"-- repeat until it updates no row:\n{statement}")
            return
        while True:
            op.execute("BEGIN")
            try:
                updated = op.get_bind().execute(text(statement)).rowcount
            except BaseException:
                op.execute("ROLLBACK")
                raise
            op.execute("COMMIT")
            if not updated:
                return
