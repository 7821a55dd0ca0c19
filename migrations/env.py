"""Alembic environment: URL from the app's settings, metadata from the models.

An online run holds a PostgreSQL advisory lock from start to end (concurrent deploys wait
their turn, for MIGRATION_LOCK_WAIT_SECONDS at most), refuses to run through a transaction
pooler (migrations/lock.py), runs every revision in its own transaction under lock_timeout
and statement_timeout, retries a revision (or the version table) that was busy, and turns
any failure into one line that names the revision (`--raiseerr` shows the traceback). In a
caller's open transaction it joins that transaction instead and never commits it. No
revision loses stored data silently, up or down (migrations/dataloss.py).

`alembic check` and `alembic revision --autogenerate` compare the models with the
project's own tables only: another tool's tables are left alone and named in one line
(migrations/ownership.py).

Only Alembic's public API: what the running command passed is read from the
MigrationContext's opts, the command from `config.cmd_opts` (the CLI) or
`config.attributes["command"]` (a caller in Python; else told from the revision context
that `command.revision` and `command.check` pass).
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
import pkgutil
import re
import time
from collections.abc import Callable, Iterator
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.operations import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, create_engine, event, pool
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator

from migrations.adopt import adopt_or_refuse
from migrations.approle import ensure_app_role
from migrations.dataloss import FLAG, GUARD_OPTION, DataLossRefused, waives
from migrations.describe import explain_check
from migrations.lock import MigrationLock, PoolerError
from migrations.ownership import Ownership, announce, quietly
from models.db import connect, explain, resolve_url
from models.errors import DatabaseError
from models.naming import NAMING_CONVENTION
from models.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("models")
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of lock_timeout
QUERY_CANCELED = "57014"  # SQLSTATE of statement_timeout


def name_other_tools_tables(connection: Connection, s: Settings) -> None:
    """An upgrade, downgrade or stamp names, in one line, the tables of the schema that are
    not ours (ownership.py: no revision creates them; a deploy does not import the models).
    A comparison with the models (check, autogenerate) names those it left out itself."""
    if compares_with_models():
        return
    opened = not connection.in_transaction()
    try:
        announce(Ownership.of(config, context.script).foreign_tables(connection))
    finally:
        if opened and connection.in_transaction():
            connection.rollback()  # a read: leave the connection as it was handed over


# Modules that register autogenerate's comparators and renderers: imported only when a run
# compares with the models (`alembic check`, `revision --autogenerate`), never on a deploy.
AUTOGENERATE_MODULES: tuple[str, ...] = ("migrations.autogen",)
# Steps run on the connection before the revisions, with the migration lock held (also in a
# caller's transaction; never for --sql): each takes (connection, settings) and refuses with
# a CommandError of one line. E.g. a check of the database's state, or the app role's setup.
BEFORE_MIGRATIONS: tuple[Callable[[Connection, Settings], None], ...] = (
    adopt_or_refuse,  # a database built without migrations: refused, or adopted (adopt.py)
    name_other_tools_tables,  # the one line naming the tables the run leaves alone
)

# Alembic hands what the running command passed (revision_context, destination_rev, ...)
# to the MigrationContext that configure() makes: a first configure, without a database,
# makes it readable (command_options) before the run's own configure.
with quietly():
    context.configure(dialect_name="postgresql")


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render SQLModel/project column types as the plain SQLAlchemy type they store as.

    A revision then needs only `sa` (never sqlmodel or models/), and reads like the DDL. A
    native enum renders as `postgresql.ENUM(..., create_type=False)` (migrations/enums.py);
    a long CHECK in parts that fit the line length (migrations/autogen.py).
    """
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    if type_ == "check":
        from migrations.autogen import render_check

        return render_check(obj)
    if type_ == "type":
        from migrations.enums import render_type

        return render_type(obj, autogen_context)
    return False


def process_revision_directives(
    context_: MigrationContext, revision: Any, directives: list[MigrationScript]
) -> None:
    """Write no empty autogenerated revision, and the safe form of each change (see
    migrations/autogen.py: possibly several revisions); number revisions 0001, 0002, ..."""
    script = directives[0]
    if Comparison.ownership is not None:
        announce(Comparison.ownership.left_alone)
    if running_command() == "check":
        return  # `alembic check` only lists the differences
    if compares_with_models():
        from migrations.autogen import rewrite

        directives[:] = rewrite(script, context_)
        if not directives:
            log.info("No changes between the models and the database: no revision written.")
            return
    given = revision_context().command_args.get("rev_id") if revision_context() else None
    numbers = [
        int(rev.revision)
        for rev in ScriptDirectory.from_config(config).walk_revisions()
        if rev.revision.isdigit()
    ]
    first = max(numbers, default=0) + 1
    for n, each in enumerate(directives):
        if given is None:
            each.rev_id = f"{first + n:04d}"
        else:
            each.rev_id = given if n == 0 else f"{given}_{n + 1}"
        if n:
            each.head = directives[n - 1].rev_id


def command_options() -> dict[str, Any]:
    """What the running alembic command passed to env.py (MigrationContext.opts)."""
    return context.get_context().opts


def running_command() -> str:
    """The alembic command running env.py ("upgrade", "revision", "check", "merge", ...;
    "" when a caller in Python runs one that needs no telling apart).

    A caller in Python may say which: `config.attributes["command"] = "check"`. The command
    line says it in `config.cmd_opts.cmd` (the command's function). In Python otherwise:
    `command.check` and `command.revision` pass a revision context (the check's has the
    autogenerate flag and no message), `command.merge` only its template arguments.
    """
    given = config.attributes.get("command")
    if given:
        return str(given)
    cmd = getattr(config.cmd_opts, "cmd", None)
    if cmd:
        return str(getattr(cmd[0], "__name__", ""))
    found = revision_context()
    if found is not None:
        args = found.command_args
        return "check" if args.get("autogenerate") and args.get("message") is None else "revision"
    return "merge" if "template_args" in command_options() else ""


def revision_context() -> Any:
    """Alembic's RevisionContext for `revision` and `check` (None for the other commands)."""
    return command_options().get("revision_context")


def compares_with_models() -> bool:
    """True for the commands that compare the database with the models
    (`revision --autogenerate`, `check`), whether from the command line or from Python."""
    found = revision_context()
    return found is not None and bool(found.command_args.get("autogenerate"))


def target_metadata() -> MetaData:
    """The models' metadata (every module in models/) when comparing with them; else an
    empty MetaData with the same naming convention.

    Every upgrade and downgrade, from the command line, in tests and in the checks, runs
    the revisions with the same convention (so a constraint a revision leaves unnamed gets
    the same name everywhere), and a deploy does not import sqlmodel or pydantic (~200 ms).
    """
    if not compares_with_models():
        return MetaData(naming_convention=NAMING_CONVENTION)
    for name in AUTOGENERATE_MODULES:
        importlib.import_module(name)  # registers comparators and renderers

    given = config.attributes.get("target_metadata")
    if isinstance(given, MetaData):
        return given  # a caller's own models (the tests of the workflow)
    import models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")  # registers every table
    from sqlmodel import SQLModel

    return SQLModel.metadata


def settings() -> Settings:
    """The settings handed in by a caller (tests), else read from the environment."""
    given = config.attributes.get("settings")
    return given if isinstance(given, Settings) else Settings.from_env()


def timeouts(s: Settings) -> dict[str, str]:
    """Every migration statement's lock_timeout and statement_timeout (setting -> value)."""
    return {
        "lock_timeout": f"{round(s.lock_timeout_seconds * 1000)}ms",
        "statement_timeout": f"{round(s.statement_timeout_seconds * 1000)}ms",
    }


def timeout_statements(s: Settings) -> list[str]:
    """The same as SET statements, for the offline SQL."""
    return [f"SET {name} = '{value}'" for name, value in timeouts(s).items()]


class Comparison:
    """Whose tables a comparison with the models (check, autogenerate) looks at."""

    ownership: Ownership | None = None


def ownership_hooks(metadata: MetaData) -> dict[str, Any]:
    """Alembic's include_name/include_object for a comparison: only the project's tables
    (declared in the models or created by a revision) are reflected and compared."""
    if not compares_with_models():
        return {}
    owned = Comparison.ownership = Ownership.of(config, context.script, metadata)
    return {"include_name": owned.include_name, "include_object": owned.include_object}


def configure(s: Settings, **kwargs: Any) -> None:
    metadata = target_metadata()
    context.configure(
        target_metadata=metadata,
        **ownership_hooks(metadata),
        compare_type=True,
        compare_server_default=True,
        render_item=render_item,
        process_revision_directives=process_revision_directives,
        transaction_per_migration=True,
        # Read by migrations/ops.py to restore the timeout after a concurrent build.
        statement_timeout_ms=round(s.statement_timeout_seconds * 1000),
        **kwargs,
    )


class Progress:
    """Which revision is running now (the one a failure is blamed on), in which direction,
    and whether part of it is already committed (by an autocommit block)."""

    revision: str | None = None
    direction = "upgrade"  # or "downgrade": which function of the revision runs
    first: str | None = None  # the first revision of this run (where a downgrade started)
    running: bool = False
    in_transaction: int = 0  # statements run in the revision's open transaction
    committed_ddl: bool = False  # some of them were committed before the revision ended
    autocommitted: bool = False  # it ran steps in autocommit blocks

    @classmethod
    def watch(cls, connection: Connection) -> Callable[[], None]:
        """Follow the connection's statements and commits; returns the function that stops."""

        def executed(conn: Connection, *args: Any) -> None:
            if not cls.running:
                return
            if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                cls.autocommitted = True
            else:
                cls.in_transaction += 1

        def committed(conn: Connection) -> None:
            if cls.running and cls.in_transaction:
                cls.committed_ddl = True
            cls.in_transaction = 0

        event.listen(connection, "before_cursor_execute", executed)
        event.listen(connection, "commit", committed)

        def stop() -> None:
            event.remove(connection, "before_cursor_execute", executed)
            event.remove(connection, "commit", committed)

        return stop

    @classmethod
    def track(cls, script: ScriptDirectory) -> None:
        for rev in script.walk_revisions():
            module = rev.module
            if getattr(module, "_progress_tracked", False):
                continue
            for name in ("upgrade", "downgrade"):
                wrapped = cls._wrap(getattr(module, name), rev.revision, name, module)
                setattr(module, name, wrapped)
            setattr(module, "_progress_tracked", True)  # noqa: B010

    @classmethod
    def _wrap(
        cls, fn: Callable[[], None], revision: str, name: str, module: Any
    ) -> Callable[[], None]:
        @functools.wraps(fn)
        def run() -> None:
            cls.revision, cls.direction = revision, name
            cls.first = cls.first or revision
            cls.in_transaction, cls.committed_ddl, cls.autocommitted = 0, False, False
            opts = context.get_context().opts
            # Every revision is guarded, up and down, unless told; an upgrade that declares
            # the reviewed data-survives exception drops what it declares.
            waived = name == "upgrade" and waives(module)
            opts[GUARD_OPTION] = not allow_data_loss() and not waived
            cls.running = True
            try:
                fn()
            finally:
                cls.running = False

        return run


def allow_data_loss() -> bool:
    """`-x allow-data-loss=true` on the command line, or the attribute set by a caller."""
    given = context.get_x_argument(as_dictionary=True).get("allow-data-loss", "")
    return given.lower() in ("true", "1", "yes") or bool(config.attributes.get("allow_data_loss"))


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL (timeouts included); needs no database."""
    s = settings()
    # paramstyle named (Alembic's own template): with psycopg2's pyformat, a % in a
    # statement would be printed doubled, '5%%', and psql would apply that.
    configure(
        s, dialect_name="postgresql", literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        for statement in timeout_statements(s):
            context.execute(statement)
        context.run_migrations()


def destination() -> str:
    """The run's destination as a revision: "-2" (or "+2") counted from where the run
    started, so the advice stays right after the run already went part of the way."""
    given = str(command_options().get("destination_rev"))
    steps = re.fullmatch(r"([-+])(\d+)", given)
    if steps is None or Progress.first is None:
        return given
    rev = Progress.first
    if steps.group(1) == "+":  # the first revision of the run is step 1
        for _ in range(int(steps.group(2)) - 1):
            found = context.script.get_revision(rev)
            children = sorted(found.nextrev) if found is not None else []
            if len(children) != 1:
                return given
            rev = children[0]
        return rev
    for _ in range(int(steps.group(2))):
        script = context.script.get_revision(rev)
        down = script.down_revision if script is not None else None
        if down is None:
            return "base"
        rev = down if isinstance(down, str) else down[0]
    return rev


def pgcode(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, if it is one."""
    return getattr(getattr(exc, "orig", None), "pgcode", None)


def database_at(connection: Connection) -> str:
    """Where the database stands now, read afresh on a new connection (never a stale view)."""
    try:
        with connection.engine.connect() as fresh:
            heads = MigrationContext.configure(fresh).get_current_heads()
    except DBAPIError:
        return "unknown (the server cannot be reached)"
    return ", ".join(heads) or "base"


def failure(exc: Exception, s: Settings, tries: int, connection: Connection) -> str:
    """One line: which revision failed, why, what of it stays committed, and where the
    database stands now (the failed transaction is already rolled back)."""
    revision = Progress.revision
    code = pgcode(exc)
    if code == LOCK_NOT_AVAILABLE and revision is None:
        return (
            f"the version table alembic_version was busy: another transaction holds a lock on "
            f"it (lock_timeout {s.lock_timeout_seconds:g}s, {tries} tries); nothing was applied; "
            "run the deploy again once that transaction has finished"
        )
    if code == LOCK_NOT_AVAILABLE and not Progress.committed_ddl:
        return (
            f"revision {revision} was not applied: a table it changes was busy "
            f"(lock_timeout {s.lock_timeout_seconds:g}s, {tries} tries); run the deploy again "
            "once the transaction holding the lock has finished"
        )
    at = database_at(connection)
    if isinstance(exc, DataLossRefused):
        refused = f"{Progress.direction} of revision {revision} refused: {exc}; {exc.unchanged}"
        if exc.fix:
            return f"{refused}, the database is at {at}: {exc.fix}"
        return (
            f"{refused}, the database is at {at}. To {exc.consent}, run: alembic {FLAG} "
            f"{Progress.direction} {destination()} (in Python: "
            'config.attributes["allow_data_loss"] = True)'
        )
    why = reason(exc, s)
    if Progress.committed_ddl:
        return (
            f"revision {revision} failed ({why}) after committing part of itself: an "
            "autocommit block (CONCURRENTLY) commits the statements before it, so those stay "
            f"applied while the database is still recorded at {at}, and a rerun fails on "
            "them. Undo them by hand, then split the revision: transactional statements "
            "in one revision, migrations/ops.py steps in the next"
        )
    if Progress.autocommitted:
        return (
            f"revision {revision} failed ({why}); its finished steps (autocommit blocks) "
            f"stay and are safe to rerun, the rest was rolled back; the database is at {at}: "
            "fix the cause and run it again"
        )
    return f"revision {revision} failed and was rolled back ({why}); the database is at {at}"


def reason(exc: Exception, s: Settings) -> str:
    """Why a revision failed, in a few words on one line."""
    if pgcode(exc) == QUERY_CANCELED:
        return f"it ran longer than statement_timeout ({s.statement_timeout_seconds:g}s)"
    if pgcode(exc) == LOCK_NOT_AVAILABLE:
        return f"a table it changes was busy (lock_timeout {s.lock_timeout_seconds:g}s)"
    if isinstance(exc, DBAPIError):
        return str(exc.orig).strip().splitlines()[0]
    return f"{type(exc).__name__}: {exc}"


def no_autocommit_block() -> Iterator[None]:
    """Stands in for MigrationContext.autocommit_block inside a caller's transaction."""
    raise CommandError(
        f"revision {Progress.revision} cannot run inside the caller's open transaction (it "
        "needs an autocommit block, e.g. CREATE INDEX CONCURRENTLY): hand env.py a connection "
        "with no transaction open, or skip this revision (pytest-alembic: skip_revisions)"
    )


def run_joined(connection: Connection, s: Settings) -> None:
    """Migrate inside a caller's open transaction: joined, never committed, not retried."""
    MigrationLock(connection, timeouts(s)).join(s.migration_lock_wait_seconds)
    for step in BEFORE_MIGRATIONS:
        step(connection, s)
    configure(s, connection=connection)
    setattr(context.get_context(), "autocommit_block", no_autocommit_block)  # noqa: B010
    try:
        context.run_migrations()
    except (CommandError, DatabaseError):
        raise
    except Exception as exc:
        if Progress.revision is None:
            raise
        raise CommandError(
            f"revision {Progress.revision} failed ({reason(exc, s)}); the caller's transaction "
            "must be rolled back"
        ) from exc


def run_on(connection: Connection) -> None:
    """Migrate on one connection: in the caller's transaction if one is open; else holding
    the advisory lock for the whole run, one transaction per revision, each proven to reach
    the lock's backend (migrations/lock.py)."""
    s = settings()
    Progress.revision = Progress.first = None
    Progress.track(context.script)
    if connection.in_transaction():
        run_joined(connection, s)
        return
    lock = MigrationLock(connection, timeouts(s))
    lock.acquire(s.migration_lock_wait_seconds)
    stop_watching = Progress.watch(connection)
    try:
        for step in BEFORE_MIGRATIONS:
            step(connection, s)
        configure(s, connection=connection)
        ensure_app_role(connection)  # a first deploy on a server without it (approle.py)
        for attempt in range(s.migration_lock_retries + 1):
            Progress.revision = None
            try:
                with context.begin_transaction():
                    context.run_migrations()
                break
            except CommandError as exc:
                raise CommandError(explain_command_error(exc, database_at(connection))) from exc
            except DatabaseError:
                raise
            except Exception as exc:
                code = pgcode(exc)
                if Progress.revision is None and code != LOCK_NOT_AVAILABLE:
                    raise  # not from a revision: autogenerate, or a caller's own signal
                if connection.in_transaction():
                    connection.rollback()
                if (
                    code != LOCK_NOT_AVAILABLE
                    or attempt == s.migration_lock_retries
                    or Progress.committed_ddl
                ):
                    raise CommandError(failure(exc, s, attempt + 1, connection)) from exc
                pause = min(s.migration_retry_pause_seconds * 2**attempt, 10.0)
                log.warning(
                    "%s was busy (lock_timeout); try %d of %d in %.1fs.",
                    f"A table of revision {Progress.revision}"
                    if Progress.revision
                    else "The version table alembic_version",
                    attempt + 2,
                    s.migration_lock_retries + 1,
                    pause,
                )
                time.sleep(pause)
    except PoolerError as exc:
        raise CommandError(f"{exc}; the database is at {database_at(connection)}") from None
    finally:
        stop_watching()
        if connection.in_transaction():
            connection.rollback()
        lock.release()


def write_revision_without_database() -> None:
    """`alembic revision -m` (no autogenerate) and `alembic merge`: nothing to read from a
    database (env.py only numbers a new revision), so none is started or connected to."""
    configure(settings(), dialect_name="postgresql", output_buffer=io.StringIO(), as_sql=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Connect (a connectable handed in by a caller: a Connection, or anything with
    `.connect()`, as Alembic's cookbook does it; else the settings) and migrate."""
    plain_revision = revision_context() is not None and not compares_with_models()
    if plain_revision or running_command() == "merge":
        write_revision_without_database()
        return
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        run_on(given)
        return
    if given is not None:
        with given.connect() as connection:
            run_on(connection)
        return
    s = settings()
    url = resolve_url(s, for_migrations=True)
    engine = create_engine(
        url,
        poolclass=pool.NullPool,
        connect_args={"connect_timeout": 5, "application_name": "todo-schema-migrate"},
    )
    try:
        with connect(engine, s.connect_retry_seconds) as connection:
            run_on(connection)
    except DBAPIError as exc:
        raise CommandError(explain(exc, url)) from None
    finally:
        engine.dispose()


def uses_local_database() -> bool:
    """True on a developer's machine: no DATABASE_URL, the embedded PostgreSQL (.pgdata)."""
    s = settings()
    return s.database_url is None and s.migration_url is None


def explain_command_error(exc: CommandError, at: str | None = None) -> str:
    """Alembic's own refusals, as a sentence saying which revision and what to run."""
    text = str(exc)
    if "Can't locate revision" in text:
        found = text.split("identified by", 1)[-1].strip(" '\"")
        if uses_local_database():
            here = ", ".join(context.script.get_heads())
            return (
                f"the local database is at revision {found}, which this branch does not have: "
                "probably another git branch's revision (one .pgdata serves every branch). "
                "Switch back to that branch, run .venv/bin/alembic -x allow-data-loss=true "
                f"downgrade {here} (this branch's head), then switch again; before switching, "
                "always downgrade the revisions only your branch has"
            )
        return (
            f"the database is at revision {found}, which this code does not have: it was "
            "migrated by a newer release; deploy that release (or check DATABASE_URL)"
        )
    if "Target database is not up to date" in text:
        head = ", ".join(context.script.get_heads())
        return (
            f"the database is at {at or 'an older revision'}, not at the revisions' head "
            f"{head}: run .venv/bin/alembic upgrade head first, then this command again"
        )
    return text


if running_command() == "check":
    explain_check(revision_context())  # `alembic check` speaks sentences
try:
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()
except DatabaseError as exc:
    # One readable line from `alembic`, no traceback ("FAILED: ..."), non-zero exit.
    raise CommandError(str(exc)) from None
except CommandError as exc:
    raise CommandError(explain_command_error(exc)) from exc
