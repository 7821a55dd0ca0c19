"""A downgrade that would drop stored data refuses, with the count and the flag to pass.

env.py imports this module: it wraps Alembic's own `op.drop_table` and `op.drop_column`.
While a revision's downgrade() runs (and only then, and never for `--sql`), dropping a
table that holds rows, or a column that holds values, raises `DataLossRefused` instead,
unless the run was told to allow it: `alembic -x allow-data-loss=true downgrade ...`, or
`config.attributes["allow_data_loss"] = True` for a caller in Python. Upgrades are not
guarded here: the schema checks prove that they keep every row.
"""

from __future__ import annotations

from alembic.operations import Operations, toimpl
from alembic.operations import ops as alembic_ops
from sqlalchemy import text

GUARD_OPTION = "guard_data_loss"  # set in the MigrationContext's opts by env.py
FLAG = "-x allow-data-loss=true"
# Counting stops here, so a huge table costs a bounded scan.
COUNT_LIMIT = 1_000_000


class DataLossRefused(Exception):
    """A guarded downgrade would drop stored data."""

    def __init__(self, what: str, count: int, unit: str) -> None:
        amount = f"more than {COUNT_LIMIT}" if count > COUNT_LIMIT else str(count)
        super().__init__(f"it would drop {what} and its {amount} {unit}")


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
