"""The schema checks CI runs on every pull request, as plain functions (no pytest needed).

Every check takes an alembic `Config` (its script_location / version_locations are the
revision history under test) and, when it needs a database, a `PgServer` on which it
creates and drops its own throwaway databases. A check returns None when it passes and
raises `SchemaCheckError` when it fails; the message's first line says what is wrong,
the lines below show the difference and what to do.

    check_single_head(cfg)                     1. one head, no unmerged branch
    check_models_match(cfg, server)            2. models == migrations (+ CHECK/PK names)
    check_stairway(cfg, server)                3. each revision: up, down, up
    check_downgrade_leaves_no_trace(cfg, ...)  4. base after head == never migrated
    check_data_survives(cfg, server)           5. rows from every revision reach head intact
    check_offline_matches_online(cfg, ...)     6. `upgrade head --sql` via psql == online
    check_snapshot(cfg, server)                7. migrations/schema.sql is current
    check_lint(cfg)                            8. squawk on each revision's offline SQL
    check_revisions_stand_alone(cfg)           9. no revision imports application code
"""

from __future__ import annotations

import ast
import difflib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, MetaData, Table, create_engine, inspect, pool
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

import migrations.enums  # noqa: F401  (registers the native enum value comparator)
from models.local import pg_program
from tests.support import ROOT, PgServer

SNAPSHOT = ROOT / "migrations" / "schema.sql"
SNAPSHOT_COMMAND = "python -m tests.snapshot"
SQUAWK_CONFIG = ROOT / ".squawk.toml"
# Top-level packages a revision must never import, directly or through another module:
# the app's models (a revision must keep working after the models change), sqlmodel
# (its types belong to the models, not to the DDL), and the project's tests and benchmarks.
FORBIDDEN_IMPORTS = ("models", "sqlmodel", "tests", "bench")
MAX_DIFF_LINES = 80
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class SchemaCheckError(AssertionError):
    """A schema check failed: the first line says what, the rest shows the difference."""


# --------------------------------------------------------------------------- helpers


def history(cfg: Config) -> list[Script]:
    """The revisions from base to head (parents before children)."""
    try:
        script = scripts(cfg)
        return list(reversed(list(script.walk_revisions("base", "heads"))))
    except Exception as exc:  # alembic: duplicate ids, missing parents, syntax errors
        raise SchemaCheckError(f"The revision history cannot be read: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _name(rev: Script) -> str:
    return f"{rev.revision} ({Path(rev.path).name})"


def _diff(before: str, after: str, before_name: str, after_name: str) -> str:
    lines = list(
        difflib.unified_diff(
            before.splitlines(), after.splitlines(), before_name, after_name, lineterm=""
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)"]
    return "\n".join(lines)


@contextmanager
def bound(cfg: Config, server: PgServer, dbname: str) -> Iterator[Connection]:
    """A connection to dbname, handed to env.py (cfg.attributes) while the block runs."""
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    missing = object()
    before = cfg.attributes.get("connection", missing)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            yield conn
    finally:
        if before is missing:
            cfg.attributes.pop("connection", None)
        else:
            cfg.attributes["connection"] = before
        engine.dispose()


def scripts(cfg: Config) -> ScriptDirectory:
    """One ScriptDirectory per Config, so every revision file is loaded once per check.

    `command.upgrade` builds a new one each call, reloading every revision: a check that
    takes N steps would load N x N files and grow quadratically with the history.
    """
    script = cfg.attributes.get("script_directory")
    if not isinstance(script, ScriptDirectory):
        script = cfg.attributes["script_directory"] = ScriptDirectory.from_config(cfg)
    return script


def run_alembic(cfg: Config, target: str, *, down: bool = False, sql: bool = False) -> None:
    """What `command.upgrade`/`command.downgrade` do, on the cached ScriptDirectory."""
    script = scripts(cfg)
    start, _, dest = target.rpartition(":") if sql else ("", "", target)

    def steps(rev: Any, context: Any) -> Any:
        return script._downgrade_revs(dest, rev) if down else script._upgrade_revs(dest, rev)

    with EnvironmentContext(
        cfg, script, fn=steps, as_sql=sql, starting_rev=start or None, destination_rev=dest
    ):
        script.run_env()


def alembic_step(cfg: Config, target: str, *, down: bool = False, doing: str = "") -> None:
    """alembic upgrade/downgrade on the bound connection; a failure becomes one readable line."""
    try:
        run_alembic(cfg, target, down=down)
    except Exception as exc:
        step = "downgrade" if down else "upgrade"
        raise SchemaCheckError(
            f"`alembic {step} {target}` failed{doing}: {_first_line(exc)}"
        ) from exc


def offline_sql(cfg: Config, target: str = "head") -> str:
    """What `alembic upgrade <target> --sql` prints (target may be a range "0001:0002")."""
    buffer = io.StringIO()
    saved = cfg.output_buffer
    cfg.output_buffer = buffer
    try:
        run_alembic(cfg, target, sql=True)
    except Exception as exc:
        raise SchemaCheckError(
            f"`alembic upgrade {target} --sql` failed: {_first_line(exc)}"
        ) from exc
    finally:
        cfg.output_buffer = saved
    return buffer.getvalue()


# pg_dump lines that change between runs or servers, not with the schema.
_VOLATILE = ("SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict", "-- Dumped ")


def schema_ddl(server: PgServer, dbname: str) -> str:
    """The whole database's DDL (pg_dump --schema-only; alembic_version and volatile lines out).

    Every schema, not just public: a leftover schema, extension, type, function, trigger,
    sequence, index, policy or grant shows up here (grants are part of the schema).
    """
    out = subprocess.run(
        [
            pg_program("pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table=*.alembic_version",
            server.dsn(dbname),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SchemaCheckError(f"pg_dump of {dbname} failed: {out.stderr.strip()}")
    kept = [line for line in out.stdout.splitlines() if not line.startswith(_VOLATILE)]
    text = re.sub(r"--\n-- PostgreSQL database dump( complete)?\n--\n", "", "\n".join(kept))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text + "\n"


# ----------------------------------------------------------------- 1. one head


def check_single_head(cfg: Config) -> str:
    """1. The history has exactly one head (no branch left unmerged); returns it."""
    script = scripts(cfg)
    try:
        heads = list(script.get_heads())
    except Exception as exc:
        raise SchemaCheckError(f"The revision history cannot be read: {_first_line(exc)}") from exc
    if len(heads) == 1:
        return heads[0]
    if not heads:
        raise SchemaCheckError(f"There are no revisions in {script.dir}.")
    lines = []
    for head in sorted(heads):
        rev = script.get_revision(head)
        assert rev is not None
        lines.append(f"  {_name(rev)} on top of {rev.down_revision or 'base'}: {rev.doc}")
    raise SchemaCheckError(
        f"The revision history has {len(heads)} heads, so `alembic upgrade head` refuses "
        "to run: two branches were never merged.\n"
        + "\n".join(lines)
        + "\nRebase the newer revision (set its down_revision to the other head), or merge: "
        f"alembic merge -m 'merge heads' {' '.join(sorted(heads))}"
    )


# ----------------------------------------------------- 2. models match migrations


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render project column types as the plain SQLAlchemy type (as env.py does)."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def _sql_type(type_: Any) -> str:
    try:
        return str(type_.compile(dialect=_DIALECT))
    except Exception:
        return repr(type_)


def _sql_default(default: Any) -> str:
    if default is None or default is False:
        return "no default"
    arg = getattr(default, "arg", default)
    if isinstance(arg, str):
        return f"DEFAULT {arg}"
    if hasattr(arg, "text"):
        return f"DEFAULT {arg.text}"
    try:
        return f"DEFAULT {arg.compile(dialect=_DIALECT)}"
    except Exception:
        return f"DEFAULT {arg!r}"


def _columns(obj: Any) -> str:
    exprs = getattr(obj, "expressions", None) or list(getattr(obj, "columns", []))
    return ", ".join(str(getattr(e, "name", None) or e) for e in exprs)


def describe_difference(diff: Any) -> str:
    """One of Alembic's compare_metadata differences, in words a reviewer understands."""
    kind = diff[0]
    mig, mod = "the migrations", "the models"
    if kind in ("modify_type", "modify_nullable", "modify_default", "modify_comment"):
        _, _schema, table, column, _kw, existing, wanted = diff
        where = f"column {table}.{column}"
        if kind == "modify_type":
            return f"{where}: {mig} make it {_sql_type(existing)}, {mod} say {_sql_type(wanted)}"
        if kind == "modify_nullable":
            null = {True: "NULL", False: "NOT NULL"}
            return f"{where}: {mig} make it {null[existing]}, {mod} say {null[wanted]}"
        if kind == "modify_default":
            return (
                f"{where}: {mig} give it {_sql_default(existing)}, {mod} say {_sql_default(wanted)}"
            )
        return f"{where}: {mig} comment it {existing!r}, {mod} say {wanted!r}"
    if kind in ("add_column", "remove_column"):
        _, _schema, table, column = diff
        spec = f"{_sql_type(column.type)}, {'NULL' if column.nullable else 'NOT NULL'}"
        if kind == "add_column":
            return f"column {table}.{column.name} ({spec}) is in {mod}, but no revision adds it"
        return f"column {table}.{column.name} ({spec}) is in the database, not in {mod}"
    if kind in ("add_table", "remove_table"):
        table = diff[1]
        if kind == "add_table":
            return f"table {table.name} is in {mod}, but no revision creates it"
        return f"table {table.name} is in the database, not in {mod}"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        what = f"{'unique ' if index.unique else ''}index {index.name} on {index.table.name}"
        what += f" ({_columns(index)})"
        if kind == "add_index":
            return f"{what} is in {mod}, but no revision creates it"
        return f"{what} is in the database, not in {mod}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        label = {"UniqueConstraint": "unique constraint", "ForeignKeyConstraint": "foreign key"}
        what = f"{label.get(type(constraint).__name__, 'constraint')} {constraint.name}"
        what += f" on {constraint.table.name} ({_columns(constraint)})"
        if kind.startswith("add"):
            return f"{what} is in {mod}, but no revision creates it"
        return f"{what} is in the database, not in {mod}"
    if kind == "add_enum_value":
        return f"enum type {diff[2]}: value {diff[3]!r} is in {mod}, not in the database"
    return f"{kind}: {diff[1:]!r}"


def constraint_name_differences(conn: Connection, metadata: MetaData) -> list[str]:
    """CHECK and primary key names in the models vs the database (autogenerate skips these)."""
    insp = inspect(conn)
    problems = []
    for table in metadata.sorted_tables:
        if not insp.has_table(table.name, schema=table.schema):
            continue  # autogenerate reports the missing table itself
        wanted = {
            str(c.name)
            for c in table.constraints
            if isinstance(c, sa.CheckConstraint) and c.name is not None
        }
        found = {
            str(c["name"]) for c in insp.get_check_constraints(table.name, schema=table.schema)
        }
        for name in sorted(wanted - found):
            problems.append(
                f"CHECK constraint {name} on {table.name} is in the models, "
                "but the database has no CHECK of that name"
            )
        for name in sorted(found - wanted):
            problems.append(
                f"CHECK constraint {name} on {table.name} is in the database, not in the models"
            )
        pk_found = insp.get_pk_constraint(table.name, schema=table.schema).get("name")
        pk_wanted = table.primary_key.name if table.primary_key.columns else None
        if pk_wanted is not None and str(pk_wanted) != pk_found:
            problems.append(
                f"primary key of {table.name}: the migrations name it {pk_found}, "
                f"the models say {pk_wanted}"
            )
    return problems


def model_differences(conn: Connection, metadata: MetaData) -> tuple[list[str], str]:
    """What differs between a migrated database and the models: (sentences, code to fix)."""
    context = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "compare_server_default": True, "target_metadata": metadata},
    )
    script = produce_migrations(context, metadata)
    assert script.upgrade_ops is not None
    sentences = []
    for diff in script.upgrade_ops.as_diffs():
        for item in diff if isinstance(diff, list) else [diff]:
            sentences.append(describe_difference(item))
    code = ""
    if not script.upgrade_ops.is_empty():
        rendered = render_python_code(script.upgrade_ops, render_item=_render_item)
        ops = [line for line in rendered.splitlines() if not line.strip().startswith("# ###")]
        code = textwrap.indent(textwrap.dedent("\n".join(ops)), "    ")
    return sentences + constraint_name_differences(conn, metadata), code


def _models_metadata() -> MetaData:
    from sqlmodel import SQLModel

    import models  # noqa: F401  (registers the tables)

    return SQLModel.metadata


def check_models_match(cfg: Config, server: PgServer, metadata: MetaData | None = None) -> None:
    """2. After upgrade head on an empty database, Alembic's comparison finds no difference."""
    metadata = _models_metadata() if metadata is None else metadata
    with server.database("models") as name, bound(cfg, server, name) as conn:
        alembic_step(cfg, "head")
        sentences, code = model_differences(conn, metadata)
    if not sentences:
        return
    message = [
        f"The models and the migrations disagree ({len(sentences)} difference"
        f"{'s' if len(sentences) > 1 else ''}): a model changed without a revision, "
        "or a revision without the model.",
        *(f"  - {s}" for s in sentences),
    ]
    if code:
        message += ["`alembic revision --autogenerate` would write:", code.rstrip()]
    raise SchemaCheckError("\n".join(message))


# ------------------------------------------------------------------ 3. stairway


def check_stairway(cfg: Config, server: PgServer) -> None:
    """3. From base, one revision at a time: upgrade, downgrade, upgrade again."""
    revisions = history(cfg)
    with server.database("stairway") as name, bound(cfg, server, name):
        for rev in revisions:
            down = rev.down_revision
            below = "base" if down is None else down if isinstance(down, str) else "-1"
            where = f" (stairway at revision {_name(rev)})"
            alembic_step(cfg, rev.revision, doing=where)
            alembic_step(cfg, below, down=True, doing=where)
            alembic_step(
                cfg, rev.revision, doing=f"{where[:-1]}, upgrading again after its downgrade)"
            )


# ------------------------------------------------- 4. downgrade leaves no trace


def check_downgrade_leaves_no_trace(cfg: Config, server: PgServer) -> None:
    """4. upgrade head then downgrade base gives the schema of a never-migrated database."""
    with server.database("pristine") as pristine, server.database("roundtrip") as name:
        with bound(cfg, server, name):
            alembic_step(cfg, "head")
            alembic_step(cfg, "base", down=True)
        before, after = schema_ddl(server, pristine), schema_ddl(server, name)
    if before != after:
        raise SchemaCheckError(
            "Downgrading to base leaves a trace: the schema differs from a database that "
            "never saw a migration (+ lines are left behind by some downgrade()).\n"
            + _diff(before, after, "never migrated", "upgrade head, downgrade base")
        )


# ----------------------------------------------------------- 5. data survives


@dataclass(frozen=True)
class _Row:
    table: str
    revision: str
    key: dict[str, Any]  # primary key values (empty: the table has none)
    values: dict[str, Any]  # every column as read back right after the insert


def _sample_value(column: sa.Column[Any], revision: str, n: int) -> Any:
    """A value of the column's type that is valid, unique per row, and not its default."""
    type_ = column.type
    if isinstance(type_, sa.Enum) and type_.enums:
        return type_.enums[0]
    try:
        python = type_.python_type
    except NotImplementedError:
        return None
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
    if python is str:
        text = f"{revision}-{n}"
        length = getattr(type_, "length", None)
        return text if not length or len(text) <= length else str(n)[-length:]
    if python is datetime and not getattr(type_, "timezone", False):
        return datetime(2001, 2, 3, 4, 5, 6) + timedelta(seconds=n)
    make = samples.get(python)
    return make() if make else None


def _reflect(name: str, metadata: MetaData, conn: Connection) -> Table:
    """The table as the database has it now.

    SQLAlchemy 2.1 reflects a CHECK added NOT VALID (and not validated yet) with a
    `dialect_options` argument that CheckConstraint() then warns about; the constraint
    itself is reflected right, so that one warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Can't validate argument 'dialect_options'")
        return Table(name, metadata, autoload_with=conn)


def _insert_first(
    conn: Connection, table: Table, candidates: Sequence[Mapping[str, Any]], revision: str
) -> dict[str, Any]:
    """Insert the first candidate row the table accepts; every column as read back."""
    first_error: sa.exc.DBAPIError | None = None
    for values in candidates:
        try:
            with conn.begin_nested():
                row = conn.execute(table.insert().values(dict(values)).returning(*table.c))
                return dict(row.mappings().one())
        except sa.exc.DBAPIError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise SchemaCheckError(
        f"A sample row cannot be inserted into {table.name} at revision {revision} "
        f"({_first_line(first_error)}): give one with "
        f"check_data_survives(..., data={{{revision!r}: {{{table.name!r}: [{{...}}]}}}})"
    ) from first_error


def _insert_rows(
    conn: Connection,
    revision: str,
    given: Mapping[str, Sequence[Mapping[str, Any]]],
    counter: Iterator[int],
) -> list[_Row]:
    """One generated row (or the given rows) in every table, parents before children."""
    insp = inspect(conn)
    names = [n for n, _ in insp.get_sorted_table_and_fkc_names() if n and n != "alembic_version"]
    metadata = MetaData()
    rows: list[_Row] = []
    latest: dict[str, Mapping[str, Any]] = {}
    for name in names:
        table = _reflect(name, metadata, conn)
        wanted = given.get(name)
        if wanted is None:
            n = next(counter)
            sample = {
                c.name: _sample_value(c, revision, n)
                for c in table.columns
                if c.identity is None and c.computed is None
            }
            for fk in table.foreign_keys:
                parent = latest.get(fk.column.table.name)
                sample[fk.parent.name] = parent[fk.column.name] if parent else None
            full = {k: v for k, v in sample.items() if v is not None}
            # A value for every column may break a rule between columns (an end date only
            # with a recurrence): then the same row with one nullable column left NULL.
            generated: list[Mapping[str, Any]] = [full] + [
                {k: v for k, v in full.items() if k != c.name}
                for c in table.columns
                if c.nullable and c.name in full and not c.primary_key
            ]
            batches = [generated]
        else:
            batches = [[values] for values in wanted]
        for candidates in batches:
            read = _insert_first(conn, table, candidates, revision)
            key = {c.name: read[c.name] for c in table.primary_key.columns}
            rows.append(_Row(name, revision, key, read))
            latest[name] = read
    conn.commit()
    return rows


def _lost(conn: Connection, rows: Iterable[_Row]) -> list[str]:
    """What happened to each recorded row at head, as sentences (empty: all intact)."""
    insp = inspect(conn)
    metadata = MetaData()
    problems = []
    for row in rows:
        label = ", ".join(f"{k}={v!r}" for k, v in row.key.items()) or "no primary key"
        where = f"{row.table} row ({label}) inserted at revision {row.revision}"
        if not insp.has_table(row.table):
            problems.append(f"{where}: the table is gone at head")
            continue
        if row.table in metadata.tables:
            table = metadata.tables[row.table]
        else:
            table = _reflect(row.table, metadata, conn)
        match = row.key or {k: v for k, v in row.values.items() if k in table.c}
        if any(k not in table.c for k in match):
            problems.append(f"{where}: its primary key column is gone at head")
            continue
        found = conn.execute(
            sa.select(table).where(*(table.c[k] == v for k, v in match.items()))
        ).mappings()
        now = found.first()
        if now is None:
            problems.append(f"{where}: the row is gone at head")
            continue
        for column, before in row.values.items():
            if column not in now:
                problems.append(f"{where}: column {column} (was {before!r}) is gone at head")
            elif now[column] != before:
                problems.append(f"{where}: {column} was {before!r}, at head it is {now[column]!r}")
    conn.rollback()
    return problems


def check_data_survives(
    cfg: Config,
    server: PgServer,
    data: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
) -> None:
    """5. Rows inserted at each revision are still there, unchanged, at head.

    At every revision each table gets one generated row (valid for its types, lengths and
    foreign keys; if a value in every column breaks a rule between columns, the same row
    with one nullable column left NULL), or the rows given in data[revision][table] when
    generation cannot satisfy a table's rules. Every later upgrade therefore runs on
    non-empty tables too.
    """
    rows: list[_Row] = []
    counter = itertools.count(1)
    with server.database("data") as name, bound(cfg, server, name) as conn:
        for rev in history(cfg):
            alembic_step(
                cfg, rev.revision, doing=" with rows from the earlier revisions in the tables"
            )
            rows += _insert_rows(conn, rev.revision, (data or {}).get(rev.revision, {}), counter)
        problems = _lost(conn, rows)
    if problems:
        raise SchemaCheckError(
            "Data does not survive the upgrade to head: a revision drops or rewrites rows "
            f"that earlier revisions stored ({len(problems)} finding(s)).\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


# ------------------------------------------------ 6. offline equals online


def psql(server: PgServer, dbname: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run SQL through psql (as a DBA would apply `--sql` output), stopping at the first error."""
    return subprocess.run(
        [pg_program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.dsn(dbname)],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
    )


def _version(server: PgServer, dbname: str) -> list[str]:
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT version_num FROM alembic_version ORDER BY 1")
            return list(conn.execute(query).scalars())
    finally:
        engine.dispose()


def check_offline_matches_online(cfg: Config, server: PgServer) -> None:
    """6. `alembic upgrade head --sql` applied by psql builds the same schema as online."""
    sql = offline_sql(cfg, "head")
    with server.database("online") as online, server.database("offline") as offline:
        with bound(cfg, server, online):
            alembic_step(cfg, "head")
        applied = psql(server, offline, sql)
        if applied.returncode != 0:
            raise SchemaCheckError(
                "The SQL that `alembic upgrade head --sql` prints fails in psql on an empty "
                f"database: {applied.stderr.strip()}"
            )
        want, got = schema_ddl(server, online), schema_ddl(server, offline)
        versions = _version(server, online), _version(server, offline)
    if want != got:
        raise SchemaCheckError(
            "Offline and online upgrades build different schemas: a revision behaves "
            "differently under `--sql` (it asks the database something, or skips work).\n"
            + _diff(want, got, "alembic upgrade head", "alembic upgrade head --sql | psql")
        )
    if versions[0] != versions[1]:
        raise SchemaCheckError(
            f"Offline SQL leaves alembic_version at {versions[1]}, online at {versions[0]}"
        )


# --------------------------------------------------------------- 7. snapshot

SNAPSHOT_HEADER = f"""\
-- The schema `alembic upgrade head` builds, as pg_dump --schema-only prints it
-- (alembic_version left out). Generated, do not edit: run `{SNAPSHOT_COMMAND}` after
-- changing a revision and commit the result; a test fails while this file is stale.

"""


def render_snapshot(cfg: Config, server: PgServer) -> str:
    """The snapshot text: the DDL of a fresh database upgraded to head."""
    with server.database("snapshot") as name:
        with bound(cfg, server, name):
            alembic_step(cfg, "head")
        return SNAPSHOT_HEADER + schema_ddl(server, name)


def compare_snapshot(actual: str, path: Path = SNAPSHOT) -> None:
    """Fail, with the diff, when the committed snapshot at path is not `actual`."""
    committed = path.read_text() if path.exists() else ""
    if committed == actual:
        return
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    raise SchemaCheckError(
        f"{shown} is stale: `alembic upgrade head` builds a different schema. "
        f"Run `{SNAPSHOT_COMMAND}` and commit the file.\n"
        + _diff(committed, actual, f"{shown} (committed)", "alembic upgrade head (now)")
    )


def check_snapshot(cfg: Config, server: PgServer, path: Path = SNAPSHOT) -> None:
    """7. The committed schema snapshot is what `alembic upgrade head` builds today."""
    compare_snapshot(render_snapshot(cfg, server), path)


# ------------------------------------------------------------------- 8. lint


def revision_sql(cfg: Config) -> list[tuple[Script, str]]:
    """Each revision's own upgrade SQL, as `alembic upgrade <parent>:<rev> --sql` prints it."""
    result = []
    for rev in history(cfg):
        down = rev.down_revision
        parent = down if isinstance(down, str) or down is None else down[0]
        target = rev.revision if parent is None else f"{parent}:{rev.revision}"
        result.append((rev, offline_sql(cfg, target)))
    return result


def squawk_binary() -> str:
    """The squawk executable of this environment (pip install -e '.[test]')."""
    found = shutil.which("squawk", path=sysconfig.get_path("scripts")) or shutil.which("squawk")
    if found is None:
        raise SchemaCheckError("squawk is not installed: run pip install -e '.[test]'")
    return found


def check_lint(cfg: Config, squawk_config: Path = SQUAWK_CONFIG) -> None:
    """8. squawk finds nothing that locks or rewrites a live table in any revision's SQL."""
    revisions = revision_sql(cfg)
    with tempfile.TemporaryDirectory(prefix="squawk-") as tmp:
        files: dict[str, tuple[Script, list[str]]] = {}
        for rev, sql in revisions:
            name = Path(rev.path).stem + ".sql"
            (Path(tmp) / name).write_text(sql)
            files[name] = (rev, sql.splitlines())
        run = subprocess.run(
            [squawk_binary(), "--config", str(squawk_config), "--reporter", "json", *files],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        violations: list[dict[str, Any]] = json.loads(run.stdout or "[]")
    except json.JSONDecodeError:
        violations = []
    if run.returncode not in (0, 1) or (run.returncode == 1 and not violations):
        raise SchemaCheckError(f"squawk failed to run: {(run.stderr or run.stdout).strip()}")
    if not violations:
        return
    report = []
    for v in violations:
        rev, lines = files[Path(v["file"]).name]
        line = int(v["line"])
        statement = lines[line].strip() if 0 <= line < len(lines) else ""
        report.append(
            f"  - revision {_name(rev)}, SQL line {line + 1}: {v['rule_name']}: {v['message']}"
            + (f" Help: {v['help']}" if v.get("help") else "")
            + (f"\n      {statement}" if statement else "")
        )
    raise SchemaCheckError(
        f"squawk found {len(violations)} operation(s) that lock or rewrite a live table "
        "(SQL from `alembic upgrade <parent>:<revision> --sql`).\n"
        + "\n".join(report)
        + f"\nChange the revision; only if a rule cannot apply here, exclude it in "
        f"{squawk_config.name} with the reason."
    )


# ------------------------------------------------------ 9. revisions stand alone

_ISOLATED_IMPORT = """
import importlib.abc, importlib.util, json, sys
blocked = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"it needs {name}, which a revision must not import")
sys.meta_path.insert(0, Block())
for path in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location("revision_under_test", path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception as exc:
        print(f"{path}: {type(exc).__name__}: {exc}")
"""


def check_revisions_stand_alone(cfg: Config, forbidden: Sequence[str] = FORBIDDEN_IMPORTS) -> None:
    """9. No revision imports application code, directly or through a helper module.

    The source of each revision is searched for imports of the forbidden packages, and
    each revision is loaded in a fresh interpreter in which they cannot be imported.
    """
    revisions = history(cfg)
    problems = []
    for rev in revisions:
        tree = ast.parse(Path(rev.path).read_text(), rev.path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for imported in names:
                if imported.split(".")[0] in forbidden:
                    problems.append(f"{Path(rev.path).name}:{node.lineno} imports {imported}")
    loaded = subprocess.run(
        [sys.executable, "-c", _ISOLATED_IMPORT, json.dumps(list(forbidden))]
        + [rev.path for rev in revisions],
        cwd=ROOT,
        # The same import path as this process, so helper modules resolve as they do here.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True,
        text=True,
        check=False,
    )
    problems += [
        f"{Path(line.split(': ', 1)[0]).name} cannot be loaded without application code: "
        f"{line.split(': ', 1)[-1]}"
        for line in loaded.stdout.splitlines()
    ]
    if loaded.returncode != 0:
        problems.append(f"loading the revisions failed: {loaded.stderr.strip()}")
    if problems:
        raise SchemaCheckError(
            f"Revisions depend on application code ({', '.join(forbidden)}): they break "
            "when the models change. Copy the value or the type into the revision.\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
