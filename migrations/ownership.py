"""Whose tables: the project's, or another tool's (left alone by every run).

The project owns the tables its models declare and the tables its revisions create (so a
table whose model was removed is still ours, and autogenerate writes its DROP). Every
other table in the schema belongs to another tool, e.g. an auth library's `user`,
`session`, `account` and `verification`: `alembic check`, autogenerate, the schema checks
and the snapshot ignore it (Alembic's public `include_name`/`include_object` hooks), and
name it once per run in one line (`announce`).

One place overrides that: alembic.ini, section `[ownership]`, read through the alembic
`Config` of the run (so a deploy, the CLI, the tests and the checks read the same file,
and a test can set its own with `cfg.set_section_option`):

    [ownership]
    # Tables of other tools, even where a model maps them (e.g. to read the auth library's
    # `user` table): never created, changed or dropped by autogenerate.
    foreign_tables = user, session, account, verification
    foreign_table_prefixes = auth_

A declared table is foreign even if a model or a revision names it.

"Created by a revision" is read from the revisions themselves: each `upgrade()` is run
offline (as `alembic upgrade head --sql` does, no database) and the CREATE TABLE / VIEW
and RENAME TO statements of that SQL are collected, so hand-written `op.execute("CREATE
TABLE ...")` counts as well as `op.create_table`. Check 6 keeps every revision renderable
offline; one that is not falls back to a scan of its source, with a warning. Each file is
rendered once per process (about 1.5 ms), with neither the models (no sqlmodel: a deploy
can afford it) nor a database. Call it outside a migration run (it installs Alembic's `op`
for the rendering), e.g. in env.py before `run_migrations()`.
"""

from __future__ import annotations

import inspect
import io
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, MetaData, text

log = logging.getLogger("models")
SECTION = "ownership"
DOCS = "docs/workflow.md"
VERSION_TABLE = "alembic_version"

# A name as PostgreSQL prints it: "quoted" (doubled quotes inside) or plain, maybe qualified.
_NAME = r'(?:"(?:[^"]|"")+"|[\w$]+)'
_QUALIFIED = rf"({_NAME}(?:\.{_NAME})?)"
_CREATED = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP(?:ORARY)?\s+|UNLOGGED\s+)?"
    r"(?:MATERIALIZED\s+)?(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _QUALIFIED,
    re.IGNORECASE,
)
_RENAMED = re.compile(
    r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?"
    + _QUALIFIED
    + r"\s+RENAME\s+TO\s+("
    + _NAME
    + ")",
    re.IGNORECASE,
)
# In a revision's source, when it cannot be rendered offline: op.create_table("name", ...
_CREATE_CALL = re.compile(r"\bcreate_table\(\s*(['\"])(\w+)\1")
# Tables, partitioned and foreign tables, views and materialized views of the current schema.
_RELATIONS = text(
    "SELECT c.relname FROM pg_class c "
    "WHERE c.relnamespace = current_schema()::regnamespace "
    "AND c.relkind IN ('r', 'p', 'f', 'v', 'm') ORDER BY c.relname"
)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _bare(qualified: str) -> str | None:
    """The table name of `name` or `public.name` (another schema's table: None)."""
    parts = re.findall(_NAME, qualified)
    if len(parts) == 2 and _unquote(parts[0]) != "public":
        return None
    return _unquote(parts[-1])


def tables_in_sql(sql: str) -> set[str]:
    """The tables and views that SQL creates (or renames to), unqualified."""
    found = {_bare(m.group(1)) for m in _CREATED.finditer(sql)}
    found |= {_bare(m.group(2)) for m in _RENAMED.finditer(sql)}
    return {name for name in found if name}


# Per revision file, as last read (path, size, mtime): the tables its upgrade() creates.
_CREATED_BY: dict[tuple[str, int, int], frozenset[str]] = {}


def revision_tables(script: ScriptDirectory) -> frozenset[str]:
    """The tables every revision of the history creates, from its offline SQL."""
    created: set[str] = set()
    for rev in script.walk_revisions("base", "heads"):
        stat = Path(rev.path).stat()
        key = (rev.path, stat.st_size, stat.st_mtime_ns)
        if key not in _CREATED_BY:
            _CREATED_BY[key] = _created_by(rev)
        created |= _CREATED_BY[key]
    return frozenset(created)


@contextmanager
def quietly(logger: str = "alembic.runtime.migration") -> Iterator[None]:
    """Without Alembic's INFO lines ("Context impl PostgresqlImpl." ...) for a context that
    only reads or renders: the run's own context says them once."""
    found = logging.getLogger(logger)
    level = found.level
    found.setLevel(logging.WARNING)
    try:
        yield
    finally:
        found.setLevel(level)


def _created_by(rev: Script) -> frozenset[str]:
    """The tables one revision's upgrade() creates (its source, if it cannot run offline)."""
    buffer = io.StringIO()
    try:
        with quietly():
            context = MigrationContext.configure(
                dialect_name="postgresql",
                opts={"as_sql": True, "output_buffer": buffer, "literal_binds": True},
            )
            with Operations.context(context):
                inspect.unwrap(rev.module.upgrade)()  # env.py's progress wrapper left out
    except Exception as exc:
        source = Path(rev.path).read_text(encoding="utf-8")
        found = {m.group(2) for m in _CREATE_CALL.finditer(source)} | tables_in_sql(source)
        log.warning(
            "Revision %s cannot be rendered offline (%s: %s): its tables are read from its "
            "source instead (%s). `alembic upgrade head --sql` fails on it too (check 6).",
            rev.revision,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
            ", ".join(sorted(found)) or "none found",
        )
        return frozenset(found)
    return frozenset(tables_in_sql(buffer.getvalue()))


def _names(value: str) -> tuple[str, ...]:
    return tuple(name for name in re.split(r"[\s,]+", value) if name)


@dataclass(frozen=True)
class Ownership:
    """Which tables are ours: declared by the models or created by the revisions, unless
    declared foreign in alembic.ini [ownership]. `is_ours` answers for one name."""

    models: frozenset[str] = frozenset()
    revisions: frozenset[str] = frozenset()
    declared: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    # The tables include_name left out so far (for the run's one-line notice).
    left_alone: set[str] = field(default_factory=set, compare=False)

    @classmethod
    def of(
        cls,
        config: Config,
        script: ScriptDirectory | None = None,
        metadata: MetaData | None = None,
    ) -> Ownership:
        """The ownership of a run: the declaration in config, the revisions of script
        (default: config's), and the tables of metadata (the models; None where a run does
        not import them, such as a deploy)."""
        section: Mapping[str, str] = config.get_section(SECTION, {}) or {}
        script = script if script is not None else ScriptDirectory.from_config(config)
        return cls(
            models=frozenset(t.name for t in metadata.tables.values()) if metadata else frozenset(),
            revisions=revision_tables(script),
            declared=frozenset(_names(section.get("foreign_tables", ""))),
            prefixes=_names(section.get("foreign_table_prefixes", "")),
        )

    def is_declared_foreign(self, name: str) -> bool:
        return name in self.declared or (bool(self.prefixes) and name.startswith(self.prefixes))

    def is_ours(self, name: str) -> bool:
        """True for a table the project owns; the version table counts as neither."""
        if self.is_declared_foreign(name) or name == VERSION_TABLE:
            return False
        return name in self.models or name in self.revisions

    def foreign_tables(self, connection: Connection) -> list[str]:
        """The tables (and views) of the current schema that belong to other tools."""
        names = connection.execute(_RELATIONS).scalars()
        return [n for n in names if n != VERSION_TABLE and not self.is_ours(n)]

    # Alembic's hooks (EnvironmentContext.configure), for autogenerate and `alembic check`.
    def include_name(self, name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
        """Reflect only our tables (a foreign table is never read, so never dropped)."""
        if type_ != "table" or name is None or parent_names.get("schema_name") is not None:
            return True
        if self.is_ours(name):
            return True
        if name != VERSION_TABLE:
            self.left_alone.add(name)
        return False

    def include_object(
        self, obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        """A model of a declared foreign table (kept to read it) is never created."""
        if type_ == "table" and name is not None and getattr(obj, "schema", None) is None:
            return not self.is_declared_foreign(name)
        return True


def notice(names: Iterable[str]) -> str | None:
    """The one line that names the tables left alone (None when there are none)."""
    found = sorted(names)
    if not found:
        return None
    n = len(found)
    return (
        f"Leaving {n} table{'s' if n > 1 else ''} of other tools alone: {', '.join(found)} "
        f"(neither declared in models/ nor created by a revision, or declared foreign in "
        f"alembic.ini [{SECTION}]; see {DOCS})"
    )


def announce(names: Iterable[str]) -> None:
    """Log the notice, once per run (the caller's run), when there are foreign tables."""
    line = notice(names)
    if line:
        log.info(line)
