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

Its downgrade, `remove_enum_value`, runs in the revision's transaction (one DO block,
the same with --sql, a no-op once the value is gone): the type rebuilt without the value.

Steps inside the revision's transaction, for a revision after the one that added a
constraint `NOT VALID` (`op.create_check_constraint(..., postgresql_not_valid=True)`,
`op.create_foreign_key(..., postgresql_not_valid=True)`):
- `validate_constraint`: VALIDATE it, a scan that blocks no writer;
- `set_not_null` / `drop_not_null`: NOT NULL through a validated `CHECK (col IS NOT NULL)`,
  so SET NOT NULL skips its own scan under ACCESS EXCLUSIVE (PostgreSQL 12+).

For a new table made with models/base.py's TableBase (autogenerate writes them):
`create_updated_at_trigger` / `drop_updated_at_trigger`, in the revision's transaction.

Row-level security for one table in one call, in the revision's transaction (only catalog
changes; the same SQL online and with --sql), written by autogenerate from the
declaration in models/policies.py (migrations/rls.py):
- `enable_row_level_security(table, policies, grants, to=role)`: CREATE POLICY each,
  ENABLE and FORCE ROW LEVEL SECURITY, GRANT each; its exact inverse
  `disable_row_level_security(...)` (same arguments): REVOKE, NO FORCE, DISABLE, DROP POLICY;
- `alter_row_level_security(table, ...)`: what differs (policies dropped and created,
  grants revoked and granted, the flags); its inverse swaps each pair.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from migrations.dataloss import ENUM_COLUMNS, refuse_enum_value

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
    takes no lock that writers wait for; lock_timeout still bounds its waits.

    Online, the next transaction sets its own timeout (SET LOCAL) and the run's end resets
    the session's (migrations/lock.py): a restoring SET here could, through a pooler, land
    on another backend and stay there. The --sql script restores it for the statements after.
    """
    context = op.get_context()
    restore = context.opts.get("statement_timeout_ms", 0)
    with context.autocommit_block():
        op.execute("SET statement_timeout = 0")
        yield
        if context.as_sql:
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
    the revisions after this one can. Rerunnable (IF NOT EXISTS). Its downgrade is
    `remove_enum_value`.
    """
    where = f" BEFORE {_quote(before)}" if before else f" AFTER {_quote(after)}" if after else ""
    sql = f"ALTER TYPE {type_name} ADD VALUE IF NOT EXISTS {_quote(value)}{where}"
    with op.get_context().autocommit_block():
        op.execute(sql.replace(":", "\\:"))  # a value like 'x :y' is no bind parameter


# One DO block (the same online and with --sql, atomic, a no-op once the value is gone):
# count the rows holding the value (refused if any), rename the type to <name>__old, create
# it again without the value (order kept), retype each column (default dropped and put
# back), drop the old type. A CHECK, index predicate or view comparing a column with a
# literal of the type makes its ALTER COLUMN fail: the error names the column and its CHECKs.
_REMOVE_VALUE = """DO $$
DECLARE
  typ oid := to_regtype(@TYPE@);
  val text := @VALUE@;
  qname text; oldname text; labels text; k bigint; total bigint := 0; rec record;
  tabs text[] := '{}'; cols text[] := '{}'; arrs boolean[] := '{}'; dflts text[] := '{}';
  rels oid[] := '{}'; nums int[] := '{}'; newtype text;
BEGIN
  IF typ IS NULL OR NOT EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = typ AND enumlabel = val)
  THEN
    RETURN;
  END IF;
  SELECT quote_ident(s.nspname) || '.' || quote_ident(t.typname),
         quote_ident(s.nspname) || '.' || quote_ident(t.typname || '__old')
    INTO qname, oldname FROM pg_type t JOIN pg_namespace s ON s.oid = t.typnamespace
    WHERE t.oid = typ;
  FOR rec IN @COLUMNS@
  LOOP
    EXECUTE 'SELECT count(*) FROM ' || rec.tab || ' WHERE ' || CASE WHEN rec.is_array
      THEN rec.col || '::text[] @> ARRAY[' || quote_literal(val) || ']'
      ELSE rec.col || '::text = ' || quote_literal(val) END INTO k;
    total := total + k;
    tabs := tabs || rec.tab; cols := cols || rec.col; arrs := arrs || rec.is_array;
    dflts := dflts || rec.dflt; rels := rels || rec.rel; nums := nums || rec.num::int;
  END LOOP;
  IF total > 0 THEN
    RAISE EXCEPTION USING MESSAGE = total || ' row(s) hold value ' || quote_literal(val)
      || ' of enum type ' || qname || ': change them to another value first; nothing was '
      || 'changed';
  END IF;
  EXECUTE 'ALTER TYPE ' || qname || ' RENAME TO ' || quote_ident(
    (SELECT typname || '__old' FROM pg_type WHERE oid = typ));
  SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder) INTO labels
    FROM pg_enum WHERE enumtypid = typ AND enumlabel <> val;
  EXECUTE 'CREATE TYPE ' || qname || ' AS ENUM (' || labels || ')';
  FOR i IN 1 .. coalesce(array_length(tabs, 1), 0) LOOP
    IF dflts[i] IS NOT NULL THEN
      EXECUTE 'ALTER TABLE ' || tabs[i] || ' ALTER COLUMN ' || cols[i] || ' DROP DEFAULT';
    END IF;
    newtype := qname || CASE WHEN arrs[i] THEN '[]' ELSE '' END;
    BEGIN
      EXECUTE 'ALTER TABLE ' || tabs[i] || ' ALTER COLUMN ' || cols[i] || ' TYPE ' || newtype
        || ' USING ' || cols[i] || CASE WHEN arrs[i] THEN '::text[]::' ELSE '::text::' END
        || newtype;
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION USING MESSAGE = 'cannot retype ' || tabs[i] || '.' || cols[i]
        || ' to the rebuilt enum type ' || qname || ' (' || SQLERRM || '): a CHECK ('
        || coalesce((SELECT string_agg(conname, ', ') FROM pg_constraint
          WHERE conrelid = rels[i] AND contype = 'c' AND conkey @> ARRAY[nums[i]::int2]), 'none')
        || '), index or view compares it with a value of the type: drop it before '
        || 'ops.remove_enum_value, add it again after';
    END;
    IF dflts[i] IS NOT NULL THEN
      EXECUTE 'ALTER TABLE ' || tabs[i] || ' ALTER COLUMN ' || cols[i] || ' SET DEFAULT '
        || dflts[i];
    END IF;
  END LOOP;
  EXECUTE 'DROP TYPE ' || oldname;
END $$"""


def remove_enum_value(type_name: str, value: str) -> None:
    """The downgrade of add_enum_value: type_name rebuilt without value, in the revision's
    transaction (one DO block, the same with --sql; nothing to do once the value is gone).

    PostgreSQL cannot drop an enum value: the type is renamed to <name>__old, created again
    with the other values in their order, each column using it (or an array of it, in any
    schema) retyped `USING col::text::type` (its default dropped and put back), and the old
    type dropped. Refused while rows hold the value (their count; online before anything
    runs, with --sql by the block): change them first, no flag helps. A CHECK, partial
    index or view comparing the column with a literal of the type fails the retype: the
    error names the column and its CHECKs; drop them before, add them again after.
    """
    if not op.get_context().as_sql:
        refuse_enum_value(op.get_bind(), type_name, value)
    sql = _REMOVE_VALUE.replace("@COLUMNS@", ENUM_COLUMNS.format(type_oid="typ"))
    sql = sql.replace("@TYPE@", _sql_text(type_name)).replace("@VALUE@", _sql_text(value))
    op.execute(sql.replace(":", "\\:"))  # no bind parameters (sqlalchemy.text)


def _sql_text(value: str) -> str:
    """A string literal without a percent sign (SQLAlchemy doubles those in --sql output)."""
    return _quote(value).replace("%", "' || chr(37) || '")


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


# The trigger of a table made with models/base.py's TableBase: on every UPDATE (ORM or raw
# SQL) updated_at moves to clock_timestamp() (not now(): a later UPDATE in the inserting
# transaction still moves it) and created_at keeps its value. One function serves every
# such table (tasks keeps its own, from 0001); it is created with the first trigger and
# dropped with the last. No percent sign or colon: the same SQL online and with --sql.
UPDATED_AT_FUNCTION = "set_updated_at"
_CREATE_UPDATED_AT_FUNCTION = f"""
DO $$
BEGIN
    IF to_regprocedure('{UPDATED_AT_FUNCTION}()') IS NULL THEN
        CREATE FUNCTION {UPDATED_AT_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $body$
        BEGIN
            NEW.updated_at := clock_timestamp();
            NEW.created_at := OLD.created_at;
            RETURN NEW;
        END;
        $body$;
    END IF;
END $$"""
_DROP_UPDATED_AT_FUNCTION_IF_UNUSED = f"""
DO $$
BEGIN
    IF to_regprocedure('{UPDATED_AT_FUNCTION}()') IS NOT NULL AND NOT EXISTS (
        SELECT FROM pg_trigger WHERE tgfoid = to_regprocedure('{UPDATED_AT_FUNCTION}()')
    ) THEN
        DROP FUNCTION {UPDATED_AT_FUNCTION}();
    END IF;
END $$"""


def updated_at_trigger_name(table: str) -> str:
    """The name of a table's updated_at trigger (as 0001 names tasks' own)."""
    return f"tr_{table}_set_updated_at"[:MAX_IDENTIFIER]


def create_updated_at_trigger(table: str) -> None:
    """The updated_at trigger on table (columns created_at and updated_at), in the revision's
    transaction; the shared function set_updated_at() is created first if missing."""
    quote = op.get_context().impl.dialect.identifier_preparer.quote
    op.execute(_CREATE_UPDATED_AT_FUNCTION)
    op.execute(
        f"CREATE TRIGGER {quote(updated_at_trigger_name(table))} BEFORE UPDATE ON "
        f"{quote(table)} FOR EACH ROW EXECUTE FUNCTION {UPDATED_AT_FUNCTION}()"
    )


def drop_updated_at_trigger(table: str) -> None:
    """The inverse of create_updated_at_trigger: the trigger, then the shared function if
    no other table's trigger uses it any more."""
    quote = op.get_context().impl.dialect.identifier_preparer.quote
    op.execute(f"DROP TRIGGER {quote(updated_at_trigger_name(table))} ON {quote(table)}")
    op.execute(_DROP_UPDATED_AT_FUNCTION_IF_UNUSED)


# ----------------------------------------------------------------- row-level security

_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
_ROLE_WORDS = ("CURRENT_USER", "CURRENT_ROLE", "SESSION_USER", "PUBLIC")
_POLICY_KEYS = {"name", "command", "to", "using", "check", "permissive"}
# A policy as plain data: {"name": ..., "command": "SELECT" | ... | "ALL", "to": a role,
# CURRENT_USER (the migrating role, the tables' owner) or PUBLIC, "using": SQL, "check":
# SQL, "permissive": False for AS RESTRICTIVE}; using/check/permissive may be left out.
PolicyData = Mapping[str, object]


def _role(name: str) -> str:
    return name if name.upper() in _ROLE_WORDS else _PREPARER.quote(name)


def policy_sql(
    table: str, policy: PolicyData, *, name: str | None = None, on: str | None = None
) -> str:
    """The CREATE POLICY statement of one policy (optionally under another name, or on
    another table `on`, as SQL)."""
    unknown = set(policy) - _POLICY_KEYS
    if unknown:
        raise ValueError(f"policy {policy.get('name')!r}: unknown keys {sorted(unknown)}")
    roles = policy["to"] if isinstance(policy["to"], list | tuple) else [policy["to"]]
    kind = "PERMISSIVE" if policy.get("permissive", True) else "RESTRICTIVE"
    sql = (
        f"CREATE POLICY {_PREPARER.quote(str(name or policy['name']))} ON "
        f"{on or _PREPARER.quote(table)} AS {kind} FOR {policy['command']} "
        f"TO {', '.join(_role(str(r)) for r in roles)}"
    )
    if policy.get("using") is not None:
        sql += f" USING ({policy['using']})"
    if policy.get("check") is not None:
        sql += f" WITH CHECK ({policy['check']})"
    return sql


def alter_row_level_security(
    table: str,
    *,
    to: str,
    drop_policies: Sequence[PolicyData] = (),
    create_policies: Sequence[PolicyData] = (),
    revoke: Sequence[str] = (),
    grant: Sequence[str] = (),
    enable: bool | None = None,
    force: bool | None = None,
) -> None:
    """Change a table's row-level security: REVOKE `revoke` from the role `to`, switch
    the flags off (enable/force False), DROP `drop_policies`, CREATE `create_policies`,
    switch the flags on (True), GRANT `grant` (each "SELECT" or "INSERT (a, b)").

    Its inverse is the same call with each pair swapped (drop/create, revoke/grant) and
    the flags negated; None leaves a flag as it is.
    """
    name, role = _PREPARER.quote(table), _role(to)
    statements = [f"REVOKE {g} ON {name} FROM {role}" for g in revoke]
    if force is False:
        statements.append(f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY")
    if enable is False:
        statements.append(f"ALTER TABLE {name} DISABLE ROW LEVEL SECURITY")
    statements += [
        f"DROP POLICY {_PREPARER.quote(str(p['name']))} ON {name}" for p in reversed(drop_policies)
    ]
    statements += [policy_sql(table, p) for p in create_policies]
    if enable:
        statements.append(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
    if force:
        statements.append(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
    statements += [f"GRANT {g} ON {name} TO {role}" for g in grant]
    for statement in statements:
        op.execute(statement)


def enable_row_level_security(
    table: str, policies: Sequence[PolicyData], grants: Sequence[str] = (), *, to: str
) -> None:
    """Put a table under row-level security: CREATE POLICY each of `policies`, ENABLE and
    FORCE ROW LEVEL SECURITY (the owner is not exempt by accident), then GRANT each of
    `grants` ("SELECT", "INSERT (a, b)", ...) to the role `to` (the app role)."""
    alter_row_level_security(
        table, to=to, create_policies=policies, grant=grants, enable=True, force=True
    )


def disable_row_level_security(
    table: str, policies: Sequence[PolicyData], grants: Sequence[str] = (), *, to: str
) -> None:
    """The exact inverse of enable_row_level_security with the same arguments: REVOKE the
    grants, NO FORCE and DISABLE ROW LEVEL SECURITY, DROP the policies."""
    alter_row_level_security(
        table, to=to, drop_policies=policies, revoke=grants, enable=False, force=False
    )
