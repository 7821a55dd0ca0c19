"""The developer's workflow: autogenerate writes revisions that apply on tables with rows.

Each test drives the real `alembic revision --autogenerate` (in process) against a
database at the project's head, with the project's models plus a change of its own (handed
to env.py as config.attributes["target_metadata"]), and writes revisions to a temp dir.
Nothing here names a column of the project's head: the changes bring their own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlmodel.sql.sqltypes import AutoString

from migrations import ops
from models.naming import NAMING_CONVENTION
from models.settings import Settings
from tests import checks
from tests.checks.common import alembic_step, bound, scripts
from tests.checks.lint import SQUAWK_CONFIG, squawk_binary
from tests.support import ROOT, PgServer, alembic_config, head, revision, run_alembic
from tests.synthetic import history

EFFORT = sa.Enum("small", "large", name="wf_effort", native_enum=False, create_constraint=True)


def project_metadata() -> sa.MetaData:
    """A copy of the models' tables (as at the project's head), to change like a developer."""
    from sqlmodel import SQLModel

    import models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")  # registers every table
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(metadata)
    return metadata


@dataclass
class Workspace:
    """A database at the project's head holding rows, and a folder for new revisions."""

    engine: Engine
    versions: Path
    server: PgServer

    def config(self, conn: Connection | None, metadata: sa.MetaData | None = None) -> Config:
        """The project's alembic config, bound to conn, with the new revisions' folder."""
        locations = f"{ROOT / 'migrations' / 'versions'}{os.pathsep}{self.versions}"
        cfg = alembic_config(conn, version_locations=locations)
        if metadata is not None:
            cfg.attributes["target_metadata"] = metadata
        return cfg

    def autogenerate(self, metadata: sa.MetaData, message: str, hooks: bool = False) -> list[Path]:
        """`alembic revision --autogenerate -m message`: the files it wrote, in order (ruff
        formats them only with hooks: two processes per file; the trial runs them)."""
        before = set(self.versions.iterdir())
        with self.engine.connect() as conn:
            cfg = self.config(conn, metadata)
            if not hooks:
                cfg.set_section_option("post_write_hooks", "hooks", "")
            command.revision(cfg, message, autogenerate=True, version_path=str(self.versions))
        return sorted(set(self.versions.iterdir()) - before - {self.versions / "__pycache__"})

    def migrate(self, target: str = "head", *, down: bool = False, **attributes: Any) -> None:
        """alembic upgrade (or downgrade) on the workspace's database."""
        with self.engine.connect() as conn:
            cfg = self.config(conn)
            cfg.attributes.update(attributes)
            (command.downgrade if down else command.upgrade)(cfg, target)

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()


@pytest.fixture
def work(pg_server: PgServer, head_template: str, tmp_path: Path) -> Iterator[Workspace]:
    """A database at the project's head with two tasks in it; revisions go to tmp_path."""
    versions = tmp_path / "versions"
    versions.mkdir()
    with pg_server.database("wf", template=head_template) as name:
        engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        space = Workspace(engine, versions, pg_server)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('a', 'x'), ('b', 'y')"))
        yield space
        engine.dispose()


def code(path: Path) -> str:
    """A written revision's code without its docstring, quotes as single quotes."""
    return path.read_text().split('"""', 2)[2].replace('"', "'")


def squawk_rules(cfg: Config, rev: str) -> set[str]:
    """The squawk rules that fire on one revision's own `upgrade <parent>:<rev> --sql`."""
    script = scripts(cfg).get_revision(rev)
    assert script is not None
    sql = checks.offline_sql(cfg, f"{script.down_revision}:{rev}")
    run = subprocess.run(
        [squawk_binary(), "--config", str(SQUAWK_CONFIG), "--reporter", "json"],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
    )
    return {v["rule_name"] for v in json.loads(run.stdout or "[]")}


def test_the_new_users_trial(work: Workspace) -> None:
    """An enum column with a default, an index on it, a table with a FK to tasks: the
    revisions autogenerate writes apply on rows, go down and up, and pass the checks."""
    metadata = project_metadata()
    tasks = metadata.tables["tasks"]
    tasks.append_column(sa.Column("wf_effort", EFFORT, server_default="small", nullable=False))
    first = work.autogenerate(metadata, "add wf_effort", hooks=True)
    work.migrate()
    sa.Index("ix_tasks_wf_effort", tasks.c.wf_effort)
    second = work.autogenerate(metadata, "index wf_effort", hooks=True)
    work.migrate()
    sa.Table(
        "wf_notes",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column(
            "task_id",
            sa.BigInteger,
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("body", sa.String(500), nullable=False),
    )
    third = work.autogenerate(metadata, "add wf_notes", hooks=True)
    work.migrate()
    n = int(head())
    assert [p.name for p in first + second + third] == [
        f"{n + 1:04d}_add_wf_effort.py",
        f"{n + 2:04d}_add_wf_effort_validate.py",
        f"{n + 3:04d}_index_wf_effort.py",
        f"{n + 4:04d}_add_wf_notes.py",
    ]
    wf_effort, validate, index, wf_notes = (code(p) for p in first + second + third)
    assert "sa.String(length=5), server_default='small'" in wf_effort
    assert "postgresql_not_valid=True" in wf_effort and "ops." not in wf_effort
    assert "ops.validate_constraint('tasks', 'ck_tasks_wf_effort')" in validate
    undo = validate.split("def downgrade")[1]  # back to NOT VALID, written out (--sql too)
    assert "op.drop_constraint(op.f('ck_tasks_wf_effort'), 'tasks', type_='check')" in undo
    assert "'wf_effort IN ('small', 'large')',\n        postgresql_not_valid=True" in undo
    assert "ops.create_index_concurrently('ix_tasks_wf_effort', 'tasks', 'wf_effort')" in index
    assert "op.create_table" in wf_notes and "ops." not in wf_notes

    assert work.scalar("SELECT string_agg(wf_effort, ',') FROM tasks") == "small,small"
    assert work.scalar(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'ck_tasks_wf_effort'"
    )
    with pytest.raises(sa.exc.IntegrityError, match="ck_tasks_wf_effort"):
        work.scalar("INSERT INTO tasks (user_id, title, wf_effort) VALUES ('c', 'z', 'huge')")
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO wf_notes (task_id, body) SELECT min(id), 'n' FROM tasks"))
    work.migrate(head(), down=True, allow_data_loss=True)
    assert work.scalar("SELECT count(*) FROM tasks") == 2
    work.migrate()

    with work.engine.connect() as conn:
        cfg = work.config(conn, metadata)
        command.check(cfg)  # the models and the migrated database agree
        cfg.attributes.pop("connection")
        checks.check_models_match(cfg, work.server, metadata)
        for rev in range(n + 1, n + 5):
            assert squawk_rules(cfg, f"{rev:04d}") == set(), rev
    # Each written revision goes down to exactly where it started (the validation's
    # downgrade puts the CHECK back NOT VALID), one step at a time: so all four at once do
    # too (check 4 would only repeat it). (The project's own: tests/test_schema_checks.py.)
    checks.check_stairway(cfg, work.server, since=head())


def test_no_change_writes_no_revision(work: Workspace) -> None:
    """Models equal to the database at head: autogenerate writes no file."""
    assert work.autogenerate(project_metadata(), "nothing") == []


def test_a_foreign_key_and_its_index_on_an_existing_table(work: Workspace) -> None:
    """A FK column on tasks: added NOT VALID, validated in a later revision, its index
    built CONCURRENTLY in one more: three revisions, none mixing transactions and steps."""
    metadata = project_metadata()
    fk = sa.ForeignKey("tasks.id", ondelete="SET NULL")
    metadata.tables["tasks"].append_column(sa.Column("wf_parent_id", sa.BigInteger, fk, index=True))
    written = [code(p) for p in work.autogenerate(metadata, "parent")]
    assert len(written) == 3
    main, validate, index = written
    assert "postgresql_not_valid=True" in main and "ops." not in main
    assert "ops.validate_constraint('tasks', 'fk_tasks_wf_parent_id_tasks')" in validate
    undo = validate.split("def downgrade")[1]
    assert "type_='foreignkey'" in undo and "postgresql_not_valid=True" in undo
    assert (
        "ops.create_index_concurrently('ix_tasks_wf_parent_id', 'tasks', 'wf_parent_id')" in index
    )
    assert "op." not in index.replace("from alembic import op", "")
    work.migrate()
    assert work.scalar("SELECT convalidated FROM pg_constraint WHERE conname LIKE 'fk_tasks%'")
    assert work.scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_tasks_wf_parent_id'::regclass"
    )
    work.migrate(head(), down=True, allow_data_loss=True)
    work.migrate()
    with work.engine.connect() as conn:
        command.check(work.config(conn, metadata))
    # the FK back NOT VALID going down
    checks.check_stairway(work.config(None), work.server, since=head())


def test_a_unique_partial_descending_index_is_built_and_dropped_concurrently(
    work: Workspace,
) -> None:
    """An index with DESC, WHERE and UNIQUE on existing columns: built CONCURRENTLY with all
    three; removed from the model, dropped CONCURRENTLY; each in a revision of its own."""
    metadata = project_metadata()
    tasks = metadata.tables["tasks"]
    tasks.append_column(sa.Column("wf_a", sa.Integer))
    tasks.append_column(sa.Column("wf_b", sa.Integer))
    work.autogenerate(metadata, "a and b")
    work.migrate()
    index = sa.Index(
        "ix_tasks_wf_a_wf_b",
        "wf_a",
        sa.text("wf_b DESC"),
        unique=True,
        postgresql_where=sa.text("wf_a > 0"),
    )
    index._set_parent(tasks)
    [built] = work.autogenerate(metadata, "index a b")
    assert (
        "ops.create_index_concurrently('ix_tasks_wf_a_wf_b', 'tasks', 'wf_a, wf_b DESC', "
        "unique=True, where='wf_a > 0')"
    ) in code(built)
    work.migrate()
    definition = work.scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tasks_wf_a_wf_b'"
    )
    assert definition.endswith("USING btree (wf_a, wf_b DESC) WHERE (wf_a > 0)")
    assert "UNIQUE" in definition
    tasks.indexes.discard(index)
    [dropped] = work.autogenerate(metadata, "no index a b")
    assert "ops.drop_index_concurrently('ix_tasks_wf_a_wf_b')" in code(dropped)
    work.migrate()
    assert work.scalar("SELECT to_regclass('ix_tasks_wf_a_wf_b')") is None
    work.migrate("-1", down=True)
    assert work.scalar("SELECT to_regclass('ix_tasks_wf_a_wf_b')") is not None


def test_a_check_by_hand_is_added_not_valid_then_validated(work: Workspace) -> None:
    """The CHECK pattern of docs/workflow.md: NOT VALID in one revision (new rows are checked), then
    ops.validate_constraint in the next; both lint-clean; an old bad row stops VALIDATE."""
    name, check = 'op.f("ck_tasks_wf_short")', '"length(title) < 100"'
    add = f'op.create_check_constraint({name}, "tasks", {check}, postgresql_not_valid=True)'
    drop = 'op.drop_constraint(op.f("ck_tasks_wf_short"), "tasks", type_="check")'
    validate = 'ops.validate_constraint("tasks", "ck_tasks_wf_short")'
    (work.versions / "add.py").write_text(revision(numbered(1), head(), add, drop))
    (work.versions / "validate.py").write_text(
        revision(numbered(2), numbered(1), validate, imports="from migrations import ops")
    )
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('c', repeat('x', 150))"))
    work.migrate(numbered(1))
    with pytest.raises(sa.exc.IntegrityError, match="ck_tasks_wf_short"):
        work.scalar("INSERT INTO tasks (user_id, title) VALUES ('d', repeat('y', 150))")
    with pytest.raises(CommandError, match=r"ck_tasks_wf_short.*is violated by some row"):
        work.migrate()
    with work.engine.begin() as conn:
        conn.execute(text("DELETE FROM tasks WHERE length(title) >= 100"))
    work.migrate()
    assert work.scalar("SELECT convalidated FROM pg_constraint WHERE conname = 'ck_tasks_wf_short'")
    with work.engine.connect() as conn:
        cfg = work.config(conn)
        assert squawk_rules(cfg, numbered(1)) == squawk_rules(cfg, numbered(2)) == set()


def test_a_new_table_whose_foreign_key_has_no_index_is_warned_about(
    work: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    """A new table referencing tasks without an index on the column: a warning with the fix;
    its enum column gets its named CHECK inside CREATE TABLE."""
    metadata = project_metadata()
    fk = sa.ForeignKey("tasks.id")
    sa.Table(
        "wf_links",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.BigInteger, fk),
        sa.Column("kind", EFFORT, server_default="small", nullable=False),
    )
    with caplog.at_level(logging.WARNING, logger="models"):
        [written] = work.autogenerate(metadata, "links")
    assert "op.create_table('wf_links'" in code(written)
    assert "create_constraint=True" in code(written)
    assert "wf_links.task_id references tasks but has no index" in caplog.text
    assert "index=True" in caplog.text
    work.migrate()
    assert work.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'ck_wf_links_wf_effort'")


def test_a_widening_declares_its_reviewed_exception(work: Workspace) -> None:
    """varchar(20) -> sqlmodel's varchar(40): applied without a rewrite, and the revision
    declares the one squawk rule that fires on it, with its reason."""
    metadata = project_metadata()
    metadata.tables["tasks"].append_column(sa.Column("wf_note", sa.String(20)))
    work.autogenerate(metadata, "wf_note")
    work.migrate()
    metadata.tables["tasks"].c.wf_note.type = AutoString(40)  # what Field(max_length=40) gives
    [widening] = work.autogenerate(metadata, "wider wf_note", hooks=True)
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--config",
            str(ROOT / "pyproject.toml"),
            str(widening),
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout  # the declaration fits the line length too
    before = work.scalar("SELECT relfilenode FROM pg_class WHERE relname = 'tasks'")
    work.migrate()
    assert work.scalar("SELECT relfilenode FROM pg_class WHERE relname = 'tasks'") == before
    module: dict[str, Any] = {}
    exec(compile(widening.read_text(), str(widening), "exec"), module)
    declared = module["schema_check_exceptions"]
    assert "no rewrite" in declared["lint:changing-column-type"]
    with work.engine.connect() as conn:
        rules = squawk_rules(work.config(conn), module["revision"])
    assert {f"lint:{rule}" for rule in rules} == set(declared)


def test_not_null_on_an_existing_column_goes_through_a_validated_check(work: Workspace) -> None:
    """NULL -> NOT NULL: a NOT VALID CHECK, then ops.set_not_null; rows holding NULL stop it
    with the CHECK's name, and after a backfill it applies and leaves no helper CHECK."""
    metadata = project_metadata()
    metadata.tables["tasks"].append_column(sa.Column("wf_note", sa.String(20)))
    work.autogenerate(metadata, "wf_note")
    work.migrate()
    metadata.tables["tasks"].c.wf_note.nullable = False
    check, validate = work.autogenerate(metadata, "wf_note required")
    assert "postgresql_not_valid=True" in check.read_text()
    assert "ops.set_not_null('tasks', 'wf_note')" in code(validate)
    with pytest.raises(CommandError, match=r"ck_tasks_wf_note_not_null.*is violated by some row"):
        work.migrate()
    with work.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET wf_note = 'n'"))
    work.migrate()
    assert (
        work.scalar(
            "SELECT is_nullable FROM information_schema.columns WHERE column_name = 'wf_note'"
        )
        == "NO"
    )
    assert not work.scalar(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'ck_tasks_wf_note_not_null'"
    )
    with work.engine.connect() as conn:
        cfg = work.config(conn, metadata)
        command.check(cfg)
        module: dict[str, Any] = {}
        exec(compile(validate.read_text(), str(validate), "exec"), module)
        rules = squawk_rules(cfg, module["revision"])
    assert {f"lint:{rule}" for rule in rules} == set(module["schema_check_exceptions"])
    work.migrate("-1", down=True)
    assert work.scalar(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'ck_tasks_wf_note_not_null'"
    )
    work.migrate()
    # the helper CHECK back NOT VALID
    checks.check_stairway(work.config(None), work.server, since=head())


def test_a_new_enum_value_replaces_the_check_not_valid(work: Workspace) -> None:
    """A value added to an enum (longer, or the same length, which autogenerate alone does
    not see): the varchar widens, the CHECK is replaced NOT VALID and validated next."""
    metadata = project_metadata()
    column: sa.Column[str] = sa.Column("wf_effort", EFFORT, server_default="small", nullable=False)
    metadata.tables["tasks"].append_column(column)
    work.autogenerate(metadata, "effort")
    work.migrate()
    for values in (("small", "large", "medium"), ("small", "large", "medium", "tiny")):
        wider = sa.Enum(*values, name="wf_effort", native_enum=False, create_constraint=True)
        metadata = project_metadata()
        column = sa.Column("wf_effort", wider, server_default="small", nullable=False)
        metadata.tables["tasks"].append_column(column)
        main, validate = (code(p) for p in work.autogenerate(metadata, f"{values[-1]} effort"))
        assert "op.drop_constraint(op.f('ck_tasks_wf_effort'), 'tasks', type_='check')" in main
        assert f"'{values[-1]}')', postgresql_not_valid=True" in main
        assert "ops.validate_constraint('tasks', 'ck_tasks_wf_effort')" in validate
        work.migrate()
        with work.engine.begin() as conn:
            conn.execute(text(f"UPDATE tasks SET wf_effort = '{values[-1]}' WHERE user_id = 'a'"))
        with work.engine.connect() as conn:
            command.check(work.config(conn, metadata))
    with pytest.raises(CommandError, match=r"ck_tasks_wf_effort.*is violated by some row"):
        work.migrate("-2", down=True)  # 'tiny' is stored: the old CHECK cannot come back


def native(*values: str, name: str = "wf_effort") -> sa.Enum:
    """A native PostgreSQL enum of a StrEnum's values, declared as models/task.py does."""
    members = StrEnum("WfValues", {value.upper(): value for value in values})  # type: ignore[misc]
    return sa.Enum(members, name=name, values_callable=lambda e: [m.value for m in e])


def with_native_effort(*values: str, default: str = "small") -> sa.MetaData:
    """The project's tables plus tasks.wf_effort, a native enum of values."""
    metadata = project_metadata()
    column: sa.Column[str] = sa.Column(
        "wf_effort", native(*values), server_default=default, nullable=False
    )
    metadata.tables["tasks"].append_column(column)
    return metadata


def labels(work: Workspace, name: str = "wf_effort") -> str | None:
    """A type's values in their sort order, or None when the type does not exist."""
    if work.scalar(f"SELECT to_regtype('{name}')") is None:
        return None
    return str(work.scalar(f"SELECT array_to_string(enum_range(NULL::{name}), ',')"))


def test_a_native_enum_column_creates_its_type_first_and_drops_it_last(work: Workspace) -> None:
    """A native enum column with a default on tasks (rows in it): CREATE TYPE, then the
    column; down drops the column, then the type (no leftover); up again; --sql applies."""
    metadata = with_native_effort("small", "large")
    [written] = work.autogenerate(metadata, "wf_effort")
    source = code(written)
    upgrade, downgrade = source.split("def downgrade")
    assert upgrade.index("CREATE TYPE wf_effort AS ENUM ('small', 'large')") < upgrade.index(
        "op.add_column"
    )
    assert (
        "postgresql.ENUM('small', 'large', name='wf_effort', create_type=False), "
        "server_default='small'"
    ) in upgrade
    assert downgrade.index("op.drop_column") < downgrade.index("DROP TYPE wf_effort")
    work.migrate()
    assert work.scalar("SELECT string_agg(wf_effort::text, ',') FROM tasks") == "small,small"
    with work.engine.connect() as conn:
        cfg = work.config(conn, metadata)
        command.check(cfg)
        cfg.attributes.pop("connection")
        checks.check_models_match(cfg, work.server, metadata)
        checks.check_offline_matches_online(cfg, work.server)
        assert squawk_rules(work.config(conn), numbered(1)) == set()
    work.migrate(head(), down=True, allow_data_loss=True)
    assert labels(work) is None
    work.migrate()
    assert labels(work) == "small,large"


def test_a_new_table_with_a_native_enum_creates_its_type_once(work: Workspace) -> None:
    """A new table with two columns of one new native enum type: one CREATE TYPE before the
    table, DROP TYPE after DROP TABLE; it applies, and leaves no type behind going down."""
    metadata = project_metadata()
    kind = native("red", "green", name="wf_colour")
    sa.Table(
        "wf_paints",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("inside", kind, server_default="red", nullable=False),
        sa.Column("outside", kind),
    )
    [written] = work.autogenerate(metadata, "paints")
    upgrade, downgrade = code(written).split("def downgrade")
    assert upgrade.count("CREATE TYPE wf_colour") == 1
    assert upgrade.index("CREATE TYPE wf_colour") < upgrade.index("op.create_table")
    assert downgrade.index("op.drop_table") < downgrade.index("DROP TYPE wf_colour")
    work.migrate()
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO wf_paints (id, outside) VALUES (1, 'green')"))
    with work.engine.connect() as conn:
        command.check(work.config(conn, metadata))
    work.migrate(head(), down=True, allow_data_loss=True)
    assert labels(work, "wf_colour") is None


def test_an_added_native_enum_value_is_seen_and_added_in_its_own_step(work: Workspace) -> None:
    """Values added to a native enum: alembic check and the models check see them; the
    revision adds them in declaration order (ALTER TYPE, committed first), so the next
    revision's default may use one; down keeps them (documented), up again reruns."""
    work.autogenerate(with_native_effort("small", "large"), "wf_effort")
    work.migrate()
    metadata = with_native_effort("tiny", "small", "medium", "large", default="medium")
    with work.engine.connect() as conn:
        cfg = work.config(conn, metadata)
        with pytest.raises(
            CommandError,
            match=r"enum type wf_effort: value 'tiny' is in the models, not in the database",
        ):
            command.check(cfg)
    with pytest.raises(checks.SchemaCheckError, match="wf_effort"):
        checks.check_models_match(work.config(None), work.server, metadata)
    values, default = (code(p) for p in work.autogenerate(metadata, "more effort"))
    assert "ops.add_enum_value('wf_effort', 'tiny', before='small')" in values
    assert "ops.add_enum_value('wf_effort', 'medium', after='small')" in values
    assert "op." not in values.replace("from alembic import op", "")
    assert "server_default='medium'" in default
    work.migrate()
    assert labels(work) == "tiny,small,medium,large"
    assert work.scalar("SELECT max(wf_effort) FROM tasks") == "small"
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('c', 'z')"))
    assert work.scalar("SELECT max(wf_effort) FROM tasks") == "medium"  # declaration order
    with work.engine.connect() as conn:
        command.check(work.config(conn, metadata))
        assert squawk_rules(work.config(conn), numbered(2)) == set()
    checks.check_offline_matches_online(work.config(None), work.server)
    with work.engine.begin() as conn:  # rows holding an added value refuse the downgrade
        conn.execute(text("UPDATE tasks SET wf_effort = 'small'"))
    work.migrate(numbered(1), down=True)
    assert labels(work) == "small,large"  # ops.remove_enum_value (tested below)
    work.migrate()


def effort_columns(work: Workspace) -> list[tuple[str, str, str | None]]:
    """(table.column, type, default) of every column using wf_effort (or an array of it)."""
    query = """
        SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod),
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.atttypid IN ('wf_effort'::regtype, 'wf_effort[]'::regtype) ORDER BY 1"""
    with work.engine.connect() as conn:
        return [(str(r[0]), str(r[1]), r[2]) for r in conn.execute(text(query))]


def with_added_values(work: Workspace) -> None:
    """tasks.wf_effort (small, large, default small) migrated, a table by hand with an
    array of it, then 'tiny' and 'medium' added by autogenerate (their own revision, 2)."""
    work.autogenerate(with_native_effort("small", "large"), "wf_effort")
    work.migrate()
    (values,) = (code(p) for p in work.autogenerate(with_native_effort(*FOUR), "more"))
    with work.engine.begin() as conn:  # (after autogenerate, which would drop wf_bag)
        conn.execute(text("UPDATE tasks SET wf_effort = 'large' WHERE title = 'y'"))
        conn.execute(text("CREATE TABLE wf_bag (e wf_effort[] DEFAULT '{large}')"))
        conn.execute(text("INSERT INTO wf_bag VALUES ('{small,large}'), (DEFAULT)"))
    assert "ops.remove_enum_value('wf_effort', 'tiny')" in values
    assert "ops.remove_enum_value('wf_effort', 'medium')" in values
    work.migrate()
    assert labels(work) == ",".join(FOUR)


FOUR = ("tiny", "small", "medium", "large")
ROWS = "SELECT string_agg(title || '=' || wf_effort, ',' ORDER BY title) FROM tasks"
BAG = "SELECT string_agg(e::text, ',' ORDER BY e::text) FROM wf_bag"


def test_the_downgrade_of_added_enum_values_removes_them(work: Workspace) -> None:
    """Down after values were added: the type is rebuilt with its old values in their order,
    columns and arrays keep their rows and defaults, the old type is gone; up again works."""
    with_added_values(work)
    columns = effort_columns(work)
    assert ("tasks.wf_effort", "wf_effort", "'small'::wf_effort") in columns
    assert ("wf_bag.e", "wf_effort[]", "'{large}'::wf_effort[]") in columns
    work.migrate(numbered(1), down=True)
    assert labels(work) == "small,large"
    assert effort_columns(work) == columns
    assert work.scalar(ROWS) == "x=small,y=large"
    assert work.scalar(BAG) == "{large},{small,large}"
    assert work.scalar("SELECT to_regtype('wf_effort__old')") is None
    with work.engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        ops.remove_enum_value("wf_effort", "medium")  # gone already: nothing to do
    assert labels(work) == "small,large"
    work.migrate()
    assert labels(work) == ",".join(FOUR)
    assert work.scalar(ROWS) == "x=small,y=large"


def test_removing_an_enum_value_that_rows_hold_is_refused(work: Workspace) -> None:
    """A row (or an array element) holding an added value: the downgrade refuses with the
    count, also with the data-loss flag, and changes nothing; --sql refuses in psql too;
    a CHECK comparing with a literal of the type is named; once clear, both ways work."""
    with_added_values(work)
    with work.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET wf_effort = 'medium' WHERE title = 'x'"))
        conn.execute(text("INSERT INTO wf_bag VALUES ('{tiny,medium}')"))
    for flag in (False, True):
        with pytest.raises(CommandError) as exc:
            work.migrate(numbered(1), down=True, allow_data_loss=flag)
        assert str(exc.value) == (
            f"downgrade of revision {numbered(2)} refused: it would drop value 'medium' of "
            "enum type wf_effort and its 2 row(s) holding it; nothing was changed, the "
            f"database is at {numbered(2)}: change those rows to another value first (an "
            "UPDATE, by hand or in the revision before ops.remove_enum_value); "
            "-x allow-data-loss=true cannot help: there is no value to map them to"
        )
    assert labels(work) == ",".join(FOUR)
    dbname = str(work.engine.url.database)
    sql = checks.offline_sql(work.config(None), f"{numbered(2)}:{numbered(1)}", down=True)
    refused = checks.common.psql(work.server, dbname, sql)
    assert refused.returncode != 0 and "row(s) hold value 'medium'" in refused.stderr
    assert labels(work) == ",".join(FOUR)
    with work.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET wf_effort = 'large' WHERE title = 'x'"))
        conn.execute(text("DELETE FROM wf_bag WHERE e && '{tiny,medium}'"))
        conn.execute(text("ALTER TABLE tasks ADD CONSTRAINT wf_ck CHECK (wf_effort <> 'tiny')"))
    with pytest.raises(CommandError, match=r"cannot retype public.tasks.wf_effort .*wf_ck") as exc:
        work.migrate(numbered(1), down=True)
    assert "\n" not in str(exc.value)
    assert labels(work) == ",".join(FOUR)
    with work.engine.begin() as conn:
        conn.execute(text("ALTER TABLE tasks DROP CONSTRAINT wf_ck"))
    applied = checks.common.psql(work.server, dbname, sql)
    assert applied.returncode == 0, applied.stderr
    assert labels(work) == "small,large"
    assert work.scalar(ROWS) == "x=large,y=large" and work.scalar(BAG) == "{large},{small,large}"
    work.migrate()
    assert labels(work) == ",".join(FOUR)


def test_enum_values_with_a_colon_or_a_percent_sign_are_added_as_written(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """ops.add_enum_value/remove_enum_value take any label: 'x :y' is no bind parameter,
    and '5%' is not printed '5%%' by --sql; online and offline build the same type."""
    cfg = history(
        tmp_path,
        a0002_size=revision(
            "0002",
            "0001",
            "op.execute(\"CREATE TYPE size AS ENUM ('s')\")",
            'op.execute("DROP TYPE size")',
        ),
        a0003_odd=revision(
            "0003",
            "0002",
            "ops.add_enum_value('size', 'x :y')\nops.add_enum_value('size', '5%', after='s')",
            "ops.remove_enum_value('size', '5%')\nops.remove_enum_value('size', 'x :y')",
            imports="from migrations import ops",
        ),
    )
    assert "'5%'" in checks.offline_sql(cfg, "0002:0003")
    with pg_server.database("odd") as name, bound(cfg, pg_server, name) as conn:
        alembic_step(cfg, "head")
        labels = text("SELECT enum_range(NULL::size)::text")
        assert conn.execute(labels).scalar() == '{s,5%,"x :y"}'
        alembic_step(cfg, "0002", down=True)
        assert conn.execute(labels).scalar() == "{s}"
    checks.check_offline_matches_online(cfg, pg_server)


def test_a_history_with_an_added_enum_value_passes_the_checks(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A synthetic history adding an enum value: stairway (each step down leaves no trace),
    one transaction or rerunnable, and offline == online pass with ops.remove_enum_value as
    its downgrade."""
    column = "postgresql.ENUM('s', 'l', name='size', create_type=False)"
    cfg = history(
        tmp_path,
        **{
            "0002_size": revision(
                "0002",
                "0001",
                f"""
                op.execute("CREATE TYPE size AS ENUM ('s', 'l')")
                op.add_column("items", sa.Column("size", {column}, server_default="s"))
                """,
                'op.drop_column("items", "size")\nop.execute("DROP TYPE size")',
                imports="from sqlalchemy.dialects import postgresql",
            ),
            "0003_m": revision(
                "0003",
                "0002",
                "ops.add_enum_value('size', 'm', after='s')",
                "ops.remove_enum_value('size', 'm')",
                imports="from migrations import ops",
            ),
        },
    )
    checks.check_stairway(cfg, pg_server, since="0001")  # (BASE: the proofs' own)
    checks.check_one_transaction_or_rerunnable(cfg)
    checks.check_offline_matches_online(cfg, pg_server)


def test_a_removed_native_enum_value_is_refused_with_the_manual_path(work: Workspace) -> None:
    """A value dropped from a native enum in the model: autogenerate and check refuse in one
    line naming the value and the manual path; no revision is written."""
    work.autogenerate(with_native_effort("small", "large"), "wf_effort")
    work.migrate()
    before = set(work.versions.glob("*.py"))
    metadata = with_native_effort("small")
    refusal = r"enum type wf_effort: the models drop 'large' .*PostgreSQL cannot drop"
    with pytest.raises(CommandError, match=refusal) as exc:
        work.autogenerate(metadata, "less effort")
    assert "\n" not in str(exc.value) and "USING col::text::" in str(exc.value)
    assert set(work.versions.glob("*.py")) == before
    with work.engine.connect() as conn, pytest.raises(CommandError, match=refusal):
        command.check(work.config(conn, metadata))


def test_a_type_change_to_a_native_enum_is_refused_with_the_manual_path(work: Workspace) -> None:
    """varchar -> native enum on an existing column (a rewrite): refused in one line."""
    metadata = project_metadata()
    metadata.tables["tasks"].append_column(sa.Column("wf_size", sa.String(10)))
    work.autogenerate(metadata, "wf_size")
    work.migrate()
    metadata.tables["tasks"].c.wf_size.type = native("s", "m", name="wf_size")
    with pytest.raises(CommandError, match=r"tasks.wf_size changes its type .* by hand"):
        work.autogenerate(metadata, "wf_size enum")


def test_a_not_null_column_without_a_default_is_refused(work: Workspace) -> None:
    """A NOT NULL column without server default on an existing table: refused, with the fix."""
    metadata = project_metadata()
    metadata.tables["tasks"].append_column(sa.Column("wf_size", sa.Integer, nullable=False))
    with pytest.raises(CommandError, match=r"tasks.wf_size is NOT NULL without a server default"):
        work.autogenerate(metadata, "wf_size")
    assert not list(work.versions.glob("*.py"))


def numbered(k: int) -> str:
    """The k-th revision after the project's head."""
    return f"{int(head()) + k:04d}"


def test_expand_backfill_contract_renames_a_column_without_losing_a_value(
    work: Workspace,
) -> None:
    """wf_note -> wf_memo: add wf_memo, ops.backfill in batches (one transaction each), drop wf_note
    with its declared exceptions; every value arrives, and comes back on downgrade."""
    ops_import = "from migrations import ops"
    exceptions = (
        'schema_check_exceptions = {"data-survives": "wf_note was copied to wf_memo first", '
        '"lint:ban-drop-column": "the app reads wf_memo since the previous release"}'
    )
    wf_note = 'sa.Column("wf_note", sa.String(50))'
    files = {
        "a1": revision(
            numbered(1),
            head(),
            f'op.add_column("tasks", {wf_note})',
            'op.drop_column("tasks", "wf_note")',
        ),
        "a2": revision(
            numbered(2),
            numbered(1),
            'op.add_column("tasks", sa.Column("wf_memo", sa.String(50)))',
            'op.drop_column("tasks", "wf_memo")',
        ),
        "a3": revision(
            numbered(3),
            numbered(2),
            'ops.backfill("tasks", "wf_memo = wf_note", "wf_memo IS NULL AND wf_note IS NOT NULL", '
            "batch=1)",
            imports=ops_import,
        ),
        "a4": revision(
            numbered(4),
            numbered(3),
            'op.drop_column("tasks", "wf_note")',
            f'op.add_column("tasks", {wf_note})\nop.execute("UPDATE tasks SET wf_note = wf_memo")',
            imports=exceptions,
        ),
    }
    for name, source in files.items():
        (work.versions / f"{name}.py").write_text(source)
    work.migrate(numbered(1))
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('c', 'z')"))
        conn.execute(text("UPDATE tasks SET wf_note = 'note of ' || user_id"))
    work.migrate()
    assert work.scalar("SELECT string_agg(wf_memo, ',' ORDER BY id) FROM tasks") == (
        "note of a,note of b,note of c"
    )
    assert work.scalar("SELECT count(DISTINCT xmin::text) FROM tasks") == 3  # 3 batches
    with work.engine.connect() as conn:
        cfg = work.config(conn)
        assert squawk_rules(cfg, numbered(3)) == set()
        assert squawk_rules(cfg, numbered(4)) == {"ban-drop-column"}
    work.migrate(numbered(1), down=True, allow_data_loss=True)
    assert work.scalar("SELECT string_agg(wf_note, ',' ORDER BY id) FROM tasks") == (
        "note of a,note of b,note of c"
    )


def test_a_failed_concurrent_build_after_ordinary_ddl_says_what_stays(work: Workspace) -> None:
    """ADD COLUMN, then a CONCURRENTLY build that fails: the line says the column stays
    committed while the version did not move, and what to do; not "rolled back"."""
    upgrade = (
        'op.add_column("tasks", sa.Column("wf_note", sa.Text()))\n'
        'ops.create_index_concurrently("ix_tasks_one_per_user", "tasks", "user_id", unique=True)'
    )
    source = revision(numbered(1), head(), upgrade, imports="from migrations import ops")
    (work.versions / "mixed.py").write_text(source)
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('a', 'again')"))
    with pytest.raises(CommandError) as exc:
        work.migrate()
    message = str(exc.value)
    assert message.startswith(f"revision {numbered(1)} failed (could not create unique index")
    assert f"stay applied while the database is still recorded at {head()}" in message
    assert "Undo them by hand, then split the revision" in message
    assert "rolled back" not in message
    assert work.scalar(
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'wf_note'"
    )


def test_a_failed_step_of_a_rerunnable_revision_says_rerun(work: Workspace) -> None:
    """A revision of ops.py steps only, failing: the line says its steps are safe to rerun."""
    upgrade = (
        'ops.create_index_concurrently("ix_tasks_one_per_user", "tasks", "user_id", unique=True)'
    )
    source = revision(numbered(1), head(), upgrade, imports="from migrations import ops")
    (work.versions / "steps.py").write_text(source)
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO tasks (user_id, title) VALUES ('a', 'again')"))
    with pytest.raises(CommandError, match=r"stay and are safe to rerun.*run it again"):
        work.migrate()


def test_a_downgrade_that_drops_rows_refuses_unless_told(work: Workspace) -> None:
    """A downgrade dropping a table with rows: refused with the count and the flag (an
    absolute target, also for -2), nothing dropped; with the flag (-x, or the config
    attribute) it goes through; tasks (0001) is guarded like any table."""
    create = 'op.create_table("wf_scratch", sa.Column("id", sa.Integer, primary_key=True))'
    scratch = revision(numbered(1), head(), create, 'op.drop_table("wf_scratch")')
    (work.versions / "scratch.py").write_text(scratch)
    (work.versions / "later.py").write_text(revision(numbered(2), numbered(1), "pass"))
    work.migrate()
    with work.engine.begin() as conn:
        conn.execute(text("INSERT INTO wf_scratch VALUES (1), (2)"))
    for target in (head(), "-2"):
        work.migrate()
        with pytest.raises(CommandError) as exc:
            work.migrate(target, down=True)
        assert str(exc.value) == (
            f"downgrade of revision {numbered(1)} refused: it would drop table wf_scratch and "
            f"its 2 row(s); nothing was dropped, the database is at {numbered(1)}. To drop the "
            f"data, run: alembic -x allow-data-loss=true downgrade {head()} (in Python: "
            'config.attributes["allow_data_loss"] = True)'
        )
    assert work.scalar("SELECT count(*) FROM wf_scratch") == 2
    with work.engine.connect() as conn:
        cfg = work.config(conn)
        cfg.cmd_opts = argparse.Namespace(x=["allow-data-loss=true"])
        command.downgrade(cfg, head())
    assert work.scalar("SELECT to_regclass('wf_scratch')") is None
    with pytest.raises(CommandError, match=r"refused: it would drop .* and its 2 "):
        work.migrate("base", down=True)
    assert work.scalar("SELECT count(*) FROM tasks") == 2
    with work.engine.begin() as conn:
        conn.execute(text("DELETE FROM tasks"))
    work.migrate("base", down=True)  # nothing stored: no refusal
    assert work.scalar("SELECT to_regclass('tasks')") is None


def test_the_cli_refuses_a_downgrade_that_drops_rows_in_one_line(work: Workspace) -> None:
    """`alembic downgrade base` from the command line: exit 1, one FAILED line with the flag."""
    env = {"DATABASE_URL": work.engine.url.render_as_string(False)}
    result = run_alembic("downgrade", "base", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    failed = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and re.search(r"refused: it would drop .* and its 2 ", failed[0])
    assert "run: alembic -x allow-data-loss=true downgrade base" in failed[0]


def test_a_plain_revision_gets_the_next_number_without_a_database(tmp_path: Path) -> None:
    """`alembic revision -m` (no autogenerate) is numbered like the others; it and `alembic
    merge` connect to nothing (the URL here leads nowhere)."""
    versions = tmp_path / "versions"
    versions.mkdir()
    nowhere = Settings(database_url="postgresql://u:p@127.0.0.1:9/x", connect_retry_seconds=0)
    cfg = alembic_config(
        settings=nowhere,
        version_locations=f"{ROOT / 'migrations' / 'versions'}{os.pathsep}{versions}",
    )
    command.revision(cfg, "backfill wf_memo", version_path=str(versions))
    [written] = versions.glob("*.py")
    assert written.name == f"{numbered(1)}_backfill_wf_memo.py"
    assert f'down_revision: str | Sequence[str] | None = "{head()}"' in written.read_text()
    (versions / "other.py").write_text(revision(numbered(2), head(), "pass"))
    command.merge(cfg, "heads", "merge heads", rev_id=numbered(3))  # no database either
    assert (versions / f"{numbered(3)}_merge_heads.py").exists()


def test_autogenerate_on_an_old_database_says_what_to_run(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """autogenerate on a database below head: which revision it is at, and the command."""
    with pg_server.database("old") as name:
        engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        space = Workspace(engine, tmp_path, pg_server)
        with pytest.raises(CommandError) as exc:
            space.autogenerate(project_metadata(), "anything")
        engine.dispose()
    assert str(exc.value) == (
        f"the database is at base, not at the revisions' head {head()}: "
        "run .venv/bin/alembic upgrade head first, then this command again"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (None, "probably another git branch's revision (one .pgdata serves every branch)"),
        ("postgresql://u:p@db.example/x", "it was migrated by a newer release; deploy that"),
    ],
)
def test_a_database_at_an_unknown_revision_is_explained(
    work: Workspace, url: str | None, says: str
) -> None:
    """An unknown revision: on the local default it is another branch's, and the line says
    to downgrade before switching; with a DATABASE_URL, a newer release's."""
    with work.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(CommandError) as exc:
        work.migrate(settings=Settings(database_url=url))
    assert "at revision 0999, which this" in str(exc.value) and says in str(exc.value)
    if url is None:
        assert f"run .venv/bin/alembic -x allow-data-loss=true downgrade {head()} " in str(
            exc.value
        )
