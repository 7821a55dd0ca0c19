"""No stored data is lost silently, going up or down: a revision that would lose it refuses,
with the count and the flag to pass.

env.py imports this module: it wraps Alembic's own `op.drop_table`, `op.drop_column` and
`op.alter_column`. While a revision runs (never for `--sql`, where there is no data to
count), dropping a table that holds rows, dropping a column that holds values, or
narrowing a column's type below values it holds (a shorter varchar, text -> varchar(n), a
smaller numeric or integer) raises `DataLossRefused` instead, unless the run was told to
allow it: `alembic -x allow-data-loss=true upgrade|downgrade ...`, or
`config.attributes["allow_data_loss"] = True` for a caller in Python. Allowed, a varchar
narrowing cuts the values that do not fit (`USING left(col, n)`) and a numeric one
rounds them; values too large for a numeric or integer type stop it either way.

An upgrade whose revision declares the data-survives exception (a reviewed contract step:
`schema_check_exceptions = {"data-survives": "<why>"}`, see tests/checks/exceptions.py)
drops what it declares without the flag; its downgrade is guarded like any other.
A drop written as raw SQL (`op.execute("DROP TABLE ...")`) is not seen here.

`ops.remove_enum_value` (the downgrade of `ops.add_enum_value`) refuses too while rows
hold the value, with the count, but always: the flag cannot help, there is no value to map
those rows to (`refuse_enum_value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations, toimpl
from alembic.operations import ops as alembic_ops
from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql

GUARD_OPTION = "guard_data_loss"  # set in the MigrationContext's opts by env.py
FLAG = "-x allow-data-loss=true"
WAIVER = "data-survives"  # the reviewed exception that lets an upgrade drop data
EXCEPTIONS = "schema_check_exceptions"
# Counting stops here, so a huge table costs a bounded scan.
COUNT_LIMIT = 1_000_000
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _amount(count: int) -> str:
    return f"more than {COUNT_LIMIT}" if count > COUNT_LIMIT else str(count)


class DataLossRefused(Exception):
    """A guarded revision would lose stored data."""

    def __init__(
        self,
        what: str,
        count: int,
        unit: str,
        fix: str | None = None,
        *,
        message: str | None = None,
        consent: str = "drop the data",
        unchanged: str = "nothing was dropped",
    ) -> None:
        super().__init__(message or f"it would drop {what} and its {_amount(count)} {unit}")
        self.fix = fix  # what to do instead of passing the flag (None: pass the flag)
        self.consent = consent  # "To <consent>, run: alembic -x allow-data-loss=true ..."
        self.unchanged = unchanged


def waives(module: ModuleType) -> bool:
    """True when a revision declares the reviewed data-survives exception."""
    declared = getattr(module, EXCEPTIONS, {})
    return isinstance(declared, dict) and bool(str(declared.get(WAIVER, "")).strip())


def _quote(operations: Operations, name: str, schema: str | None = None) -> str:
    quote = operations.impl.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def _count(operations: Operations, table: str, where: str | None, schema: str | None = None) -> int:
    where = f" WHERE {where}" if where else ""
    source = _quote(operations, table, schema)
    query = f"SELECT count(*) FROM (SELECT 1 FROM {source}{where} LIMIT {COUNT_LIMIT + 1}) s"
    return int(operations.get_bind().execute(text(query)).scalar_one())


def _guarded(operations: Operations) -> bool:
    context = operations.migration_context
    return bool(context.opts.get(GUARD_OPTION)) and not context.as_sql


@Operations.implementation_for(alembic_ops.DropTableOp, replace=True)
def drop_table(operations: Operations, operation: alembic_ops.DropTableOp) -> None:
    """op.drop_table, refused in a guarded run while the table holds rows."""
    if _guarded(operations):
        rows = _count(operations, operation.table_name, None, operation.schema)
        if rows:
            raise DataLossRefused(f"table {operation.table_name}", rows, "row(s)")
    toimpl.drop_table(operations, operation)


@Operations.implementation_for(alembic_ops.DropColumnOp, replace=True)
def drop_column(operations: Operations, operation: alembic_ops.DropColumnOp) -> None:
    """op.drop_column, refused in a guarded run while the column holds values."""
    if _guarded(operations):
        column = _quote(operations, operation.column_name)
        values = _count(operations, operation.table_name, f"{column} IS NOT NULL", operation.schema)
        if values:
            what = f"column {operation.table_name}.{operation.column_name}"
            raise DataLossRefused(what, values, "non-NULL value(s)")
    toimpl.drop_column(operations, operation)


# ------------------------------------------------------------------- narrowing a type

INTEGER_RANGE = {16: 2**15, 32: 2**31, 64: 2**63}  # -n <= value < n
INTEGER_DIGITS = {16: 5, 32: 10, 64: 19}


def shape(type_: Any) -> tuple[Any, ...] | None:
    """What a type can hold: ("string", length or None), ("numeric", precision, scale),
    ("integer", bits), ("float",); None for any other type (not judged here)."""
    type_ = getattr(type_, "impl_instance", type_)  # a TypeDecorator: the type it stores as
    if type_ is None or isinstance(type_, sa.Enum):
        return None
    if isinstance(type_, sa.String):
        return ("string", type_.length)
    if isinstance(type_, sa.SmallInteger):
        return ("integer", 16)
    if isinstance(type_, sa.BigInteger):
        return ("integer", 64)
    if isinstance(type_, sa.Integer):
        return ("integer", 32)
    if isinstance(type_, sa.Float):
        return ("float",)
    if isinstance(type_, sa.Numeric):
        return ("numeric", type_.precision, type_.scale or 0)
    return None


def _holds(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """True when every value of shape old fits shape new unchanged (a widening)."""
    kind = new[0]
    if kind == "string":
        return new[1] is None or (old[0] == "string" and old[1] is not None and old[1] <= new[1])
    if kind == "float" or old[0] not in ("integer", "numeric", "float"):
        return True  # not judged: a float, or a cast PostgreSQL refuses without USING
    if kind == "numeric" and new[1] is None:
        return True
    if kind == "numeric":
        digits = new[1] - new[2]
        if old[0] == "integer":
            return bool(digits >= INTEGER_DIGITS[old[1]])
        return bool(
            old[0] == "numeric"
            and old[1] is not None
            and old[2] <= new[2]
            and (old[1] - old[2] <= digits)
        )
    if kind == "integer":
        return old[0] == "integer" and bool(old[1] <= new[1])
    return True


def narrows(old_type: Any, new_type: Any) -> bool:
    """True when a column of old_type may hold values that new_type cuts, rounds or cannot
    hold (autogenerate marks such an alter_column; the guard counts those values)."""
    old, new = shape(old_type), shape(new_type)
    return old is not None and new is not None and not _holds(old, new)


@dataclass
class Narrowing:
    """The values of one column that a type change would lose."""

    lossy: str  # SQL: this value would be cut or rounded
    overflow: str | None  # SQL: this value cannot be stored at all (None: never)
    unit: str  # what the lossy values are, in words
    cut: str | None  # the USING expression that cuts them (allowed runs), if any


def _narrowing(column: str, old: tuple[Any, ...], new: tuple[Any, ...]) -> Narrowing:
    value = f"{column}::numeric"
    if new[0] == "string":
        n = new[1]
        return Narrowing(
            f"char_length({column}::text) > {n}",
            None,
            f"value(s) longer than {n} characters",
            f"left({column}::text, {n})",
        )
    if new[0] == "numeric":
        precision, scale = new[1], new[2]
        return Narrowing(
            f"{value} <> round({value}, {scale})",
            f"abs(round({value}, {scale})) >= 1e{precision - scale}",
            f"value(s) with more than {scale} decimal place(s), to be rounded",
            None,
        )
    limit = INTEGER_RANGE[new[1]]
    return Narrowing(
        f"{value} <> round({value})",
        f"round({value}) NOT BETWEEN {-limit} AND {limit - 1}",
        "value(s) with a fraction, to be rounded",
        None,
    )


def _current_type(operations: Operations, table: str, column: str, schema: str | None) -> Any:
    for found in sa.inspect(operations.get_bind()).get_columns(table, schema=schema):
        if found["name"] == column:
            return found["type"]
    return None


@Operations.implementation_for(alembic_ops.AlterColumnOp, replace=True)
def alter_column(operations: Operations, operation: alembic_ops.AlterColumnOp) -> None:
    """op.alter_column, refused while a narrower type would lose values the column holds;
    allowed, a varchar narrowing cuts them (unless the revision gives postgresql_using)."""
    new = shape(operation.modify_type)
    if new is not None and not operations.migration_context.as_sql:
        table, name, schema = operation.table_name, operation.column_name, operation.schema
        old = shape(_current_type(operations, table, name, schema))
        if old is not None and not _holds(old, new):
            _refuse_narrowing(operations, operation, _narrowing(_quote(operations, name), old, new))
    toimpl.alter_column(operations, operation)


def _refuse_narrowing(
    operations: Operations, operation: alembic_ops.AlterColumnOp, narrowing: Narrowing
) -> None:
    table, schema = operation.table_name, operation.schema
    where = f"{table}.{operation.column_name}"
    new_sql = operation.modify_type.compile(dialect=_PG)  # type: ignore[union-attr]
    if narrowing.overflow is not None:
        too_big = _count(operations, table, narrowing.overflow, schema)
        if too_big:
            raise DataLossRefused(
                where,
                too_big,
                "",
                message=f"column {where} holds {_amount(too_big)} value(s) that {new_sql} "
                "cannot store",
                fix=f"change those values first, or keep a wider type; {FLAG} cannot help",
                unchanged="nothing was changed",
            )
    guarded = _guarded(operations)
    if not guarded and (narrowing.cut is None or "postgresql_using" in operation.kw):
        return  # allowed, and nothing to cut: PostgreSQL rounds them itself
    lossy = _count(operations, table, f"({narrowing.lossy}) IS TRUE", schema)
    if not lossy:
        return
    if guarded:
        raise DataLossRefused(
            where,
            lossy,
            "",
            message=(
                f"it would narrow column {where} to {new_sql} and lose its "
                f"{_amount(lossy)} {narrowing.unit}"
            ),
            consent="cut or round them",
            unchanged="nothing was changed",
        )
    operation.kw["postgresql_using"] = narrowing.cut


# ------------------------------------------------------------------------ enum values

# The table columns (and array columns) of an enum type, given as SQL yielding its oid; one
# row per column to retype: partitions and inherited columns follow their parent's. No
# percent sign: SQLAlchemy doubles those in --sql output (ops.remove_enum_value).
ENUM_COLUMNS = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS tab,
       quote_ident(a.attname) AS col,
       a.atttypid <> t.oid AS is_array, pg_get_expr(d.adbin, d.adrelid) AS dflt,
       c.oid AS rel, a.attnum AS num
FROM pg_type t
JOIN pg_attribute a ON a.atttypid IN (t.oid, t.typarray)
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE t.oid = {type_oid} AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0
  AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1, a.attnum"""


def holds_value(column: str, is_array: bool) -> str:
    """The SQL condition: this column (of an enum type or an array of it) holds :value."""
    if is_array:
        return f"{column}::text[] @> ARRAY[CAST(:value AS text)]"
    return f"{column}::text = :value"


def refuse_enum_value(bind: Connection, type_name: str, value: str) -> None:
    """Refuses (DataLossRefused, with the count) removing an enum value that rows hold.

    Always, even with the flag: there is no value to map those rows to, so the rows must
    be changed first (an UPDATE, by hand or in the revision before the removal)."""
    type_oid = "to_regtype(:type_name)"
    columns = bind.execute(text(ENUM_COLUMNS.format(type_oid=type_oid)), {"type_name": type_name})
    rows = 0
    for tab, col, is_array, *_ in columns.all():
        where = holds_value(col, is_array)
        limit = COUNT_LIMIT + 1
        query = f"SELECT count(*) FROM (SELECT 1 FROM {tab} WHERE {where} LIMIT {limit}) s"
        rows += int(bind.execute(text(query), {"value": value}).scalar_one())
    if rows:
        raise DataLossRefused(
            f"value {value!r} of enum type {type_name}",
            rows,
            "row(s) holding it",
            fix=(
                "change those rows to another value first (an UPDATE, by hand or in the "
                f"revision before ops.remove_enum_value); {FLAG} cannot help: there is no "
                "value to map them to"
            ),
            unchanged="nothing was changed",
        )
