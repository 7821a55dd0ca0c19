"""Adopting a database that the app's create_all() and hand-run scripts built: detected,
recognised exactly, checked, converted in place with every row, refused when unknown or
dirty (docs/adopting.md). Each legacy shape is built once per session (tests/legacy/) and
copied (CREATE DATABASE ... TEMPLATE) for each test; adoption runs in this process."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, pool, text
from sqlmodel import Session

from migrations.adopt import COMMAND
from migrations.adoption.catalog import describe
from migrations.adoption.recognise import known_names, recognise, revisions
from migrations.adoption.shapes import SHAPES
from migrations.ownership import Ownership
from models import TaskCreate, TaskUpdate, create_task, get_task, list_tasks, update_task
from models.policies import APP_ROLE, APP_ROLE_SETTINGS, ROW_LEVEL_SECURITY
from models.security import bind_user
from models.settings import Settings
from models.task import TAG_MAX, TAGS_MAX, USER_ID_MAX, Priority, Recurring
from tests.checks.common import history, models_metadata, schema_ddl
from tests.checks.models_match import catalog_differences, model_differences
from tests.checks.rls import (
    declaration_findings,
    other_privileges,
    read_tables,
    rule_findings,
    setting_findings,
)
from tests.legacy.build import AUTUMN, GAP
from tests.legacy.build import SHAPES as BUILT
from tests.legacy.revisions import compare_revisions, render_revisions
from tests.legacy.run import (
    adopt,
    as_utc,
    execute,
    expected,
    legacy_columns,
    scalar,
    task_rows,
)
from tests.support import PgServer, alembic_config, head, migrate

if TYPE_CHECKING:
    from tests.legacy.fixtures import CopyOf, Templates

pytest_plugins = ("tests.legacy.fixtures",)


def test_every_legacy_shape_is_recognised_exactly(pg_server: PgServer, legacy: Templates) -> None:
    """Each shape tests/legacy builds as the app did is recognised as the shape declared
    in migrations/adoption/shapes.py of that name (with the enum types create_all() left
    unused), and every declared column is a column of its target revision."""
    assert {s.name for s in SHAPES} == set(BUILT)
    revs = revisions()
    for shape in SHAPES:
        assert set(shape.columns) <= set(revs[shape.target].tables[shape.table].columns)
        engine = create_engine(pg_server.url(legacy[shape.name]), poolclass=pool.NullPool)
        with engine.connect() as conn:
            found = recognise(conn)
        engine.dispose()
        assert found.shape is not None and found.shape.name == shape.name, found.refusal
        assert found.leftovers == LEFTOVERS[shape.name]


# Enum types the app's start-up create_all() left behind, unused, in each shape.
LEFTOVERS = {
    "L1": (),
    "L2/varchar": ("taskpriority",),
    **{f"L2/{form}": () for form in ("enum", "enum-upper", "enum-003")},
    "L3/varchar": ("recurringtype", "taskpriority"),
    **{f"L3/{form}": ("recurringtype",) for form in ("enum", "enum-upper", "enum-003")},
}
# Adopted in full below: one shape per priority form and target; L3/enum-003 in the next
# test, the others in the proofs of refusal, options and crashes.
CONVERTED: dict[str, dict[str, Any]] = {
    "L1": {"adopt_fix": "trim-user-id"},
    "L2/varchar": {"adopt_fix": "priority-case"},
    "L2/enum": {},
    "L3/enum-upper": {"adopt_timezone": "Europe/Berlin"},
}


@pytest.mark.parametrize("shape", CONVERTED)
def test_a_legacy_shape_becomes_a_fresh_head_with_every_row(
    pg_server: PgServer, copy_of: CopyOf, fresh_ddl: str, shape: str
) -> None:
    """Adopted, a legacy shape (other tools' tables beside it) has the pg_dump of a
    database migrated from empty, is at head, and every row reads as its legacy values
    mapped: naive timestamps as instants in the zone given (UTC by default), priority in
    the contract's case, the fixes asked for applied."""
    name = copy_of(shape, foreign=True)
    url = pg_server.url(name)
    before = task_rows(url)
    options = CONVERTED[shape]
    adopt(url, **options)
    assert schema_ddl(pg_server, name) == fresh_ddl
    assert scalar(pg_server, name, "SELECT version_num FROM alembic_version") == head()
    zone = options.get("adopt_timezone", "UTC")
    fixes = tuple(options.get("adopt_fix", "").split(","))
    assert legacy_columns(task_rows(url), before) == as_utc(expected(before, zone, fixes))


def test_an_adopted_database_passes_the_checks_and_serves_the_app(
    pg_server: PgServer, copy_of: CopyOf
) -> None:
    """An adopted L3 (after 003) has every row mapped; `alembic check` and check 2 find
    nothing, nor does check 13 (row-level security) on this database; the app's data-access
    functions work on the legacy rows as the app role: list, get, update (updated_at
    refreshed), create (ids after the old ones). The unused legacy type goes; one a
    neighbour's table uses stays, and the neighbour is left alone by the checks."""
    name = copy_of("L3/enum-003")
    url = pg_server.url(name)
    execute(pg_server, name, "CREATE TABLE notes (id int, repeat recurringtype)")
    before = task_rows(url)
    adopt(url)
    assert legacy_columns(task_rows(url), before) == as_utc(expected(before))
    assert scalar(pg_server, name, "SELECT to_regtype('recurringtype')::text") == "recurringtype"
    assert scalar(pg_server, name, "SELECT to_regtype('taskpriority')") is None
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            command.check(alembic_config(conn))
            cfg = alembic_config(conn)
            metadata = models_metadata()
            ownership = Ownership.of(cfg, ScriptDirectory.from_config(cfg), metadata)
            sentences, _ = model_differences(conn, metadata, ownership)
            foreign = ownership.foreign_tables(conn)
            sentences += catalog_differences(pg_server, conn, metadata, foreign)
            assert sentences == [] and foreign == ["notes"]
            assert row_level_security_findings(conn) == []
            last = conn.execute(text("SELECT max(id) FROM tasks")).scalar_one()
            conn.rollback()
    finally:
        engine.dispose()
    app = create_engine(replace(pg_server, user=APP_ROLE, password=None).url(name))
    try:
        with Session(app) as session:
            bind_user(session, "erin")
            page = list_tasks(session, "erin", sort_by="due_date", sort_order="asc")
            assert [t.title for t in page.tasks][:2] == ["phase three 2", "phase three 0"]
            task = page.tasks[1]
            assert task.recurring == "weekly" and task.tags[:2] == ["work", "ホーム"]
            changed = update_task(session, "erin", task.id, TaskUpdate(complete=True))
            assert changed is not None and changed.updated_at and task.updated_at
            assert changed.updated_at > task.updated_at
            created = create_task(session, "erin", TaskCreate(title="after adoption"))
            assert created.id is not None and created.id > last
        with Session(app) as session:
            bind_user(session, "alice")
            assert get_task(session, "alice", task.id) is None
    finally:
        app.dispose()


def row_level_security_findings(conn: Connection) -> list[object]:
    """Check 13's findings on this database (tests/checks/rls.py runs them at head of a
    history): the protected tables' rules, the declaration, the app role's privileges."""
    tables = read_tables(conn, APP_ROLE)
    assert "tasks" in tables
    found: list[object] = [
        finding
        for table, info in tables.items()
        if info.has_user_id or info.granted or table in ROW_LEVEL_SECURITY
        for finding in rule_findings(table, info, tables, APP_ROLE)
    ]
    models = [t.name for t in models_metadata().tables.values() if "user_id" in t.c]
    found += declaration_findings(conn, tables, ROW_LEVEL_SECURITY, models, APP_ROLE)
    found += other_privileges(conn, APP_ROLE) + setting_findings(conn, APP_ROLE, APP_ROLE_SETTINGS)
    conn.rollback()
    return found


def test_every_command_refuses_a_database_built_without_migrations(
    pg_server: PgServer, copy_of: CopyOf, tmp_path: Path
) -> None:
    """upgrade, downgrade, stamp, check and revision --autogenerate on a legacy database
    (and an upgrade joining a caller's transaction) each stop with the one line naming the
    adoption command, never "relation already exists", and the database is unchanged
    (pg_dump before and after)."""
    name = copy_of("L1", foreign=True)
    before = schema_ddl(pg_server, name)
    engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            cfg = alembic_config(conn)
            attempts: dict[str, Callable[[], object]] = {
                "upgrade": lambda: command.upgrade(cfg, "head"),
                "downgrade": lambda: command.downgrade(cfg, "base"),
                "stamp": lambda: command.stamp(cfg, "head"),
                "check": lambda: command.check(cfg),
                "revision": lambda: command.revision(
                    cfg, "x", autogenerate=True, version_path=str(tmp_path)
                ),
                "upgrade in the caller's transaction": lambda: joined(conn, cfg),
            }
            for what, attempt in attempts.items():
                with pytest.raises(CommandError) as caught:
                    attempt()
                message = str(caught.value)
                assert "built without migrations" in message and COMMAND in message, what
                assert "already exists" not in message and "\n" not in message, what
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []
    assert schema_ddl(pg_server, name) == before


def joined(conn: Connection, cfg: Config) -> None:
    """`alembic upgrade head` on a connection already in a transaction (env.py joins it)."""
    with conn.begin():
        command.upgrade(cfg, "head")


NO_TAGS, NOW, DAY = "'{}'::text[]", "now()::timestamp", "interval '1 day'"
DIRTY_ROWS = [  # user_id, title, priority, recurring, tags, due_date, recurring_end_date
    ("'  '", "'blank owner'", "'low'", "'none'", NO_TAGS, "NULL", "NULL"),
    (f"repeat('x', {USER_ID_MAX} + 1)", "'long owner'", "'low'", "'none'", NO_TAGS, "NULL", "NULL"),
    ("'ann'", "' '", "'low'", "'none'", NO_TAGS, "NULL", "NULL"),
    ("'ann'", "'odd priority'", "'x-unknown'", "'none'", NO_TAGS, "NULL", "NULL"),
    ("'ann'", "'no due date'", "'low'", "'weekly'", NO_TAGS, "NULL", "NULL"),
    ("'ann'", "'ends early'", "'low'", "'daily'", NO_TAGS, NOW, f"{NOW} - {DAY}"),
    ("'ann'", "'odd recurrence'", "'low'", "'x-unknown'", NO_TAGS, NOW, "NULL"),
    (
        "'ann'",
        "'too many'",
        "'low'",
        "'none'",
        f"array_fill('t'::text, ARRAY[{TAGS_MAX} + 1])",
        "NULL",
        "NULL",
    ),
    ("'ann'", "'same tag twice'", "'low'", "'none'", "ARRAY['Work', 'work']", "NULL", "NULL"),
    ("'ann'", "'blank tag'", "'low'", "'none'", "ARRAY[' ']", "NULL", "NULL"),
    (
        "'ann'",
        "'long tag'",
        "'low'",
        "'none'",
        f"ARRAY[repeat('t', {TAG_MAX} + 1)]",
        "NULL",
        "NULL",
    ),
]
DIRTY = (
    "INSERT INTO tasks (complete, created_at, updated_at, user_id, title, priority, recurring, "
    "tags, due_date, recurring_end_date) VALUES "
    + ", ".join(f"(false, {NOW}, {NOW}, {', '.join(row)})" for row in DIRTY_ROWS)
)
BROKEN = [
    "user_id is empty or whitespace only",
    f"user_id is longer than {USER_ID_MAX} characters",
    "title is empty or whitespace only",
    "priority is not one of " + ", ".join(f"'{p.value}'" for p in Priority),
    "recurring is not one of " + ", ".join(f"'{r.value}'" for r in Recurring),
    "recurring is not 'none' but there is no due_date",
    "recurring_end_date is set without a recurrence, or before due_date",
    f"there are more than {TAGS_MAX} tags",
    "two tags are equal ignoring case",
    "a tag is empty or whitespace only",
    f"a tag is longer than {TAG_MAX} characters",
]


def test_rows_that_break_the_contract_are_listed_and_nothing_changes(
    pg_server: PgServer, copy_of: CopyOf
) -> None:
    """Dirty legacy rows refuse the adoption: each broken rule with its count, ids and the
    SQL that lists them (that SQL finds exactly those rows); the database is unchanged; the
    priority case fix is named, never applied unasked."""
    name = copy_of("L3/varchar")
    execute(pg_server, name, DIRTY)
    before = schema_ddl(pg_server, name)
    rows = task_rows(pg_server.url(name))
    with pytest.raises(CommandError) as caught:
        adopt(pg_server.url(name))
    message = str(caught.value)
    first, *lines = message.splitlines()
    assert first.startswith("adoption refused: rows of tasks break the contract")
    assert "nothing was changed" in first
    assert len(lines) == len(BROKEN)  # priority: one unknown, and 'HIGH' as the app wrote it
    for words in BROKEN:
        line = next(line for line in lines if f" where {words} (" in line)
        count = int(line.split(" row(s)")[0].strip(" -"))
        sql = line.split("all of them: ", 1)[1]
        ids = [r[0] for r in pg_rows(pg_server, name, sql)]
        assert count == len(ids) >= 1 and f"(id {ids[0]}" in line, words
    case = next(line for line in lines if "priority is not one of" in line)
    assert "-x adopt-fix=priority-case (fold the letter case" in case
    assert schema_ddl(pg_server, name) == before and task_rows(pg_server.url(name)) == rows


def pg_rows(server: PgServer, dbname: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
    with engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return found


def test_an_unknown_shape_is_refused_naming_the_difference(
    pg_server: PgServer, copy_of: CopyOf
) -> None:
    """One column altered by hand: no shape matches; the refusal names the column and the
    nearest known shape, and changes nothing. A view on tasks is refused by name too."""
    name = copy_of("L2/varchar")
    execute(pg_server, name, "ALTER TABLE tasks ALTER COLUMN title TYPE varchar(300)")
    engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
    with engine.connect() as conn:
        before = describe(conn, known_names(revisions()))
    with pytest.raises(CommandError) as caught:
        adopt(pg_server.url(name), adopt_fix="priority-case")
    message = str(caught.value)
    assert message.splitlines()[0].startswith("adoption refused: this database's schema is no")
    assert (
        "column tasks.title is character varying(300) NOT NULL, the nearest known shape "
        "(L2/varchar: " in message
    )
    assert "has character varying(200) NOT NULL" in message
    with engine.connect() as conn:
        assert describe(conn, known_names(revisions())) == before
    execute(pg_server, name, "ALTER TABLE tasks ALTER COLUMN title TYPE varchar(200)")
    execute(pg_server, name, "CREATE VIEW open_tasks AS SELECT * FROM tasks WHERE NOT complete")
    with pytest.raises(CommandError, match=r"view open_tasks depend.* on table tasks"):
        adopt(pg_server.url(name), adopt_fix="priority-case")
    engine.dispose()


def test_a_database_equal_to_a_revision_is_recorded_as_it(pg_server: PgServer) -> None:
    """A database that a revision's migrations built but whose alembic_version is gone is
    recognised as that revision (its history's middle one, here) and recorded as it; the
    adoption command on a database under migrations is a plain upgrade."""
    revs = history(alembic_config())
    middle = revs[len(revs) // 2].revision
    with pg_server.database("at_rev") as name:
        migrate(pg_server.url(name), middle)
        execute(pg_server, name, "DROP TABLE alembic_version")
        adopt(pg_server.url(name), target=middle)
        assert scalar(pg_server, name, "SELECT version_num FROM alembic_version") == middle
        adopt(pg_server.url(name))
        assert scalar(pg_server, name, "SELECT version_num FROM alembic_version") == head()


def test_the_plan_changes_nothing_and_options_are_checked(
    pg_server: PgServer, copy_of: CopyOf, caplog: pytest.LogCaptureFixture
) -> None:
    """-x adopt=plan reports the shape, the zone and the data check, and ends the command
    having changed nothing; an unknown option, zone, fix or batch size is one line."""
    name = copy_of("L2/enum-upper")
    url = pg_server.url(name)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        before = describe(conn, None)
    caplog.set_level("INFO", logger="models")
    with pytest.raises(CommandError) as planned:
        adopt(url, adopt="plan", adopt_timezone="Europe/Berlin")
    assert str(planned.value).startswith("-x adopt=plan: the shape L2/enum-upper would be")
    assert str(planned.value).count("nothing was changed") == 1
    said = caplog.text
    assert "legacy shape L2/enum-upper" in said and "read as Europe/Berlin times" in said
    # The fixture's 02:30 on 30 March (skipped) and on 26 October (twice), in Berlin.
    values = [v for row in task_rows(url).values() for v in row.values()]
    skipped, twice = (values.count(datetime.fromisoformat(t)) for t in (GAP, AUTUMN))
    assert f"Europe/Berlin: {skipped} in an hour the clocks skipped" in said
    assert f"summer time), {twice} in an hour that happened twice" in said
    assert "every row of tasks meets the contract" in said
    with engine.connect() as conn:
        assert describe(conn, None) == before
        assert conn.execute(text("SELECT to_regnamespace('todo_adopt')")).scalar() is None
    wrong: list[tuple[dict[str, Any], str]] = [
        ({"adopt_colour": "red"}, "unknown option(s) adopt-colour"),
        ({"adopt_timezone": "Mars/Olympus"}, "is not a time zone this server knows"),
        ({"adopt_fix": "everything"}, "-x adopt-fix=everything is not a fix adoption knows"),
        ({"adopt_batch": "0"}, "is not a positive number of rows"),
    ]
    for options, words in wrong:
        with pytest.raises(CommandError, match=re.escape(words)) as caught:
            adopt(url, **options)
        assert "\n" not in str(caught.value)
    engine.dispose()


def test_revisions_json_is_what_the_revisions_build(pg_server: PgServer) -> None:
    """migrations/adoption/revisions.json (each revision's schema, as adoption compares a
    live database with it) is current: `python -m tests.snapshot` rewrites it."""
    compare_revisions(render_revisions(alembic_config(), pg_server))


def test_a_busy_table_pauses_the_adoption_and_the_same_command_resumes(
    pg_server: PgServer, copy_of: CopyOf
) -> None:
    """While a transaction writes to the legacy table, the sync trigger cannot be made:
    after the deploy's retries (lock_timeout) adoption pauses with one line, the legacy
    table as it was; run again once the writer is done, it finishes from where it was."""
    name = copy_of("L2/enum")
    url = pg_server.url(name)
    quick = Settings(
        lock_timeout_seconds=0.1, migration_lock_retries=1, migration_retry_pause_seconds=0.01
    )
    writer = create_engine(url, poolclass=pool.NullPool)
    try:
        with writer.connect() as conn:
            conn.execute(text("UPDATE tasks SET complete = true WHERE id = 1"))  # left open
            with pytest.raises(CommandError) as caught:
                adopt(url, settings=quick)
            assert str(caught.value).startswith(
                "adoption paused before it could install the sync trigger: table public.tasks "
                "was busy (lock_timeout 0.1s, 2 tries)"
            )
            assert "\n" not in str(caught.value)
            conn.rollback()
    finally:
        writer.dispose()
    assert scalar(pg_server, name, "SELECT to_regclass('alembic_version')") is None
    adopt(url, settings=quick)
    assert scalar(pg_server, name, "SELECT version_num FROM alembic_version") == head()
