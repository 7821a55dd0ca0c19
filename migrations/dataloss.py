"""A downgrade that would drop stored data refuses, with the count and the flag to pass.

env.py imports this module: it wraps Alembic's own `op.drop_table` and `op.drop_column`.
While a revision's downgrade() runs (and only then, and never for `--sql`), dropping a
table that holds rows, or a column that holds values, raises `DataLossRefused` instead,
unless the run was told to allow it: `alembic -x allow-data-loss=true downgrade ...`, or
`config.attributes["allow_data_loss"] = True` for a caller in Python. Upgrades are not
guarded here: the schema checks prove that they keep every row.

`ops.remove_enum_value` (the downgrade of `ops.add_enum_value`) refuses too while rows
hold the value, with the count, but always: the flag cannot help, there is no value to map
those rows to (`refuse_enum_value`).
"""

from __future__ import annotations

from alembic.operations import Operations, toimpl
from alembic.operations import ops as alembic_ops
from sqlalchemy import Connection, text

GUARD_OPTION = "guard_data_loss"  # set in the MigrationContext's opts by env.py
FLAG = "-x allow-data-loss=true"
# Counting stops here, so a huge table costs a bounded scan.
COUNT_LIMIT = 1_000_000


class DataLossRefused(Exception):
    """A guarded downgrade would drop stored data."""

    def __init__(self, what: str, count: int, unit: str, fix: str | None = None) -> None:
        amount = f"more than {COUNT_LIMIT}" if count > COUNT_LIMIT else str(count)
        super().__init__(f"it would drop {what} and its {amount} {unit}")
        self.fix = fix  # what to do instead of passing the flag (None: pass the flag)


def _count(operations: Operations, table: str, column: str | None) -> int:
    quote = operations.impl.dialect.identifier_preparer.quote
    where = f" WHERE {quote(column)} IS NOT NULL" if column else ""
    query = f"SELECT count(*) FROM (SELECT 1 FROM {quote(table)}{where} LIMIT {COUNT_LIMIT + 1}) s"
    return int(operations.get_bind().execute(text(query)).scalar_one())


def _guarded(operations: Operations) -> bool:
    context = operations.migration_context
    return bool(context.opts.get(GUARD_OPTION)) and not context.as_sql


@Operations.implementation_for(alembic_ops.DropTableOp, replace=True)
def drop_table(operations: Operations, operation: alembic_ops.DropTableOp) -> None:
    """op.drop_table, refused in a guarded downgrade while the table holds rows."""
    if _guarded(operations):
        rows = _count(operations, operation.table_name, None)
        if rows:
            raise DataLossRefused(f"table {operation.table_name}", rows, "row(s)")
    toimpl.drop_table(operations, operation)


@Operations.implementation_for(alembic_ops.DropColumnOp, replace=True)
def drop_column(operations: Operations, operation: alembic_ops.DropColumnOp) -> None:
    """op.drop_column, refused in a guarded downgrade while the column holds values."""
    if _guarded(operations):
        values = _count(operations, operation.table_name, operation.column_name)
        if values:
            what = f"column {operation.table_name}.{operation.column_name}"
            raise DataLossRefused(what, values, "non-NULL value(s)")
    toimpl.drop_column(operations, operation)


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
        )
