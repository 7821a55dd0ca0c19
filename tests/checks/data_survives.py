"""5. Data survives: rows stored at every revision reach head unchanged.

After each revision, every table gets sample rows: one with a value in every column, and
one with NULL in every nullable column. Values come from the column's type, length,
foreign keys and constraints (an enum, or a CHECK ... IN (...) list, gives an allowed
value), or from the revision file itself:

    schema_check_sample_rows = {"tasks": [{"user_id": "u", "title": "t", "rank": 3}]}

After each later revision, every stored row is read again: columns are followed by
position (pg_attribute.attnum), so `RENAME COLUMN` keeps them, and a drop + add loses them.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script
from sqlalchemy import Connection, inspect, text

from tests.checks.common import (
    SchemaCheckError,
    alembic_step,
    bound,
    first_line,
    foreign_tables,
    history,
    name,
)
from tests.checks.exceptions import excepted
from tests.support import PgServer

SAMPLE_ROWS = "schema_check_sample_rows"
_COLUMNS = text(
    """
    SELECT c.relname, a.attnum, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace
      AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'alembic_version'
    """
)
Columns = dict[str, dict[int, str]]  # table -> attnum -> column name


@dataclass
class _Row:
    table: str
    revision: str
    key: dict[int, Any]  # primary key: attnum -> value (empty: no primary key)
    values: dict[int, tuple[str, Any]]  # attnum -> (column name, value) as last read


def _columns(conn: Connection) -> Columns:
    found: Columns = {}
    for table, attnum, column in conn.execute(_COLUMNS):
        found.setdefault(table, {})[attnum] = column
    return found


def _allowed(checks: Sequence[Mapping[str, Any]], column: str) -> str | None:
    """The first value of a CHECK (column IN (...)) on column, as PostgreSQL prints it."""
    for check in checks:
        sql = str(check["sqltext"])
        head = re.match(r"^\W*(\w+)\W", sql)
        if head and head.group(1) == column and " = ANY " in sql and "ARRAY[" in sql:
            literals = re.findall(r"'((?:[^']|'')*)'", sql.split("ARRAY[", 1)[1])
            if literals:
                return str(literals[0]).replace("''", "'")
    return None


def _sample_value(
    column: Mapping[str, Any], checks: Sequence[Mapping[str, Any]], label: str, n: int
) -> Any:
    """A value of the column's type that its constraints accept, unique per row."""
    type_ = column["type"]
    allowed = _allowed(checks, column["name"])
    if allowed is not None:
        return allowed
    if isinstance(type_, sa.Enum) and type_.enums:
        return type_.enums[0]
    try:
        python = type_.python_type
    except NotImplementedError:
        return None
    if python is str:
        value = f"{label}-{n}"
        length = getattr(type_, "length", None)
        return value if not length or len(value) <= length else str(n)[-length:]
    if python is datetime and not getattr(type_, "timezone", False):
        return datetime(2001, 2, 3, 4, 5, 6) + timedelta(seconds=n)
    samples: dict[type, Callable[[], Any]] = {
        bool: lambda: True,
        int: lambda: n,
        float: lambda: n + 0.5,
        Decimal: lambda: Decimal(n),
        datetime: lambda: datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC) + timedelta(seconds=n),
        date: lambda: date(2001, 2, 3) + timedelta(days=n),
        time: lambda: time(4, 5, n % 60),
        timedelta: lambda: timedelta(seconds=n),
        uuid.UUID: lambda: uuid.UUID(int=n),
        dict: lambda: {"n": n},
        list: lambda: [],
        bytes: lambda: str(n).encode(),
    }
    make = samples.get(python)
    return make() if make else None


def _sample_row(
    described: Sequence[Mapping[str, Any]],
    checks: Sequence[Mapping[str, Any]],
    foreign_keys: Sequence[Mapping[str, Any]],
    latest: Mapping[str, Mapping[str, Any]],
    label: str,
    n: int,
) -> dict[str, Any]:
    """One generated row: a value for every column but generated ones; foreign keys point
    at the parent table's latest sample row."""
    values = {c["name"]: _sample_value(c, checks, label, n) for c in described if not _generated(c)}
    for fk in foreign_keys:
        parent = latest.get(fk["referred_table"], {})
        pairs = zip(fk["constrained_columns"], fk["referred_columns"], strict=True)
        values.update((mine, parent.get(theirs)) for mine, theirs in pairs)
    return {k: v for k, v in values.items() if v is not None}


def _generated(column: Mapping[str, Any]) -> bool:
    default = str(column.get("default") or "")
    return bool(column.get("identity") or column.get("computed") or default.startswith("nextval("))


def _quote(conn: Connection, ident: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(ident))


def _read(conn: Connection, row: _Row, columns: Columns) -> dict[int, tuple[str, Any]] | None:
    """The row's columns now (attnum -> (name, value)), found by its primary key."""
    current = columns[row.table]
    match = row.key or {a: v for a, (_, v) in row.values.items() if a in current}
    where = " AND ".join(f"{_quote(conn, current[a])} IS NOT DISTINCT FROM :k{a}" for a in match)
    select = ", ".join(_quote(conn, current[a]) for a in sorted(current))
    found = conn.execute(
        text(f"SELECT {select} FROM {_quote(conn, row.table)} WHERE {where or 'true'}"),
        {f"k{a}": v for a, v in match.items()},
    ).first()
    if found is None:
        return None
    return dict(
        zip(
            sorted(current),
            zip((current[a] for a in sorted(current)), found, strict=True),
            strict=True,
        )
    )


def _insert_rows(
    conn: Connection, rev: Script, counter: Iterator[int], foreign: set[str]
) -> list[_Row]:
    """Sample rows in every table of ours (parents before children; other tools' tables,
    foreign, are never written): the revision's own, or two generated ones (every column
    set; every nullable column NULL)."""
    given: Mapping[str, Sequence[Mapping[str, Any]]] = getattr(rev.module, SAMPLE_ROWS, {})
    insp = inspect(conn)
    names = [
        n
        for n, _ in insp.get_sorted_table_and_fkc_names()
        if n and n != "alembic_version" and n not in foreign
    ]
    columns = _columns(conn)
    rows: list[_Row] = []
    latest: dict[str, dict[str, Any]] = {}
    for table_name in names:
        described = insp.get_columns(table_name)
        pk = insp.get_pk_constraint(table_name)["constrained_columns"]
        table = sa.Table(
            table_name, sa.MetaData(), *(sa.Column(c["name"], c["type"]) for c in described)
        )
        # (values to try in turn until one inserts, must one insert?)
        groups: list[tuple[list[dict[str, Any]], bool]]
        if table_name in given:
            groups = [([dict(values)], True) for values in given[table_name]]
        else:
            checks, foreign_keys = (
                insp.get_check_constraints(table_name),
                insp.get_foreign_keys(table_name),
            )
            args = (described, checks, foreign_keys, latest, rev.revision)
            full = _sample_row(*args, next(counter))
            nulls = {c["name"] for c in described if c["nullable"] and c["name"] not in pk}
            # A CHECK across columns (an end date needs a recurrence) may refuse the full
            # row: then the same row with one of its nullable columns NULL, in turn.
            nullable = sorted(nulls & set(full))
            trimmed = [{k: v for k, v in full.items() if k != column} for column in nullable]
            groups = [([full, *trimmed], True)]
            if nullable:
                nulled = _sample_row(*args, next(counter))
                groups.append(([{k: v for k, v in nulled.items() if k not in nulls}], False))
        for options, required in groups:
            refused: sa.exc.DBAPIError | None = None
            for values in options:
                try:
                    with conn.begin_nested():
                        inserted = conn.execute(table.insert().values(values).returning(*table.c))
                        read = dict(inserted.mappings().one())
                except sa.exc.DBAPIError as exc:
                    refused = refused or exc
                    continue
                refused = None
                by_name = {col: a for a, col in columns[table_name].items()}
                row = _Row(
                    table_name,
                    rev.revision,
                    {by_name[c]: read[c] for c in pk},
                    {by_name[c]: (c, v) for c, v in read.items()},
                )
                row.values = _read(conn, row, columns) or row.values  # as later reads see it
                rows.append(row)
                latest.setdefault(table_name, read)
                break
            if refused is not None and required:
                raise SchemaCheckError(
                    f"A sample row cannot be inserted into {table_name} after revision "
                    f"{name(rev)} ({first_line(refused)}): give valid rows next to the revision, "
                    f"in {Path(rev.path).name}: {SAMPLE_ROWS} = {{{table_name!r}: [{{...}}]}}"
                ) from refused
            # (a NULL row the table's own rules forbid proves nothing: it is left out)
    conn.commit()
    return rows


def _label(row: _Row) -> str:
    key = ", ".join(f"{row.values[a][0]}={v!r}" for a, v in row.key.items()) or "no primary key"
    return f"{row.table} row ({key}) stored at revision {row.revision}"


def _losses(conn: Connection, rows: list[_Row], before: Columns, after: Columns) -> list[str]:
    """What one revision did to the stored rows, as sentences (empty: all intact)."""
    problems: dict[str, None] = {}  # ordered, without repeats
    for row in rows:
        if row.table not in after:
            problems[f"table {row.table} is gone (with its rows)"] = None
            continue
        current, added = after[row.table], set(after[row.table]) - set(before.get(row.table, {}))
        if any(a not in current for a in row.key):
            problems[f"the primary key of {row.table} is gone"] = None
            continue
        now = _read(conn, row, after)
        if now is None:
            problems[f"{_label(row)}: the row is gone"] = None
            continue
        for attnum, (column, value) in row.values.items():
            if attnum in now:
                if now[attnum][1] != value:
                    problems[f"{_label(row)}: {column} was {value!r}, now {now[attnum][1]!r}"] = (
                        None
                    )
                continue
            new = sorted(current[a] for a in added)
            if column in new:
                problems[
                    f"column {row.table}.{column} was dropped and added again: its values are "
                    "gone (change a type with op.alter_column(..., type_=..., "
                    "postgresql_using=...))"
                ] = None
            elif new:
                problems[
                    f"column {row.table}.{column} is gone and {', '.join(new)} appeared: looks "
                    "like a rename written as drop + add: use expand/contract (add the new "
                    "column, copy the data, drop the old one in a later revision) or "
                    f"op.alter_column({row.table!r}, {column!r}, new_column_name=...)"
                ] = None
            else:
                problems[f"column {row.table}.{column} was dropped, with its values"] = None
    conn.rollback()
    return list(problems)


def check_data_survives(cfg: Config, server: PgServer) -> None:
    """5. Rows stored after each revision are still there, unchanged, after every later one.

    Every upgrade therefore also runs on tables with rows, NULLs included. The first
    revision that loses or changes a row is named (unless it waives "data-survives").
    """
    rows: list[_Row] = []
    counter = itertools.count(1)
    with server.database("data") as dbname, bound(cfg, server, dbname) as conn:
        foreign = set(foreign_tables(cfg, conn))
        conn.rollback()
        for rev in history(cfg):
            before = _columns(conn)
            conn.rollback()
            alembic_step(
                cfg, rev.revision, doing=" with rows from the earlier revisions in the tables"
            )
            after = _columns(conn)
            problems = _losses(conn, rows, before, after)
            if problems and not excepted(rev, "data-survives"):
                raise SchemaCheckError(
                    f"Data does not survive revision {name(rev)}: it drops or rewrites rows "
                    f"that earlier revisions stored ({len(problems)} finding(s)).\n"
                    + "\n".join(f"  - {p}" for p in problems)
                    + "\nIf that is the intent (a contract step, a backfill), waive it in the "
                    'revision: schema_check_exceptions = {"data-survives": "<why>"}'
                )
            # What the rows hold now must survive from here (renamed columns: the new name).
            rows = [r for r in rows if r.table in after and _refresh(conn, r, after)]
            conn.rollback()
            rows += _insert_rows(conn, rev, counter, foreign)


def _refresh(conn: Connection, row: _Row, columns: Columns) -> bool:
    if any(a not in columns[row.table] for a in row.key):
        return False
    now = _read(conn, row, columns)
    if now is None:
        return False
    row.values = now
    return True
