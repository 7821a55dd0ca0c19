"""The CI schema checks (tests/schema_checks.py): each passes on this project's history and
fails, with a readable reason, on the bad revision or model it exists to stop."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import pytest_alembic
import pytest_alembic.tests as builtin_tests
import sqlalchemy as sa
from alembic.config import Config
from pytest_alembic.plugin.error import AlembicTestFailure
from sqlalchemy import MetaData, create_engine, pool
from sqlalchemy.sql.elements import conv
from sqlmodel import SQLModel

import models.task  # noqa: F401  (registers the tasks table in SQLModel.metadata)
from models import NAMING_CONVENTION
from tests import schema_checks as checks
from tests.schema_checks import SchemaCheckError
from tests.snapshot import main as snapshot_main
from tests.support import ROOT, PgServer, alembic_config, head, revision, with_revisions

pytestmark = pytest.mark.schema


@pytest.fixture
def cfg() -> Config:
    """The project's own alembic configuration."""
    return alembic_config()


# 1. One head ----------------------------------------------------------------------


def test_history_has_one_head(cfg: Config) -> None:
    """The project's history has exactly one head: the last revision from base."""
    assert checks.check_single_head(cfg) == checks.history(cfg)[-1].revision == head()


def test_two_heads_are_caught(tmp_path: Path) -> None:
    """Two revisions on the same parent (an unmerged branch) fail with both ids and the fix."""
    cfg = with_revisions(
        tmp_path,
        a9001_left=revision("9001", head(), "pass"),
        a9002_right=revision("9002", head(), "pass"),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_single_head(cfg)
    message = str(failed.value)
    assert message.startswith("The revision history has 2 heads")
    assert "9001" in message and "9002" in message
    assert "alembic merge -m 'merge heads' 9001 9002" in message


# 2. Models match migrations -------------------------------------------------------


def models_copy() -> tuple[MetaData, sa.Table]:
    """A private copy of the models' metadata, to change without touching the real one."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    return metadata, SQLModel.metadata.tables["tasks"].to_metadata(metadata)


def test_models_match_the_migrations(cfg: Config, pg_server: PgServer) -> None:
    """After upgrade head, Alembic's comparison and the CHECK/PK names find no difference."""
    checks.check_models_match(cfg, pg_server)


def test_a_drifted_model_is_caught(cfg: Config, pg_server: PgServer) -> None:
    """A changed length and an extra column are named in words, with the fix autogenerate writes."""
    metadata, tasks = models_copy()
    tasks.c.title.type = sa.String(150)
    tasks.append_column(sa.Column("snoozed_until", sa.Date(), nullable=True))
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_models_match(cfg, pg_server, metadata)
    message = str(failed.value)
    assert message.startswith("The models and the migrations disagree (2 differences)")
    assert (
        "column tasks.title: the migrations make it VARCHAR(200), the models say VARCHAR(150)"
        in message
    )
    assert (
        "column tasks.snoozed_until (DATE, NULL) is in the models, but no revision adds it"
        in message
    )
    assert "op.add_column('tasks', sa.Column('snoozed_until', sa.Date(), nullable=True))" in message


def test_a_renamed_or_missing_check_constraint_is_caught(cfg: Config, pg_server: PgServer) -> None:
    """CHECK constraints (which autogenerate ignores) are compared by name, both ways."""
    metadata, tasks = models_copy()
    (title_check,) = [c for c in tasks.constraints if c.name == "ck_tasks_title_not_blank"]
    title_check.name = conv("ck_tasks_title_not_empty")
    (user_check,) = [c for c in tasks.constraints if c.name == "ck_tasks_user_id_not_blank"]
    tasks.constraints.remove(user_check)
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_models_match(cfg, pg_server, metadata)
    message = str(failed.value)
    assert "(3 differences)" in message.splitlines()[0]
    assert "CHECK constraint ck_tasks_title_not_empty on tasks is in the models" in message
    assert "CHECK constraint ck_tasks_title_not_blank on tasks is in the database" in message
    assert "CHECK constraint ck_tasks_user_id_not_blank on tasks is in the database" in message


# 3. Stairway ----------------------------------------------------------------------


def test_stairway(cfg: Config, pg_server: PgServer) -> None:
    """Every revision, one at a time from base: upgrade, downgrade, upgrade again."""
    checks.check_stairway(cfg, pg_server)


def test_a_downgrade_that_forgets_its_table_fails_the_stairway(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A downgrade that leaves its table behind makes the second upgrade fail, named."""
    cfg = with_revisions(
        tmp_path,
        a9001_notes=revision(
            "9001",
            head(),
            'op.create_table("notes", sa.Column("id", sa.BigInteger(), primary_key=True))',
        ),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_stairway(cfg, pg_server)
    first = str(failed.value).splitlines()[0]
    assert first.startswith("`alembic upgrade 9001` failed (stairway at revision 9001")
    assert "upgrading again after its downgrade" in first
    assert 'relation "notes" already exists' in first


# 4. Downgrade leaves no trace -------------------------------------------------------


def test_downgrade_to_base_leaves_no_trace(cfg: Config, pg_server: PgServer) -> None:
    """upgrade head, downgrade base: pg_dump equals that of a never-migrated database."""
    checks.check_downgrade_leaves_no_trace(cfg, pg_server)


def test_leftovers_of_a_downgrade_are_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A type, function and index that downgrade() forgets show up in the pg_dump diff."""
    cfg = with_revisions(
        tmp_path,
        a9001_leftovers=revision(
            "9001",
            head(),
            """
            op.execute("CREATE TYPE mood AS ENUM ('calm', 'busy')")
            op.execute("CREATE FUNCTION leftover() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            op.create_index("ix_tasks_title", "tasks", ["title"])
            """,
            'op.drop_index("ix_tasks_title", table_name="tasks")  # and nothing else',
        ),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_downgrade_leaves_no_trace(cfg, pg_server)
    message = str(failed.value)
    assert message.startswith("Downgrading to base leaves a trace")
    assert "+CREATE TYPE public.mood AS ENUM (" in message
    assert "+CREATE FUNCTION public.leftover() RETURNS integer" in message
    assert "ix_tasks_title" not in message


# 5. Data survives -----------------------------------------------------------------


def test_rows_from_every_revision_survive_to_head(cfg: Config, pg_server: PgServer) -> None:
    """A row inserted at each revision is still there, unchanged, after upgrade head."""
    checks.check_data_survives(cfg, pg_server)


def test_a_revision_that_loses_data_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """Re-creating a column (a "type change" by drop and add) loses its values: named per row."""
    cfg = with_revisions(
        tmp_path,
        a9001_recreate=revision(
            "9001",
            head(),
            """
            op.drop_column("tasks", "description")
            op.add_column("tasks", sa.Column("description", sa.String(1000)))
            """,
        ),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_data_survives(cfg, pg_server)
    message = str(failed.value)
    assert message.startswith("Data does not survive the upgrade to head")
    first = checks.history(cfg)[0].revision
    assert re.search(
        rf"tasks row \(id=1\) inserted at revision {first}: description was '{first}-1', "
        "at head it is None",
        message,
    )


def test_an_upgrade_that_only_works_on_empty_tables_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A NOT NULL column without default passes on an empty table, fails with rows in it."""
    cfg = with_revisions(
        tmp_path,
        a9001_required=revision(
            "9001",
            head(),
            'op.add_column("tasks", sa.Column("rank", sa.BigInteger(), nullable=False))',
        ),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_data_survives(cfg, pg_server)
    first = str(failed.value).splitlines()[0]
    assert first.startswith("`alembic upgrade 9001` failed with rows from the earlier revisions")
    assert 'column "rank" of relation "tasks" contains null values' in first


# 6. Offline equals online ---------------------------------------------------------


def test_offline_sql_builds_the_same_schema(cfg: Config, pg_server: PgServer) -> None:
    """`alembic upgrade head --sql` applied by psql gives the online upgrade's schema."""
    checks.check_offline_matches_online(cfg, pg_server)


def test_a_revision_that_acts_only_online_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A revision that skips work under --sql shows the missing DDL in the diff."""
    cfg = with_revisions(
        tmp_path,
        a9001_online_only=revision(
            "9001",
            head(),
            """
            if not op.get_context().as_sql:
                op.create_index("ix_tasks_title", "tasks", ["title"])
            """,
            'op.execute("DROP INDEX IF EXISTS ix_tasks_title")',
        ),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_offline_matches_online(cfg, pg_server)
    message = str(failed.value)
    assert message.startswith("Offline and online upgrades build different schemas")
    assert "-CREATE INDEX ix_tasks_title ON public.tasks USING btree (title);" in message


# 7. Schema snapshot ---------------------------------------------------------------


def test_committed_snapshot_is_current(cfg: Config, pg_server: PgServer) -> None:
    """migrations/schema.sql is exactly the DDL that `alembic upgrade head` builds today."""
    checks.check_snapshot(cfg, pg_server)


def test_a_stale_snapshot_is_caught_with_the_diff(
    cfg: Config, pg_server: PgServer, tmp_path: Path
) -> None:
    """A snapshot that no longer matches fails with the command to run and the diff."""
    stale = tmp_path / "schema.sql"
    committed = checks.SNAPSHOT.read_text()
    stale.write_text(committed.replace("title character varying(200)", "title text"))
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_snapshot(cfg, pg_server, stale)
    message = str(failed.value)
    assert "is stale" in message.splitlines()[0]
    assert "Run `python -m tests.snapshot` and commit the file." in message.splitlines()[0]
    assert "-    title text NOT NULL," in message
    assert "+    title character varying(200) NOT NULL," in message


def test_snapshot_command_regenerates_and_checks(
    pg_server: PgServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m tests.snapshot` writes the committed file; --check exits 1 when stale."""
    monkeypatch.setenv("TEST_DATABASE_URL", pg_server.dsn())
    monkeypatch.delenv("DATABASE_URL", raising=False)
    out = tmp_path / "schema.sql"
    assert snapshot_main(["--output", str(out)]) == 0
    assert out.read_text() == checks.SNAPSHOT.read_text()
    out.write_text("-- stale\n")
    assert snapshot_main(["--check", "--output", str(out)]) == 1
    assert "is stale" in capsys.readouterr().err


# 8. Migration lint ----------------------------------------------------------------


def test_every_revision_passes_squawk(cfg: Config) -> None:
    """squawk finds nothing dangerous in any revision's own offline SQL."""
    checks.check_lint(cfg)


def test_a_dangerous_revision_is_caught_by_squawk(tmp_path: Path) -> None:
    """A blocking index, a required column and a rewriting type change are each reported."""
    cfg = with_revisions(
        tmp_path,
        a9001_dangerous=revision(
            "9001",
            head(),
            """
            op.create_index("ix_tasks_title", "tasks", ["title"])
            op.add_column("tasks", sa.Column("rank", sa.BigInteger(), nullable=False))
            op.alter_column(
                "tasks", "description", type_=sa.String(500), existing_type=sa.String(1000)
            )
            """,
        ),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_lint(cfg)
    message = str(failed.value)
    assert message.startswith("squawk found 3 operation(s) that lock or rewrite a live table")
    assert "revision 9001 (a9001_dangerous.py), SQL line" in message
    for rule in ("require-concurrent-index-creation", "adding-required-field"):
        assert f": {rule}: " in message
    assert ": changing-column-type: " in message
    assert "CREATE INDEX ix_tasks_title ON tasks (title);" in message
    reported = set(re.findall(r"revision (\w+) \(", message))
    assert reported == {"9001"}


def test_every_switched_off_squawk_rule_has_a_reason() -> None:
    """.squawk.toml is the one place rules are switched off, each with a comment saying why."""
    config = (ROOT / ".squawk.toml").read_text()
    excluded = tomllib.loads(config).get("excluded_rules", [])
    for rule in excluded:
        assert re.search(rf"^\s*# {re.escape(rule)}: \S", config, re.M), rule
    for path in (ROOT / "migrations").rglob("*.py"):
        assert "squawk-ignore" not in path.read_text(), path


# 9. Revisions stand alone ----------------------------------------------------------


def test_revisions_import_no_application_code(cfg: Config) -> None:
    """No revision imports models/, sqlmodel, tests/ or bench/, directly or indirectly."""
    checks.check_revisions_stand_alone(cfg)


def test_a_revision_importing_the_models_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct import is found in the source; an import through a helper when loading alone."""
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "limits_9002.py").write_text("from models.task import TITLE_MAX as LIMIT\n")
    monkeypatch.syspath_prepend(str(helpers))
    cfg = with_revisions(
        tmp_path,
        a9001_direct=revision("9001", head(), "pass", imports="from models.task import TITLE_MAX"),
        a9002_indirect=revision("9002", "9001", "pass", imports="import limits_9002"),
    )
    with pytest.raises(SchemaCheckError) as failed:
        checks.check_revisions_stand_alone(cfg)
    message = str(failed.value)
    assert message.startswith("Revisions depend on application code")
    assert "a9001_direct.py:5 imports models.task" in message
    assert "a9002_indirect.py cannot be loaded without application code" in message
    assert "it needs models" in message
    assert "0001_" not in message


# pytest-alembic ---------------------------------------------------------------------

BUILTIN = [
    "test_single_head_revision",
    "test_upgrade",
    "test_model_definitions_match_ddl",
    "test_up_down_consistency",
]


def run_builtin(name: str, cfg: Config, server: PgServer) -> None:
    """Run one of pytest-alembic's built-in tests with a runner on a fresh database."""
    with server.database("pytest_alembic") as dbname:
        engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
        try:
            config = pytest_alembic.Config.from_raw_config(cfg)
            with pytest_alembic.runner(config=config, engine=engine) as alembic_runner:
                getattr(builtin_tests, name)(alembic_runner)
        finally:
            engine.dispose()


@pytest.mark.parametrize("name", BUILTIN)
def test_pytest_alembic_builtin_tests_pass(name: str, cfg: Config, pg_server: PgServer) -> None:
    """pytest-alembic's built-in tests run against this project's env.py unchanged, and pass."""
    run_builtin(name, cfg, pg_server)


def test_pytest_alembic_builtin_tests_can_fail(tmp_path: Path, pg_server: PgServer) -> None:
    """The same runner sees a second head (so the built-ins really run on our history)."""
    cfg = with_revisions(
        tmp_path,
        a9001_left=revision("9001", head(), "pass"),
        a9002_right=revision("9002", head(), "pass"),
    )
    with pytest.raises(AlembicTestFailure, match="Expected 1 head revision, found 2"):
        run_builtin("test_single_head_revision", cfg, pg_server)
