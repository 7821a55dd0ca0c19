"""What every schema check shares: the history, running alembic in-process, pg_dump, diffs."""

from __future__ import annotations

import difflib
import importlib
import io
import pkgutil
import re
import subprocess
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, pool
from sqlalchemy.exc import SAWarning

from migrations.ownership import Ownership
from models.local import pg_program
from tests.support import PgServer

MAX_DIFF_LINES = 80


class SchemaCheckError(AssertionError):
    """A schema check failed: the first line says what, the rest shows the difference."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver error's own message)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def name(rev: Script) -> str:
    """How a revision is named in a message: its id and its file."""
    return f"{rev.revision} ({Path(rev.path).name})"


def parent(rev: Script) -> str:
    """The target that `alembic downgrade` takes to undo just this revision."""
    down = rev.down_revision
    return "base" if down is None else down if isinstance(down, str) else "-1"


def diff(before: str, after: str, before_name: str, after_name: str) -> str:
    """A unified diff, cut at MAX_DIFF_LINES."""
    lines = list(
        difflib.unified_diff(
            before.splitlines(), after.splitlines(), before_name, after_name, lineterm=""
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)"]
    return "\n".join(lines)


def scripts(cfg: Config) -> ScriptDirectory:
    """One ScriptDirectory per Config, so every revision file is loaded once per check.

    `command.upgrade` builds a new one each call, reloading every revision: a check that
    takes N steps would load N x N files and grow quadratically with the history.
    """
    script = cfg.attributes.get("script_directory")
    if not isinstance(script, ScriptDirectory):
        script = cfg.attributes["script_directory"] = ScriptDirectory.from_config(cfg)
    return script


def history(cfg: Config, since: str | None = None) -> list[Script]:
    """The revisions from base (or after `since`) to head, parents before children."""
    try:
        script = scripts(cfg)
        revisions = list(reversed(list(script.walk_revisions("base", "heads"))))
    except Exception as exc:  # alembic: duplicate ids, missing parents, syntax errors
        raise SchemaCheckError(f"The revision history cannot be read: {first_line(exc)}") from exc
    if since is None:
        return revisions
    ids = [rev.revision for rev in revisions]
    if since not in ids:
        raise SchemaCheckError(f"since={since!r} is not a revision of this history")
    return revisions[ids.index(since) + 1 :]


@contextmanager
def bound(cfg: Config, server: PgServer, dbname: str) -> Iterator[Connection]:
    """A connection to dbname, handed to env.py (cfg.attributes) while the block runs.

    Downgrades may drop rows here (the checks' own databases): allow_data_loss is set.
    """
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    saved = {k: cfg.attributes.get(k) for k in ("connection", "allow_data_loss")}
    try:
        with engine.connect() as conn:
            cfg.attributes.update(connection=conn, allow_data_loss=True)
            yield conn
    finally:
        for key, value in saved.items():
            if value is None:
                cfg.attributes.pop(key, None)
            else:
                cfg.attributes[key] = value
        engine.dispose()


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
            f"`alembic {step} {target}` failed{doing}: {first_line(exc)}"
        ) from exc


def offline_sql(cfg: Config, target: str = "head", *, down: bool = False) -> str:
    """What `alembic upgrade <target> --sql` prints (target may be a range "0001:0002");
    with down, what `alembic downgrade <from>:<to> --sql` prints."""
    buffer = io.StringIO()
    saved = cfg.output_buffer
    cfg.output_buffer = buffer
    try:
        run_alembic(cfg, target, down=down, sql=True)
    except Exception as exc:
        step = "downgrade" if down else "upgrade"
        raise SchemaCheckError(
            f"`alembic {step} {target} --sql` failed: {first_line(exc)}"
        ) from exc
    finally:
        cfg.output_buffer = saved
    return buffer.getvalue()


def revision_sql(cfg: Config, rev: Script) -> str:
    """A revision's own upgrade SQL, as `alembic upgrade <parent>:<rev> --sql` prints it."""
    below = parent(rev)
    return offline_sql(cfg, rev.revision if below == "base" else f"{below}:{rev.revision}")


# pg_dump lines that change between runs or servers, not with the schema.
_VOLATILE = ("SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict", "-- Dumped ")


def schema_ddl(server: PgServer, dbname: str, exclude: Iterable[str] = ()) -> str:
    """The whole database's DDL (pg_dump --schema-only; alembic_version, the tables named in
    exclude (other tools', see migrations/ownership.py) and volatile lines out).

    Every schema, not just public: a leftover schema, extension, type, function, trigger,
    sequence, index, policy or grant shows up here (grants are part of the schema).
    """
    others = [f"--exclude-table=*.{quoted(name)}" for name in exclude]
    out = subprocess.run(
        [
            pg_program("pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table=*.alembic_version",
            *others,
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


def quoted(name: str) -> str:
    """A table name as a pg_dump pattern matches it exactly (no case folding, no wildcards)."""
    return '"' + name.replace('"', '""') + '"'


def psql(server: PgServer, dbname: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run SQL through psql (as a DBA would apply `--sql` output), stopping at the first error."""
    return subprocess.run(
        [pg_program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.dsn(dbname)],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
    )


@contextmanager
def reflection_quirks() -> Iterator[None]:
    """Reflect a table holding a NOT VALID CHECK without SQLAlchemy's spurious warning.

    SQLAlchemy 2.1 reflects `NOT VALID` as a dialect option it then fails to validate
    ("Can't validate argument 'dialect_options'"), which pyproject turns into an error.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Can't validate argument 'dialect_options'", SAWarning)
        yield


def foreign_tables(cfg: Config, conn: Connection) -> list[str]:
    """The tables of other tools in the connection's database (neither created by cfg's
    revisions nor in the models' metadata, or declared foreign). The log names them once
    per Alembic run (env.py), so not here too."""
    return Ownership.of(cfg, scripts(cfg)).foreign_tables(conn)


def models_metadata() -> MetaData:
    """The models' metadata with every module of models/ imported (as env.py does)."""
    import models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")
    from sqlmodel import SQLModel

    return SQLModel.metadata
