"""Databases built without migrations: detected before any command touches them, and
adopted in place by one command (docs/adopting.md).

    alembic -x adopt=true upgrade head      # adopt (if needed), then upgrade as usual
    alembic -x adopt=plan upgrade head      # only say what it would do; change nothing

`adopt_or_refuse` is one of env.py's BEFORE_MIGRATIONS steps: it runs on the run's
connection, with the migration lock held, before any revision (so adoption has the
deploy's lock, timeouts, pooler refusal and failure lines). A database with app tables but
no alembic_version is refused with one line naming the command, unless that command is
running (on a connection of its own); then its schema is recognised
(migrations/adoption/recognise.py): equal to a revision's, it is recorded as that revision;
a known legacy shape is checked for rows that break the contract (rules.py: refused with a
report, nothing changed) and converted online to its target revision's schema
(convert.py); anything else is refused with the differences. Alembic's own run then
upgrades from that revision as from any other. A plan (-x adopt=plan) ends the command
with its last line, having changed nothing.

Options (`-x key=value`, or `config.attributes["adopt"] = {key: value}` from Python):
  adopt=true|plan         adopt / only report the plan and the data check
  adopt-timezone=ZONE     the zone naive timestamps were written in (default UTC)
  adopt-fix=a,b           lossless fixes, never applied unasked (shapes.FIXES)
  adopt-batch=N           rows per copy transaction (default 5000)
  adopt-crash-at=POINT    tests only: SIGKILL this process at a step boundary
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from migrations.adoption.recognise import Found
    from models.settings import Settings

log = logging.getLogger("models")
COMMAND = "alembic -x adopt=true upgrade head"
OPTIONS = ("adopt", "adopt-timezone", "adopt-fix", "adopt-batch", "adopt-crash-at")
SCRATCH = "todo_adopt"  # convert.SCRATCH (not imported: the detection stays this module)
BATCH = 5_000
LOCK_NOT_AVAILABLE = "55P03"
DETECTED = (
    "this database was built without migrations (table {table} exists, alembic_version "
    "does not), so no revision can run on it: adopt it in place with `{command}` (`-x "
    "adopt=plan` first shows what it would do; see docs/adopting.md); nothing was changed"
)
NOTHING = "the database is under migrations already (or has no app table yet)"
PLANNED = "-x adopt=plan: {plan}; nothing was changed (run the command with -x adopt=true to do it)"
STARTED = (
    "an adoption of this database was started and has not finished (schema {scratch} "
    "exists, alembic_version does not): run `{command}` again, with the same -x adopt-* "
    "options, to finish it; nothing was changed"
)


def adopt_or_refuse(conn: Connection, settings: Settings) -> None:
    """Adopt the database, or refuse the command on it (env.py: BEFORE_MIGRATIONS)."""
    from alembic import context

    options = {**context.config.attributes.get("adopt", {}), **context.get_x_argument(True)}
    mode = _mode(options)
    state = _state(conn)
    if state is None:
        if mode == "plan":
            raise CommandError(PLANNED.format(plan="nothing to adopt: " + NOTHING))
        if mode:
            log.info("Nothing to adopt: %s.", NOTHING)
        return
    if conn.in_transaction():  # a caller's open transaction (env.py's joined run)
        raise CommandError(
            _refusal(state).replace(
                "; nothing was changed",
                " (on a connection of its own: not in a caller's open transaction); nothing "
                "was changed",
            )
        )
    if not mode:
        raise CommandError(_refusal(state))
    try:
        Adoption(conn, context.script, options, settings).run(plan_only=mode == "plan")
    except DBAPIError as exc:  # e.g. the connection lost: one line, as every failure
        why = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise CommandError(
            f"adoption stopped ({why}); what it finished is kept and the rest was rolled "
            "back: run the same command again once the cause is fixed"
        ) from exc


def _mode(options: dict[str, str]) -> str:
    """'' (not adopting), 'true' or 'plan'; refuses unknown adopt-* options."""
    unknown = sorted(k for k in options if k.startswith("adopt") and k not in OPTIONS)
    if unknown:
        raise CommandError(
            f"unknown option(s) {', '.join(unknown)}: adoption knows -x {', -x '.join(OPTIONS)}"
        )
    mode = options.get("adopt", "").strip().lower()
    if mode in ("", "false", "no", "0"):
        return ""
    if mode in ("true", "yes", "1"):
        return "true"
    if mode == "plan":
        return "plan"
    raise CommandError(f"-x adopt={mode} is not an option: use -x adopt=true or -x adopt=plan")


def _refusal(state: str) -> str:
    if state == "started":
        return STARTED.format(scratch=SCRATCH, command=COMMAND)
    return DETECTED.format(table=state, command=COMMAND)


def _state(conn: Connection) -> str | None:
    """None when there is nothing to adopt (under migrations, or no app table yet); else
    'started' (an unfinished adoption) or the app table found."""
    owned = not conn.in_transaction()
    if owned:
        conn.begin()
    try:
        if _versioned(conn):
            return None
        if conn.execute(text("SELECT to_regnamespace(:s) IS NOT NULL"), {"s": SCRATCH}).scalar():
            return "started"
        from migrations.adoption.recognise import app_tables

        found = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                "AND relkind IN ('r', 'p') AND relname = ANY(:t) ORDER BY relname LIMIT 1"
            ),
            {"t": sorted(app_tables())},
        ).scalar()
        return str(found) if found else None
    finally:
        if owned:
            conn.rollback()


def _versioned(conn: Connection) -> bool:
    """alembic_version exists and holds a revision. A version table that another
    transaction keeps locked counts as one (env.py then waits for it, as it always did)."""
    if not conn.execute(text("SELECT to_regclass('alembic_version')")).scalar():
        return False
    savepoint = conn.begin_nested()  # its SET LOCAL ends with it, also in a caller's transaction
    try:
        conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
        return bool(conn.execute(text("SELECT EXISTS (SELECT FROM alembic_version)")).scalar())
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        return True
    finally:
        savepoint.rollback()


class Adoption:
    """One run of the adoption command (see the module doc)."""

    def __init__(
        self, conn: Connection, script: ScriptDirectory, options: dict[str, str], settings: Settings
    ) -> None:
        self.conn, self.script, self.options, self.settings = conn, script, options, settings

    def run(self, *, plan_only: bool) -> None:
        from migrations.adoption.recognise import recognise

        with self.conn.begin():
            found = recognise(self.conn)
        if found.revision is not None:
            self.stamp(found.revision, plan_only)
            return
        if found.shape is None:
            lines = found.refusal or []
            raise CommandError(
                "adoption refused: this database's schema is no known shape (a revision's, or "
                "a legacy shape of docs/adopting.md); nothing was changed. How it differs from "
                "the nearest:\n" + "\n".join(f"  - {line}" for line in lines) + "\nIf it is a "
                "shape of your own, declare it (docs/adopting.md, 'Adding a shape')"
            )
        self.convert(found, plan_only)

    def stamp(self, revision: str, plan_only: bool) -> None:
        from alembic.runtime.migration import MigrationContext

        say = f"the schema equals revision {revision}'s exactly: it is recorded as {revision}"
        if plan_only:
            raise CommandError(PLANNED.format(plan=f"{say} (alembic stamp), then upgraded"))
        with self.conn.begin():
            # An earlier adoption attempt left behind (its scratch schema) goes with it.
            self.conn.execute(text(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE"))
            MigrationContext.configure(self.conn).stamp(self.script, revision)
        log.info("Adopted: %s; the upgrade goes on from there.", say)

    def convert(self, found: Found, plan_only: bool) -> None:
        from migrations.adoption.convert import Converter, Plan, Retry
        from migrations.adoption.recognise import revisions
        from migrations.adoption.rules import check, contract_rules
        from migrations.adoption.shapes import FIXES

        assert found.shape is not None
        shape = found.shape
        self.refuse_dependents(shape.table)
        revs = revisions()
        plan = Plan(
            shape, revs[shape.target], self.zone(), self.fixes(shape), found.leftovers, self.batch()
        )
        naive = [n for n, c in shape.columns.items() if c.type.startswith("timestamp without")]
        log.info(
            "Adoption: table %s is the legacy shape %s (%s); it is converted in place to "
            "revision %s's schema, then upgraded as usual.",
            shape.table,
            shape.name,
            shape.origin,
            shape.target,
        )
        if naive:
            other = "" if plan.zone != "UTC" else " (-x adopt-timezone=ZONE names another)"
            log.info(
                "Timestamps without time zone (%s) are read as %s times%s.",
                ", ".join(naive),
                plan.zone,
                other,
            )
            self.say_clock_changes(shape.table, naive, plan.zone)
        unasked = {
            name: "; ".join(
                f"-x adopt-fix={fix} ({FIXES[fix]}) may repair them"
                for fix in column.fixes
                if fix not in plan.fixes
            )
            for name, column in shape.columns.items()
        }
        fixed = {name for name, column in shape.columns.items() if column.fixes.keys() & plan.fixes}
        rules = contract_rules(plan.values, list(revs.values())[-1], shape, unasked, fixed)
        with self.conn.begin():
            self.conn.execute(text("SET LOCAL statement_timeout = 0"))  # a reader's scan
            broken = check(self.conn, shape.table, rules)
        if broken:
            total = "; ".join(f"{b.count} {b.rule.words}" for b in broken)
            raise CommandError(
                f"adoption refused: rows of {shape.table} break the contract ({total}); nothing "
                "was changed. Fix them (or pass the fix option named), then run the command "
                "again:\n" + "\n".join(f"  - {b.sentence()}" for b in broken)
            )
        log.info("Data check: every row of %s meets the contract.", shape.table)
        if plan_only:
            raise CommandError(
                PLANNED.format(
                    plan=f"the shape {shape.name} would be converted to revision "
                    f"{shape.target}'s schema (built beside it, the rows copied while writers "
                    "go on, the tables swapped in one short transaction), then upgraded"
                )
            )
        s = self.settings
        retry = Retry(
            s.migration_lock_retries + 1, s.migration_retry_pause_seconds, s.lock_timeout_seconds
        )
        converter = Converter(self.conn, self.script, plan, retry, self.crash, log.info)
        try:
            converter.run()
        except DBAPIError as exc:
            why = str(exc.orig).strip().splitlines()[0]
            raise CommandError(
                f"adoption stopped ({why}); the table is unchanged up to the swap, and the "
                f"same command resumes the steps done so far (schema {SCRATCH}): fix the "
                "cause and run it again"
            ) from exc

    def say_clock_changes(self, table: str, naive: list[str], zone: str) -> None:
        """In a zone with daylight saving time, how many naive values fall on a change, and
        how PostgreSQL reads them (a notice: both readings are valid instants)."""
        if zone == "UTC":
            return
        z = "CAST(:z AS text)"
        # Skipped: the instant does not read back as the same wall-clock time. Twice: the
        # same wall-clock time an hour (or half an hour) earlier is another instant.
        parts = []
        for c in naive:
            back = f"(({c} AT TIME ZONE {z}) AT TIME ZONE {z})"
            twice = " OR ".join(
                f"(({c} AT TIME ZONE {z}) - interval '{m} minutes') AT TIME ZONE {z} = {c}"
                for m in (30, 60)
            )
            parts.append(f"count(*) FILTER (WHERE {back} <> {c})")
            parts.append(f"count(*) FILTER (WHERE {twice})")
        with self.conn.begin():
            self.conn.execute(text("SET LOCAL statement_timeout = 0"))  # a reader's scan
            counts = self.conn.execute(
                text(f"SELECT {', '.join(parts)} FROM {table}"), {"z": zone}
            ).one()
        skipped, repeated = int(sum(counts[0::2])), int(sum(counts[1::2]))
        if skipped or repeated:
            log.info(
                "%d of those values fall on a daylight saving change of %s: %d in an hour the "
                "clocks skipped (read with the offset before the change, e.g. 02:30 as 03:30 "
                "summer time), %d in an hour that happened twice (read as the second, in "
                "standard time).",
                skipped + repeated,
                zone,
                skipped,
                repeated,
            )

    def refuse_dependents(self, table: str) -> None:
        """Other objects that depend on the legacy table (views, foreign keys, ...) would be
        dropped with it: refuse, naming them."""
        with self.conn.begin():
            rows = (
                self.conn.execute(
                    text(
                        "SELECT DISTINCT pg_describe_object(classid, objid, objsubid) "
                        "FROM pg_depend WHERE refclassid = 'pg_class'::regclass "
                        "AND refobjid = to_regclass(:t) AND deptype = 'n' ORDER BY 1"
                    ),
                    {"t": table},
                )
                .scalars()
                .all()
            )
        if rows:
            raise CommandError(
                f"adoption refused: {'; '.join(rows)} depend(s) on table {table}, which adoption "
                "replaces: drop them first and create them again afterwards; nothing was changed"
            )

    def zone(self) -> str:
        zone = self.options.get("adopt-timezone", "UTC").strip()
        with self.conn.begin():
            known = self.conn.execute(
                text("SELECT EXISTS (SELECT FROM pg_timezone_names WHERE name = :z)"), {"z": zone}
            ).scalar()
        if not known:
            raise CommandError(
                f"-x adopt-timezone={zone} is not a time zone this server knows (see "
                "pg_timezone_names, e.g. Europe/Berlin); nothing was changed"
            )
        return zone

    def fixes(self, shape: object) -> frozenset[str]:
        from migrations.adoption.shapes import FIXES

        given = {f.strip() for f in self.options.get("adopt-fix", "").split(",") if f.strip()}
        unknown = sorted(given - FIXES.keys())
        if unknown:
            raise CommandError(
                f"-x adopt-fix={','.join(unknown)} is not a fix adoption knows: "
                + "; ".join(f"{k}: {v}" for k, v in FIXES.items())
            )
        return frozenset(given)

    def batch(self) -> int:
        given = self.options.get("adopt-batch", str(BATCH))
        if not given.isdigit() or int(given) < 1:
            raise CommandError(f"-x adopt-batch={given} is not a positive number of rows")
        return int(given)

    def crash(self, point: str) -> None:
        """Tests only: die here (SIGKILL) when -x adopt-crash-at names this point."""
        if self.options.get("adopt-crash-at") == point:
            os.kill(os.getpid(), signal.SIGKILL)
