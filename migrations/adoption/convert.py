"""Convert a legacy `tasks` in place to a revision's schema, online, rows and all.

The target revision's schema is built by the revisions themselves in a scratch schema
(SCRATCH), the rows are copied into it in batches while a trigger on the legacy table
mirrors every write, and one short transaction swaps the two tables and records the
revision. Writers go on throughout; what blocks them:
1. `prepare`: nothing (the scratch schema is new);
2. `sync`: CREATE TRIGGER on the legacy table (SHARE ROW EXCLUSIVE: a catalog change, once);
3. `copy`: nothing: each batch (its own transaction) reads the legacy rows as a reader does
   and inserts those the trigger has not written yet (ON CONFLICT DO NOTHING); the trigger
   writes a row's newest version over a copied one (ON CONFLICT DO UPDATE) and records each
   deleted id, so a row a batch read just before its deletion is removed again at the swap;
4. `swap`: ACCESS EXCLUSIVE on the legacy table while the rows deleted during the copy are
   removed, the rows counted on both sides, the legacy table dropped and the new one moved
   in (two counts and some catalog changes).
Every step is either one transaction or made of transactions whose effect is recorded
(the progress row), so a run killed anywhere is finished by the same command: a scratch
build that did not complete (or was made with other options) is dropped and built again;
a copy resumes after its last committed batch; the swap happened or did not.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.exc import DBAPIError

from migrations.adoption.catalog import ADOPTION_PREFIX, Schema
from migrations.adoption.shapes import Shape
from models.naming import NAMING_CONVENTION

SCRATCH = "todo_adopt"  # where the target revision's schema is built and filled
PROGRESS = f"{SCRATCH}.adopt_progress"
DELETED = f"{SCRATCH}.adopt_deleted"  # ids deleted from the legacy table during the copy
SYNC = f"{SCRATCH}.adopt_sync"
TRIGGER = f"{ADOPTION_PREFIX}sync"
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Plan:
    """What one adoption does: the shape, its target, how values convert."""

    shape: Shape
    target: Schema  # the target revision's schema (revisions.json)
    zone: str  # the zone naive timestamps are read in (a name, e.g. "UTC")
    fixes: frozenset[str]
    leftovers: tuple[str, ...]
    batch: int

    @property
    def values(self) -> dict[str, str]:
        return self.shape.values(quote(self.zone), set(self.fixes))

    @property
    def fingerprint(self) -> str:
        fixes = ",".join(sorted(self.fixes))
        return f"{self.shape.name} -> {self.shape.target}; zone {self.zone}; fixes {fixes or '-'}"


def literal_colons(sql: str) -> str:
    """SQL for sqlalchemy.text() in which no ':name' is a bind parameter (a shape's SQL)."""
    return sql.replace(":", "\\:")


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Retry:
    """How a step that found its table busy is tried again (the deploy's own settings)."""

    tries: int
    pause: float
    lock_timeout: float


class Converter:
    """Runs the steps on the migration run's connection (its lock, timeouts and pooler
    guard apply to every transaction); `crash(point)` is called at each step boundary
    (tests kill the process there), `say(line)` reports progress."""

    def __init__(
        self,
        conn: Connection,
        script: ScriptDirectory,
        plan: Plan,
        retry: Retry,
        crash: Callable[[str], None],
        say: Callable[[str], None],
    ) -> None:
        self.conn, self.script, self.plan, self.retry = conn, script, plan, retry
        self.crash, self.say = crash, say
        self.home = str(self.one("SELECT current_schema()"))
        self.legacy = f"{self.home}.{plan.shape.table}"
        self.new = f"{SCRATCH}.{plan.shape.table}"

    def one(self, sql: str, **params: object) -> object:
        with self.conn.begin():
            return self.conn.execute(text(sql), params).scalar()

    def run(self) -> None:
        self.prepare()
        self.sync()
        self.copy()
        self.swap()

    # 1. prepare: the target revision's schema, empty, in SCRATCH
    def prepare(self) -> None:
        state = None
        if self.one(f"SELECT to_regclass('{PROGRESS}') IS NOT NULL"):
            with self.conn.begin():
                state = self.conn.execute(
                    text(f"SELECT fingerprint, built FROM {PROGRESS}")
                ).first()
        if state is not None and state == (self.plan.fingerprint, True):
            self.say(f"resuming: revision {self.plan.shape.target}'s schema is built in {SCRATCH}")
            return
        if self.one(f"SELECT to_regnamespace('{SCRATCH}') IS NOT NULL"):
            self.say(f"dropping the unfinished or different earlier attempt in schema {SCRATCH}")
            self.retrying("drop the earlier attempt", f"DROP SCHEMA {SCRATCH} CASCADE")
        with self.conn.begin():
            self.conn.execute(text(f"CREATE SCHEMA {SCRATCH}"))
            self.conn.execute(
                text(
                    f"CREATE TABLE {PROGRESS} (fingerprint text NOT NULL, built boolean NOT NULL "
                    "DEFAULT false, stop bigint, copied bigint NOT NULL DEFAULT 0)"
                )
            )
            self.conn.execute(
                text(f"INSERT INTO {PROGRESS} (fingerprint) VALUES (:f)"),
                {"f": self.plan.fingerprint},
            )
            self.conn.execute(text(f"CREATE TABLE {DELETED} (id bigint PRIMARY KEY)"))
        self.crash("prepare")
        self.build()
        with self.conn.begin():
            # Disabled while rows are copied (the copy keeps updated_at as it was); enabled
            # again by the swap.
            self.conn.execute(text(f"ALTER TABLE {self.new} DISABLE TRIGGER USER"))
            self.conn.execute(text(f"UPDATE {PROGRESS} SET built = true"))
        self.say(f"built revision {self.plan.shape.target}'s schema in schema {SCRATCH}")
        self.crash("built")

    def build(self) -> None:
        """The revisions from the first to the target, run in SCRATCH (alone on the search
        path, so nothing outside it can be reached), each in its own transaction."""
        context = MigrationContext.configure(
            self.conn, opts={"target_metadata": MetaData(naming_convention=NAMING_CONVENTION)}
        )
        target = self.plan.shape.target
        revisions = reversed(list(self.script.iterate_revisions(target, "base")))
        with self.search_path(SCRATCH):
            for rev in revisions:
                with context.begin_transaction(), Operations.context(context):
                    # The revision's own function (unwrap: not env.py's run bookkeeping).
                    inspect.unwrap(rev.module.upgrade)()
                self.crash(f"build {rev.revision}")

    @contextmanager
    def search_path(self, path: str) -> Iterator[None]:
        """The session's search_path set to `path` while the block runs, then put back."""
        with self.conn.begin():
            was = self.conn.execute(text("SELECT current_setting('search_path')")).scalar()
            self.conn.execute(text(f"SET search_path = {path}"))
        try:
            yield
        finally:
            if self.conn.in_transaction():
                self.conn.rollback()
            with self.conn.begin():
                self.conn.execute(text("SELECT set_config('search_path', :p, false)"), {"p": was})

    # 2. sync: every write to the legacy table mirrored into the new one
    def sync(self) -> None:
        exists = self.one(
            "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgname = :t "
            "AND tgrelid = to_regclass(:r))",
            t=TRIGGER,
            r=self.legacy,
        )
        if exists:
            return
        values = self.converted()
        columns, converted = ", ".join(values), ", ".join(values.values())
        newest = ", ".join(f"{name} = EXCLUDED.{name}" for name in values if name != "id")
        function = f"""
CREATE FUNCTION {SYNC}() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, {self.home} AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.id <> OLD.id) THEN
        DELETE FROM {self.new} WHERE id = OLD.id;
        INSERT INTO {DELETED} VALUES (OLD.id) ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO {self.new} ({columns}) OVERRIDING SYSTEM VALUE
        SELECT {converted} FROM (SELECT NEW.*) AS {self.plan.shape.table}
        ON CONFLICT (id) DO UPDATE SET {newest};
    END IF;
    RETURN NULL;
END $$"""
        trigger = (
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {self.legacy} "
            f"FOR EACH ROW EXECUTE FUNCTION {SYNC}()"
        )
        # Rows committed before the trigger are copied (up to `stop`); later ones it mirrors.
        stop = f"UPDATE {PROGRESS} SET stop = (SELECT coalesce(max(id), 0) FROM {self.legacy})"
        self.retrying("install the sync trigger", function, trigger, stop)
        self.say(f"every write to {self.legacy} is now mirrored into the new table")
        self.crash("synced")

    def converted(self) -> dict[str, str]:
        """Column -> its value in the new table's type (a native enum of the target: cast,
        the type qualified with SCRATCH, where it lives until the swap)."""
        found = {}
        for name, value in self.plan.values.items():
            definition = self.plan.target.tables[self.plan.shape.table].columns[name]
            type_ = definition.split(" ", 1)[0]
            cast = (
                f"({value})::text::{SCRATCH}.{type_}" if type_ in self.plan.target.enums else value
            )
            found[name] = literal_colons(cast)
        return found

    # 3. copy: the rows committed before the trigger, in batches
    def copy(self) -> None:
        with self.conn.begin():
            stop, copied = self.conn.execute(text(f"SELECT stop, copied FROM {PROGRESS}")).one()
        columns = ", ".join(self.plan.values)
        converted = ", ".join(self.converted().values())
        if copied < stop:
            self.say(f"copying rows {copied + 1}..{stop} by id, {self.plan.batch} per batch")
        n = 0
        while copied < stop:
            with self.conn.begin():
                upto = self.conn.execute(
                    text(
                        f"SELECT max(id) FROM (SELECT id FROM {self.legacy} WHERE id > :a "
                        "AND id <= :s ORDER BY id LIMIT :b) AS batch"
                    ),
                    {"a": copied, "s": stop, "b": self.plan.batch},
                ).scalar()
                upto = stop if upto is None else upto
                self.conn.execute(
                    text(
                        f"INSERT INTO {self.new} ({columns}) OVERRIDING SYSTEM VALUE "
                        f"SELECT {converted} FROM {self.legacy} WHERE id > :a AND id <= :u "
                        "ON CONFLICT (id) DO NOTHING"
                    ),
                    {"a": copied, "u": upto},
                )
                self.conn.execute(text(f"UPDATE {PROGRESS} SET copied = :u"), {"u": upto})
            copied, n = upto, n + 1
            self.crash(f"copy {n}")
        self.vacuum()

    def vacuum(self) -> None:
        """VACUUM (ANALYZE) the new table: its statistics are there from the swap on (the
        planner's); and VACUUM both: the swap's two counts, under its lock, then read their
        indexes (pages all-visible), not their pages. Outside any transaction (VACUUM
        cannot run in one), without statement_timeout (it blocks no writer); rerunnable."""
        level = self.conn.get_isolation_level()
        self.conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            with self.conn.begin():
                self.conn.execute(text("SET statement_timeout = 0"))  # the run's end resets it
                self.conn.execute(text(f"VACUUM (ANALYZE) {self.new}"))
                # Only so the swap's count is quicker: skipped while another VACUUM holds it.
                self.conn.execute(text(f"VACUUM (SKIP_LOCKED) {self.legacy}"))
        finally:
            self.conn.execution_options(isolation_level=level)

    # 4. swap: the new table takes the legacy one's place; the revision is recorded
    def swap(self) -> None:
        self.say(f"copied; swapping the tables (ACCESS EXCLUSIVE on {self.legacy}, briefly)")
        self.retrying("swap the tables", transaction=self.swap_in)
        self.crash("swapped")

    def swap_in(self) -> None:
        conn, table = self.conn, self.plan.shape.table
        conn.execute(text(f"LOCK TABLE {self.legacy} IN ACCESS EXCLUSIVE MODE"))
        # A row a batch read just before a writer deleted it (and its trigger removed it).
        conn.execute(
            text(
                f"DELETE FROM {self.new} n USING {DELETED} d WHERE n.id = d.id "
                f"AND NOT EXISTS (SELECT FROM {self.legacy} l WHERE l.id = d.id)"
            )
        )
        old = conn.execute(text(f"SELECT count(*) FROM {self.legacy}")).scalar_one()
        new = conn.execute(text(f"SELECT count(*) FROM {self.new}")).scalar_one()
        if old != new:
            raise CommandError(
                f"adoption stopped before the swap: the new table has {new} rows, {self.legacy} "
                f"has {old}; nothing was swapped. Drop the attempt (DROP SCHEMA {SCRATCH} "
                "CASCADE) and run the command again"
            )
        positions = {
            name: conn.execute(text(f"SELECT last_value, is_called FROM {self.home}.{name}")).one()
            for name in self.plan.shape.sequences
        }
        conn.execute(text(f"DROP TABLE {self.legacy}"))
        for name in (*self.plan.shape.enums, *self.plan.leftovers):
            unused = not conn.execute(
                text(
                    "SELECT EXISTS (SELECT FROM pg_depend WHERE refobjid = to_regtype(:t) "
                    "AND deptype = 'n')"
                ),
                {"t": f"{self.home}.{name}"},
            ).scalar()
            if unused:
                conn.execute(text(f"DROP TYPE {self.home}.{name}"))
        conn.execute(text(f"ALTER TABLE {self.new} ENABLE TRIGGER USER"))
        for statement in self.moves():
            conn.execute(text(statement))
        for name, (value, called) in positions.items():
            if name in self.plan.target.tables[table].sequences:
                conn.execute(
                    text("SELECT setval(:s, :v, :c)"),
                    {"s": f"{self.home}.{name}", "v": value, "c": called},
                )
        conn.execute(text(f"DROP SCHEMA {SCRATCH} CASCADE"))
        MigrationContext.configure(conn).stamp(self.script, self.plan.shape.target)
        self.say(
            f"swapped: {self.legacy} is now revision {self.plan.shape.target}'s table, with its "
            f"{new} row(s); recorded as revision {self.plan.shape.target}"
        )
        self.crash("swap")  # inside the transaction: a kill here rolls it all back

    def moves(self) -> list[str]:
        """ALTER ... SET SCHEMA for what the revisions built in SCRATCH (tables bring their
        indexes, sequences and triggers; types their array types)."""
        rows = self.conn.execute(
            text(
                "SELECT 'TABLE ' || c.oid::regclass FROM pg_class c WHERE c.relnamespace = "
                "CAST(:s AS regnamespace) AND c.relkind IN ('r', 'p') "
                "AND c.relname NOT IN ('adopt_progress', 'adopt_deleted') "
                "UNION ALL SELECT 'TYPE ' || t.oid::regtype FROM pg_type t WHERE "
                "t.typnamespace = CAST(:s AS regnamespace) AND t.typtype IN ('e', 'd') "
                "UNION ALL SELECT 'FUNCTION ' || p.oid::regprocedure FROM pg_proc p WHERE "
                "p.pronamespace = CAST(:s AS regnamespace) AND p.proname <> 'adopt_sync'"
            ),
            {"s": SCRATCH},
        ).scalars()
        return [f"ALTER {what} SET SCHEMA {self.home}" for what in rows]

    def retrying(
        self, step: str, *statements: str, transaction: Callable[[], None] | None = None
    ) -> None:
        """One transaction (the statements, or `transaction`), tried again with a growing
        pause while a table it needs is busy (lock_timeout), as env.py retries a revision."""
        r = self.retry
        for attempt in range(r.tries):
            try:
                with self.conn.begin():
                    for statement in statements:
                        self.conn.execute(text(statement))
                    if transaction is not None:
                        transaction()
                return
            except DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
                    raise
                if attempt + 1 == r.tries:
                    raise CommandError(
                        f"adoption paused before it could {step}: table {self.legacy} was busy "
                        f"(lock_timeout {r.lock_timeout:g}s, {r.tries} tries); nothing of this "
                        "step was applied, the steps before it are kept: run the same command "
                        "again once the transaction holding the lock has finished"
                    ) from exc
                time.sleep(min(r.pause * 2**attempt, 10.0))
