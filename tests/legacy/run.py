"""Running adoption from Python (as env.py receives it), and reading tasks' rows to compare."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from alembic import command
from sqlalchemy import URL, create_engine, pool, text

from models.settings import Settings
from models.task import WHITESPACE
from tests.legacy.build import SQL
from tests.support import PgServer, alembic_config

FOREIGN = (SQL / "foreign_tables.sql").read_text()
NAIVE = ("created_at", "updated_at", "due_date", "recurring_end_date")


def adopt(
    url: URL, *, target: str = "head", settings: Settings | None = None, **options: str
) -> None:
    """`alembic -x adopt=true [-x key=value ...] upgrade target`, in this process
    (options: adopt-timezone="Europe/Berlin", adopt_fix="priority-case", ...; an underscore
    stands for a dash). adopt="plan" only reports."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            cfg = alembic_config(conn, settings)
            given = {key.replace("_", "-"): value for key, value in options.items()}
            cfg.attributes["adopt"] = {"adopt": "true", **given}
            command.upgrade(cfg, target)
    finally:
        engine.dispose()


def task_rows(url: URL) -> dict[int, dict[str, Any]]:
    """Every row of tasks by id, each column as Python reads it (enums as text)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            columns = conn.execute(
                text(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'tasks'::regclass AND attnum > 0 AND NOT attisdropped"
                )
            ).all()
            listed = ", ".join(
                f"{name}::text AS {name}" if "priority" in typ or name == "recurring" else name
                for name, typ in columns
            )
            rows = conn.execute(text(f"SELECT {listed} FROM tasks ORDER BY id")).mappings()
            return {row["id"]: dict(row) for row in rows}
    finally:
        engine.dispose()


def expected(
    legacy: dict[int, dict[str, Any]], zone: str = "UTC", fixes: tuple[str, ...] = ()
) -> dict[int, dict[str, Any]]:
    """What each legacy row's columns must read as after adoption: naive timestamps as
    instants in `zone`, priority labels in lower case (a varchar's upper-case values only
    with the fix), user_id trimmed with that fix. Compare with `legacy_columns` of the
    adopted rows: the columns the shape lacks are the revisions' (their defaults are in the
    schema, which the tests compare as a whole)."""
    tz = ZoneInfo(zone)
    found = {}
    for id_, row in legacy.items():
        row = dict(row)
        for name in NAIVE:
            value = row.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = as_postgresql_reads(value, tz)
        if "priority" in row and ("priority-case" in fixes or row["priority"].isupper()):
            row["priority"] = row["priority"].lower()
        if "trim-user-id" in fixes:
            row["user_id"] = row["user_id"].strip(WHITESPACE)
        found[id_] = row
    return found


def legacy_columns(
    adopted: dict[int, dict[str, Any]], legacy: dict[int, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """The adopted rows, each with the columns its legacy row had (as_utc'd)."""
    columns = next(iter(legacy.values())).keys() if legacy else set()
    return as_utc({i: {c: row[c] for c in columns} for i, row in adopted.items()})


def as_postgresql_reads(naive: datetime, tz: ZoneInfo) -> datetime:
    """`naive AT TIME ZONE tz`, as PostgreSQL reads it at a daylight saving change: a time
    that happens twice is the second one (standard time); a time that never happens (the
    hour skipped) is read with the offset before the change (02:30 -> 01:30 UTC in Berlin)."""
    first, second = naive.replace(tzinfo=tz), naive.replace(tzinfo=tz, fold=1)
    skipped = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive
    return (first if skipped else second).astimezone(UTC)


def as_utc(rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The rows with every aware timestamp in UTC (to compare instants, not zones)."""
    return {
        id_: {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in row.items()}
        for id_, row in rows.items()
    }


def execute(server: PgServer, dbname: str, sql: str) -> None:
    """Run SQL on dbname, committed."""
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        cursor.execute(sql)  # no parameters: a % in the SQL is just a %
        cursor.close()
    engine.dispose()


def scalar(server: PgServer, dbname: str, sql: str) -> object:
    """The first column of the first row of a query on dbname."""
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar()
    engine.dispose()
    return value
