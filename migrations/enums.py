"""Native PostgreSQL enums in autogenerate: the type around its column, and its values.

Alembic adds a native enum column without its type, and compares no enum values. Here:

- `CreateEnumType`: the explicit `op.execute("CREATE TYPE ...")` before the first column
  (or table) that uses a new type, and `DROP TYPE` after it in the downgrade; the column
  renders as `postgresql.ENUM(..., create_type=False)` (`render_type`, called by env.py's
  render_item), so nothing creates the type twice, online or `--sql`;
- `compare_enum_default`: a native enum column's default compared as text (Alembic's own
  comparison asks the server `'old'::type = 'new'`, which fails for a value not added yet);
- `compare_enum_values`: an Alembic comparator (registered on import of this module) that
  compares the labels of every native enum type the models use (pg_enum) with the models'
  values. A value added is an `AddEnumValue` (`ops.add_enum_value`, an autocommit step:
  PostgreSQL cannot use a new value in the transaction that added it; its downgrade is
  `ops.remove_enum_value`, which rebuilds the type without it); a value removed from the models,
  renamed or moved is refused with the manual path (PostgreSQL cannot drop a value).

env.py (when comparing with the models) and the schema checks import this module, so
`alembic revision --autogenerate`, `alembic check` and the checks see the same values.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import sqlalchemy as sa
from alembic.autogenerate import comparators, renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation
from alembic.operations import ops as alembic_ops
from alembic.util import CommandError, PriorityDispatchResult
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.base import PGInspector

OPS_IMPORT = "from migrations import ops"
PG_IMPORT = "from sqlalchemy.dialects import postgresql"
_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]


def is_native(type_: Any) -> bool:
    """A native PostgreSQL enum (sa.Enum with native_enum left True, or postgresql.ENUM)."""
    return isinstance(type_, sa.Enum) and bool(type_.native_enum) and type_.name is not None


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _type_sql(name: str, schema: str | None) -> str:
    quoted = _PREPARER.quote(name)
    return f"{_PREPARER.quote_schema(schema)}.{quoted}" if schema else quoted


def create_type_sql(type_: sa.Enum) -> str:
    values = ", ".join(_literal(v) for v in type_.enums)
    return f"CREATE TYPE {_type_sql(str(type_.name), type_.schema)} AS ENUM ({values})"


class CreateEnumType(MigrateOperation):
    """`op.execute("CREATE TYPE name AS ENUM (...)")`; reversed: `DROP TYPE name`."""

    def __init__(self, type_: sa.Enum, drop: bool = False) -> None:
        self.type, self.drop = type_, drop

    def reverse(self) -> MigrateOperation:
        return CreateEnumType(self.type, drop=not self.drop)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("drop_enum" if self.drop else "add_enum", self.type.schema, self.type.name)


class AddEnumValue(MigrateOperation):
    """`ops.add_enum_value(type, value, before=/after=)`; reversed: `ops.remove_enum_value`."""

    def __init__(
        self,
        name: str,
        value: str,
        *,
        schema: str | None = None,
        before: str | None = None,
        after: str | None = None,
        undo: bool = False,
    ) -> None:
        self.name, self.value, self.schema = name, value, schema
        self.before, self.after, self.undo = before, after, undo

    def reverse(self) -> MigrateOperation:
        return AddEnumValue(
            self.name,
            self.value,
            schema=self.schema,
            before=self.before,
            after=self.after,
            undo=not self.undo,
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("add_enum_value", self.schema, self.name, self.value)


@renderers.dispatch_for(CreateEnumType)
def _render_type(autogen_context: AutogenContext, op: CreateEnumType) -> str:
    if op.drop:
        return f"op.execute({'DROP TYPE ' + _type_sql(str(op.type.name), op.type.schema)!r})"
    return f"op.execute({create_type_sql(op.type)!r})"


@renderers.dispatch_for(AddEnumValue)
def _render_value(autogen_context: AutogenContext, op: AddEnumValue) -> str:
    autogen_context.imports.add(OPS_IMPORT)
    args = [repr(_type_sql(op.name, op.schema)), repr(op.value)]
    if op.undo:
        return f"ops.remove_enum_value({', '.join(args)})"
    if op.before is not None:
        args.append(f"before={op.before!r}")
    if op.after is not None:
        args.append(f"after={op.after!r}")
    return f"ops.add_enum_value({', '.join(args)})"


def render_type(type_: Any, autogen_context: Any) -> str | Literal[False]:
    """A native enum column's type as `postgresql.ENUM(..., create_type=False)`: its type is
    created (or already exists) by an explicit statement, never by the column's table."""
    if not is_native(type_):
        return False
    autogen_context.imports.add(PG_IMPORT)
    args = [repr(v) for v in type_.enums] + [f"name={type_.name!r}"]
    if type_.schema:
        args.append(f"schema={type_.schema!r}")
    return f"postgresql.ENUM({', '.join(args)}, create_type=False)"


def model_enums(metadata: sa.MetaData) -> dict[tuple[str | None, str], sa.Enum]:
    """Every native enum type the models' columns use, by (schema, name)."""
    found: dict[tuple[str | None, str], sa.Enum] = {}
    for table in metadata.sorted_tables:
        for column in table.columns:
            if is_native(column.type):
                assert isinstance(column.type, sa.Enum)
                found.setdefault((column.type.schema, str(column.type.name)), column.type)
    return found


def database_enums(bind: sa.Connection, schema: str | None) -> dict[str, list[str]]:
    """The enum types of one schema (None: the default) and their labels, in sort order."""
    inspector = sa.inspect(bind)
    assert isinstance(inspector, PGInspector)
    return {str(e["name"]): list(e["labels"]) for e in inspector.get_enums(schema=schema)}


def value_changes(
    name: str, old: list[str], new: list[str]
) -> list[tuple[str, str | None, str | None]]:
    """The values to add (value, before, after) to turn old into new, in order.

    Refused (one line with the manual path) when new drops, renames or moves a value.
    """
    if [v for v in new if v in old] != old:
        gone = [v for v in old if v not in new]
        what = f"drop {', '.join(map(repr, gone))}" if gone else "reorder its values"
        raise CommandError(
            f"enum type {name}: the models {what} (database: {', '.join(old)}); PostgreSQL "
            "cannot drop or move an enum value: write the revision by hand: CREATE TYPE a new "
            "type, ALTER COLUMN ... TYPE it USING col::text::<new type> (after moving the "
            "rows off the old value), DROP TYPE the old one; or expand/contract with a new "
            "column (see docs/workflow.md)"
        )
    added = []
    for n, value in enumerate(new):
        if value in old:
            continue
        # After the value declared before it (added already, or old); the first: before
        # the first old value.
        added.append((value, None if n else old[0], new[n - 1] if n else None))
    return added


@comparators.dispatch_for("schema", qualifier="postgresql")
def compare_enum_values(
    autogen_context: AutogenContext, upgrade_ops: alembic_ops.UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Values added to a native enum type that exists in the database: AddEnumValue ops."""
    bind, metadata = autogen_context.connection, autogen_context.metadata
    if bind is None or not isinstance(metadata, sa.MetaData):
        return PriorityDispatchResult.CONTINUE
    loaded: dict[str | None, dict[str, list[str]]] = {}
    for (schema, name), type_ in model_enums(metadata).items():
        if schema not in loaded:
            loaded[schema] = database_enums(bind, schema)
        old = loaded[schema].get(name)
        if old is None:
            continue  # a new type: created with its first column (migrations/autogen.py)
        for value, before, after in value_changes(name, old, list(type_.enums)):
            upgrade_ops.ops.append(
                AddEnumValue(name, value, schema=schema, before=before, after=after)
            )
    return PriorityDispatchResult.CONTINUE


_LITERAL = re.compile(r"'((?:[^']|'')*)'(?:::[\w.\"]+)?")


def _default_value(default: Any) -> str | None:
    """The value a constant server default holds: a model's "x" or text("'x'"), or the
    database's 'x'::type; None for anything else (an expression)."""
    if not isinstance(default, sa.DefaultClause):
        return None
    if isinstance(default.arg, str):
        return default.arg
    found = _LITERAL.fullmatch(getattr(default.arg, "text", ""))
    return found.group(1).replace("''", "'") if found else None


@comparators.dispatch_for("column", subgroup="server_default", qualifier="postgresql")
def compare_enum_default(
    autogen_context: AutogenContext,
    alter_column_op: alembic_ops.AlterColumnOp,
    schema: str | None,
    tname: str,
    cname: str,
    conn_col: sa.Column[Any],
    metadata_col: sa.Column[Any],
) -> PriorityDispatchResult:
    """A native enum column's constant default, compared as text (no server round trip)."""
    if not is_native(metadata_col.type):
        return PriorityDispatchResult.CONTINUE
    wanted, found = metadata_col.server_default, conn_col.server_default
    values = [_default_value(d) if d is not None else "" for d in (wanted, found)]
    if None in values:
        return PriorityDispatchResult.CONTINUE  # an expression: Alembic's own comparison
    alter_column_op.existing_server_default = found
    if values[0] != values[1]:
        alter_column_op.modify_server_default = wanted
    return PriorityDispatchResult.STOP
