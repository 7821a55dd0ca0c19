"""2. Models match migrations: Alembic's comparison, plus what it does not compare.

Only the project's tables are compared, as `alembic check` does (migrations/ownership.py):
another tool's tables in the database (a server that puts them in every new database)
are left out and named once.

Alembic's autogenerate compares types, lengths, nullability, server defaults, indexes,
unique and foreign keys. It skips CHECK constraints (their names and expressions), the
primary key's name and the values of an enum type: these are compared by building the
models' metadata in a scratch database and reading both catalogs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any, Literal

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, MetaData, create_engine, pool, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator

# (registering their comparators: native enum values, row-level security)
from migrations import enums, rls  # noqa: F401
from migrations.describe import describe_difference, flat_diffs, summary
from migrations.ownership import Ownership, announce
from tests.checks.common import (
    SchemaCheckError,
    alembic_step,
    bound,
    models_metadata,
    reflection_quirks,
    scripts,
)
from tests.support import PgServer

# Named CHECK and primary key constraints of ordinary tables: (table, kind, name) -> SQL.
_CONSTRAINTS = text(
    """
    SELECT c.relname, con.contype, con.conname,
           regexp_replace(pg_get_constraintdef(con.oid), ' NOT VALID$', '')
    FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
    WHERE con.contype IN ('c', 'p') AND c.relnamespace = current_schema()::regnamespace
      AND c.relname <> 'alembic_version'
    """
)
_ENUMS = text(
    """
    SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
    FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
    WHERE t.typnamespace = current_schema()::regnamespace GROUP BY t.typname
    """
)
_KIND = {"c": "CHECK constraint", "p": "primary key"}


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render project column types as the plain SQLAlchemy type (as env.py does)."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def _catalog(conn: Connection, tables: set[str]) -> tuple[dict[Any, str], dict[str, list[str]]]:
    constraints = {
        (t, kind, cname): sql for t, kind, cname, sql in conn.execute(_CONSTRAINTS) if t in tables
    }
    return constraints, {typ: list(labels) for typ, labels in conn.execute(_ENUMS)}


# The extensions and the functions (outside extensions) of the migrated database: the
# models' CHECKs may call them (tasks_tags_valid), and the models do not declare them.
_EXTENSIONS = "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY oid"
_FUNCTIONS = """
SELECT pg_get_functiondef(p.oid) FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind = 'f'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY p.oid
"""


def _routines(migrated: Connection) -> list[str]:
    """What the scratch database needs before the models' tables: the migrated database's
    extensions and functions (created as they are; their drift is not this check's)."""
    extensions = migrated.exec_driver_sql(_EXTENSIONS).scalars()
    functions = migrated.exec_driver_sql(_FUNCTIONS).scalars()
    return [f'CREATE EXTENSION IF NOT EXISTS "{name}"' for name in extensions] + list(functions)


def _create(engine: Engine, statements: list[str], strict: bool = False) -> list[str]:
    """Run each statement (a function body's '%' doubled for the driver); return those that
    failed, unless strict."""
    failed = []
    with engine.begin() as conn:
        for statement in statements:
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(statement.replace("%", "%%"))
            except DBAPIError:
                if strict:
                    raise
                failed.append(statement)
    return failed


# The enum types that only other tools' tables use (their columns, arrays included).
_FOREIGN_ENUMS = text(
    """
    SELECT DISTINCT t.typname FROM pg_type t
    JOIN pg_attribute a ON a.atttypid IN (t.oid, t.typarray)
    JOIN pg_class c ON c.oid = a.attrelid
    WHERE t.typtype = 'e' AND c.relname = ANY(:foreign) AND a.attnum > 0
      AND c.relnamespace = current_schema()::regnamespace
      AND t.typnamespace = current_schema()::regnamespace
    EXCEPT
    SELECT DISTINCT t.typname FROM pg_type t
    JOIN pg_attribute a ON a.atttypid IN (t.oid, t.typarray)
    JOIN pg_class c ON c.oid = a.attrelid
    WHERE t.typtype = 'e' AND NOT (c.relname = ANY(:foreign)) AND a.attnum > 0
    """
)


def catalog_differences(
    server: PgServer, migrated: Connection, metadata: MetaData, foreign: Sequence[str] = ()
) -> list[str]:
    """CHECKs (names and expressions), primary key names and enum values: the migrated
    database vs a scratch database built from the models' metadata (the enum types of
    other tools' tables, foreign, left out)."""
    tables = {t.name for t in metadata.sorted_tables}
    with server.database("models_built") as scratch:
        engine = create_engine(server.url(scratch), poolclass=pool.NullPool)
        try:
            later = _create(engine, _routines(migrated))  # the CHECKs may call them
            metadata.create_all(engine)
            _create(engine, later, strict=True)  # those that use the models' types
            with engine.connect() as conn:
                want, want_enums = _catalog(conn, tables)
        finally:
            engine.dispose()
    have, have_enums = _catalog(migrated, tables)
    theirs = set(migrated.execute(_FOREIGN_ENUMS, {"foreign": list(foreign)}).scalars())
    have_enums = {typ: labels for typ, labels in have_enums.items() if typ not in theirs}
    problems = []
    for key in sorted(want.keys() | have.keys()):
        table, kind, cname = key
        what = f"{_KIND[kind]} {cname} on {table}"
        if key not in have:
            others = [n for (t, k, n), sql in have.items() if (t, k) == (table, kind)]
            if kind == "p" and others:
                problems.append(
                    f"primary key of {table}: the migrations name it {others[0]}, "
                    f"the models say {cname}"
                )
            elif kind == "c":
                problems.append(
                    f"{what} is in the models, but the database has no CHECK of that name"
                )
        elif key not in want:
            if kind == "c":
                problems.append(f"{what} is in the database, not in the models")
        elif want[key] != have[key]:
            problems.append(f"{what}: the migrations say {have[key]}, the models say {want[key]}")
    for typ in sorted(want_enums.keys() | have_enums.keys()):
        if typ not in have_enums:
            problems.append(
                f"enum type {typ} {want_enums[typ]} is in the models, no revision creates it"
            )
        elif typ not in want_enums:
            if have_enums[typ]:
                problems.append(f"enum type {typ} is in the database, not in the models")
        elif want_enums[typ] != have_enums[typ]:
            problems.append(
                f"enum type {typ}: the migrations give it {have_enums[typ]}, "
                f"the models say {want_enums[typ]} (ALTER TYPE {typ} ADD VALUE ...)"
            )
    return problems


def model_differences(
    conn: Connection, metadata: MetaData, ownership: Ownership | None = None
) -> tuple[list[str], str]:
    """Alembic's comparison of a migrated database with the models: (sentences, code).

    With ownership, as env.py compares: other tools' tables are left out (and named)."""
    hooks: dict[str, Any] = {}
    if ownership is not None:
        hooks = {"include_name": ownership.include_name, "include_object": ownership.include_object}
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "target_metadata": metadata,
            **hooks,
        },
    )
    with reflection_quirks():
        script = produce_migrations(context, metadata)
    if ownership is not None:
        announce(ownership.left_alone)
    assert script.upgrade_ops is not None
    sentences = [describe_difference(d) for d in flat_diffs(script.upgrade_ops.as_diffs())]
    code = ""
    if not script.upgrade_ops.is_empty():
        rendered = render_python_code(script.upgrade_ops, render_item=_render_item)
        ops = [line for line in rendered.splitlines() if not line.strip().startswith("# ###")]
        code = textwrap.indent(textwrap.dedent("\n".join(ops)), "    ")
    return sentences, code


def check_models_match(cfg: Config, server: PgServer, metadata: MetaData | None = None) -> None:
    """2. After upgrade head on an empty database, nothing differs from the models
    (every module of models/ imported), enum values and CHECK expressions included."""
    metadata = models_metadata() if metadata is None else metadata
    with server.database("models") as dbname, bound(cfg, server, dbname) as conn:
        alembic_step(cfg, "head")
        ownership = Ownership.of(cfg, scripts(cfg), metadata)
        sentences, code = model_differences(conn, metadata, ownership)
        foreign = ownership.foreign_tables(conn)
        sentences += catalog_differences(server, conn, metadata, foreign)
        conn.rollback()
    if not sentences:
        return
    message = [summary(sentences), *(f"  - {s}" for s in sentences)]
    if code:
        message += ["`alembic revision --autogenerate` would write:", code.rstrip()]
    raise SchemaCheckError("\n".join(message))
