"""Each schema check (tests/checks/) fails, with a readable reason that names the revision
and the way out, on the bad revision or model it exists to stop; and passes the safe
forms. Every proof runs on a small synthetic history of its own (tests/synthetic.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_alembic
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from pytest_alembic.plugin.error import AlembicTestFailure
from sqlalchemy.sql.elements import conv

import models.naming
from tests import checks
from tests.checks.common import bound
from tests.support import PgServer, revision
from tests.synthetic import base_metadata, history
from tests.test_schema_checks import run_builtin

pytestmark = pytest.mark.schema


def fails(check: object, *args: object) -> str:
    """The message of the SchemaCheckError that check(*args) raises."""
    with pytest.raises(checks.SchemaCheckError) as failed:
        check(*args)  # type: ignore[operator]
    return str(failed.value)


# 1. One head ----------------------------------------------------------------------


def test_two_heads_are_caught(tmp_path: Path) -> None:
    """Two revisions on the same parent (an unmerged branch) fail with both ids and the fix."""
    cfg = history(
        tmp_path, a_left=revision("0002", "0001", "pass"), b_right=revision("0003", "0001", "pass")
    )
    message = fails(checks.check_single_head, cfg)
    assert message.startswith("The revision history has 2 heads")
    assert "alembic merge -m 'merge heads' 0002 0003" in message


def test_pytest_alembic_builtin_tests_can_fail(tmp_path: Path, pg_server: PgServer) -> None:
    """pytest-alembic's runner sees a second head too (so its built-ins really run on ours)."""
    cfg = history(
        tmp_path, a_left=revision("0002", "0001", "pass"), b_right=revision("0003", "0001", "pass")
    )
    with pytest.raises(AlembicTestFailure, match="Expected 1 head revision, found 2"):
        run_builtin(["test_single_head_revision"], cfg, pg_server)
    assert pytest_alembic is not None


# 2. Models match migrations -------------------------------------------------------


def test_a_drifted_model_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A changed length and an extra column are named in words, with the fix autogenerate writes."""
    metadata, items = base_metadata()
    items.c.name.type = sa.String(40)
    items.append_column(sa.Column("due", sa.Date(), nullable=True))
    message = fails(checks.check_models_match, history(tmp_path), pg_server, metadata)
    assert message.startswith("The models and the migrations disagree (2 differences)")
    assert (
        "column items.name: the migrations make it VARCHAR(50), the models say VARCHAR(40)"
        in message
    )
    assert "column items.due (DATE, NULL) is in the models, but no revision adds it" in message
    assert "op.add_column('items', sa.Column('due', sa.Date(), nullable=True))" in message


def test_the_synthetic_models_match(tmp_path: Path, pg_server: PgServer) -> None:
    """The proofs' own models match their base revision (so each difference is the test's)."""
    checks.check_models_match(history(tmp_path), pg_server, base_metadata()[0])


def test_a_renamed_missing_or_changed_check_constraint_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """CHECKs (which autogenerate ignores) are compared by name and by expression."""
    metadata, items = base_metadata()
    (check,) = [c for c in items.constraints if isinstance(c, sa.CheckConstraint)]
    check.name = conv("ck_items_name_filled")
    items.append_constraint(sa.CheckConstraint("length(note) < 10", name="note_short"))
    message = fails(checks.check_models_match, history(tmp_path / "a"), pg_server, metadata)
    assert "CHECK constraint ck_items_name_filled on items is in the models" in message
    assert "CHECK constraint ck_items_name_not_empty on items is in the database" in message
    assert "CHECK constraint ck_items_note_short on items is in the models" in message
    metadata, items = base_metadata()
    (check,) = [c for c in items.constraints if isinstance(c, sa.CheckConstraint)]
    check.sqltext = sa.text("name <> 'x'")
    message = fails(checks.check_models_match, history(tmp_path / "b"), pg_server, metadata)
    assert "CHECK constraint ck_items_name_not_empty on items: the migrations say " in message
    assert "<> ''::text)), the models say CHECK (((name)::text <> 'x'::text))" in message


def test_an_enum_value_missing_from_the_migrations_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A value added to a native enum in the models only (invisible to autogenerate) fails."""
    cfg = history(
        tmp_path,
        a0002_mood=revision(
            "0002",
            "0001",
            """
            mood = sa.Enum("calm", "busy", name="mood")
            mood.create(op.get_bind())
            op.add_column("items", sa.Column("mood", mood, nullable=True))
            """,
            'op.drop_column("items", "mood")\nop.execute("DROP TYPE mood")',
        ),
    )
    metadata, items = base_metadata()
    items.append_column(sa.Column("mood", sa.Enum("calm", "busy", "away", name="mood")))
    message = fails(checks.check_models_match, cfg, pg_server, metadata)
    assert "enum type mood: the migrations give it ['calm', 'busy'], the models say " in message
    assert "ALTER TYPE mood ADD VALUE" in message


def test_alembic_check_speaks_sentences(tmp_path: Path, pg_server: PgServer) -> None:
    """`alembic check` reports differences in check 2's words, not Alembic's raw repr."""
    cfg = history(tmp_path)
    with pg_server.database() as dbname, bound(cfg, pg_server, dbname):
        command.upgrade(cfg, "head")
        with pytest.raises(CommandError) as failed:
            command.check(cfg)  # the project's models (tasks) against the synthetic items
    message = str(failed.value)
    assert message.startswith("The models and the migrations disagree")
    assert "  - table items is in the database, not in the models" in message
    assert "New upgrade operations detected" not in message


# 3. Stairway and 4. no trace ---------------------------------------------------------

NOTES = 'op.create_table("notes", sa.Column("id", sa.BigInteger(), primary_key=True))'
ENUM_CHECKFIRST = """
priority = sa.Enum("low", "high", name="priority")
priority.create(op.get_bind(), checkfirst=True)
op.add_column("items", sa.Column("priority", priority, nullable=True))
"""


def test_a_downgrade_that_forgets_its_table_fails_the_stairway(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A downgrade that leaves its table behind is named, with the leftover DDL."""
    cfg = history(tmp_path, a0002_notes=revision("0002", "0001", NOTES))
    message = fails(checks.check_stairway, cfg, pg_server)
    assert message.startswith("The downgrade of revision 0002 (a0002_notes.py) leaves a trace")
    assert "+CREATE TABLE public.notes (" in message


def test_a_type_hidden_by_checkfirst_is_named(tmp_path: Path, pg_server: PgServer) -> None:
    """A type nobody drops, re-created silently by checkfirst=True, still fails both checks."""
    cfg = history(
        tmp_path,
        a0002_priority=revision(
            "0002", "0001", ENUM_CHECKFIRST, 'op.drop_column("items", "priority")'
        ),
        a0003_more=revision(
            "0003",
            "0002",
            'op.add_column("items", sa.Column("x", sa.Text()))',
            'op.drop_column("items", "x")',
        ),
    )
    for check in (checks.check_stairway, checks.check_downgrade_leaves_no_trace):
        message = fails(check, cfg, pg_server)
        assert message.startswith(
            "The downgrade of revision 0002 (a0002_priority.py) leaves a trace"
        )
        assert "+CREATE TYPE public.priority AS ENUM (" in message


def test_since_checks_the_revisions_after_it_and_only_those(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """since=: a leftover after that revision still fails both checks; one at or below it
    is not checked again (the project's own revisions have a test of their own)."""
    notes = revision("0002", "0001", NOTES)
    more = revision(
        "0003",
        "0002",
        'op.add_column("items", sa.Column("x", sa.Text()))',
        'op.drop_column("items", "x")',
    )
    priority = revision("0004", "0003", ENUM_CHECKFIRST, 'op.drop_column("items", "priority")')
    cfg = history(tmp_path, a0002_notes=notes, a0003_more=more, a0004_priority=priority)
    for check in (checks.check_stairway, checks.check_downgrade_leaves_no_trace):
        message = fails(lambda c, s, check=check: check(c, s, since="0003"), cfg, pg_server)
        assert message.startswith("The downgrade of revision 0004 (a0004_priority.py) leaves")
        assert "notes" not in message
    cut = history(tmp_path / "cut", a0002_notes=notes, a0003_more=more)
    checks.check_stairway(cut, pg_server, since="0002")
    checks.check_downgrade_leaves_no_trace(cut, pg_server, since="0002")


def test_leftovers_of_a_downgrade_are_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A type and a function that downgrade() forgets are named with their revision."""
    cfg = history(
        tmp_path,
        a0002_leftovers=revision(
            "0002",
            "0001",
            """
            op.execute("CREATE TYPE mood AS ENUM ('calm', 'busy')")
            op.execute("CREATE FUNCTION leftover() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            op.create_index("ix_items_note", "items", ["note"])
            """,
            'op.drop_index("ix_items_note", table_name="items")  # and nothing else',
        ),
    )
    message = fails(checks.check_downgrade_leaves_no_trace, cfg, pg_server)
    assert message.startswith("The downgrade of revision 0002 (a0002_leftovers.py) leaves a trace")
    assert "+CREATE TYPE public.mood AS ENUM (" in message
    assert "+CREATE FUNCTION public.leftover() RETURNS integer" in message
    assert "ix_items_note" not in message


def test_a_waived_revision_passes_the_stairway(tmp_path: Path, pg_server: PgServer) -> None:
    """schema_check_exceptions {"stairway": reason} waives the stairway for that revision."""
    waiver = 'schema_check_exceptions = {"stairway": "test: notes stays on purpose"}'
    cfg = history(tmp_path, a0002_notes=revision("0002", "0001", NOTES, module=waiver))
    checks.check_stairway(cfg, pg_server)
    with pytest.raises(checks.SchemaCheckError):
        checks.check_downgrade_leaves_no_trace(cfg, pg_server)


# 5. Data survives -----------------------------------------------------------------


def data_history(tmp_path: Path, upgrade: str, downgrade: str = "pass", module: str = "") -> Config:
    return history(
        tmp_path, a0002_change=revision("0002", "0001", upgrade, downgrade, module=module)
    )


def test_a_column_dropped_and_added_again_loses_data(tmp_path: Path, pg_server: PgServer) -> None:
    """Re-creating a column (a "type change" by drop and add) is named with the way out."""
    cfg = data_history(
        tmp_path,
        'op.drop_column("items", "note")\nop.add_column("items", sa.Column("note", sa.Text()))',
    )
    message = fails(checks.check_data_survives, cfg, pg_server)
    assert message.startswith("Data does not survive revision 0002 (a0002_change.py)")
    assert "column items.note was dropped and added again: its values are gone" in message
    assert '{"data-survives": "<why>"}' in message


def test_a_rename_by_drop_and_add_is_told_apart_from_a_real_rename(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """RENAME COLUMN keeps the rows (followed by attnum); drop + add is called a lossy rename."""
    lossless = data_history(
        tmp_path / "a", 'op.alter_column("items", "note", new_column_name="remark")'
    )
    checks.check_data_survives(lossless, pg_server)
    lossy = data_history(
        tmp_path / "b",
        'op.drop_column("items", "note")\nop.add_column("items", sa.Column("remark", sa.Text()))',
    )
    message = fails(checks.check_data_survives, lossy, pg_server)
    assert (
        "column items.note is gone and remark appeared: looks like a rename written as "
        "drop + add: use expand/contract" in message
    )


def test_a_contract_step_passes_when_waived(tmp_path: Path, pg_server: PgServer) -> None:
    """Dropping a column on purpose passes only with a reviewed data-survives exception."""
    drop = 'op.drop_column("items", "note")'
    message = fails(checks.check_data_survives, data_history(tmp_path / "a", drop), pg_server)
    assert "column items.note was dropped, with its values" in message
    waiver = 'schema_check_exceptions = {"data-survives": "contract step: note moved in 0002"}'
    checks.check_data_survives(data_history(tmp_path / "b", drop, module=waiver), pg_server)


def test_an_upgrade_that_only_works_on_empty_tables_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A NOT NULL column without default passes on an empty table, fails with rows in it."""
    cfg = data_history(
        tmp_path, 'op.add_column("items", sa.Column("rank", sa.BigInteger(), nullable=False))'
    )
    first = fails(checks.check_data_survives, cfg, pg_server).splitlines()[0]
    assert first.startswith("`alembic upgrade 0002` failed with rows from the earlier revisions")
    assert 'column "rank" of relation "items" contains null values' in first


def test_set_not_null_on_a_column_holding_nulls_is_caught(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """Sample rows hold NULL in nullable columns, so SET NOT NULL without a backfill fails."""
    cfg = data_history(tmp_path, 'op.alter_column("items", "note", nullable=False)')
    first = fails(checks.check_data_survives, cfg, pg_server).splitlines()[0]
    assert 'column "note" of relation "items" contains null values' in first


def test_sample_values_follow_the_constraints(tmp_path: Path, pg_server: PgServer) -> None:
    """An IN-list CHECK, a native enum and a NOT VALID CHECK get rows the database accepts."""
    cfg = data_history(
        tmp_path,
        """
        op.add_column("items", sa.Column("priority", sa.Enum("low", "medium", "high",
            name="priority", native_enum=False, create_constraint=True),
            server_default="medium", nullable=False))
        mood = sa.Enum("calm", "busy", name="mood")
        mood.create(op.get_bind())
        op.add_column("items", sa.Column("mood", mood, nullable=True))
        op.add_column("items", sa.Column("size", sa.Integer(), nullable=True))
        op.create_check_constraint("size_positive", "items", "size > 0", postgresql_not_valid=True)
        """,
        'op.drop_column("items", "mood")\nop.execute("DROP TYPE mood")',
    )
    checks.check_data_survives(cfg, pg_server)


def test_sample_rows_are_given_next_to_the_revision(tmp_path: Path, pg_server: PgServer) -> None:
    """A rule no generated value meets fails, naming the file; rows given there pass."""
    rule = """
    op.add_column("items", sa.Column("code", sa.Text(), server_default="AAA", nullable=False))
    op.create_check_constraint("code_format", "items", "code ~ '^[A-Z]{3}$'")
    """
    message = fails(checks.check_data_survives, data_history(tmp_path / "a", rule), pg_server)
    assert message.startswith("A sample row cannot be inserted into items after revision 0002")
    assert "in a0002_change.py: schema_check_sample_rows = {'items': [{...}]}" in message
    rows = 'schema_check_sample_rows = {"items": [{"name": "n", "code": "XYZ"}]}'
    checks.check_data_survives(data_history(tmp_path / "b", rule, module=rows), pg_server)


# 6. Offline equals online ---------------------------------------------------------


def test_a_revision_that_acts_only_online_is_caught(tmp_path: Path, pg_server: PgServer) -> None:
    """A revision that skips work under --sql shows the missing DDL; waived, it passes."""
    cfg = data_history(
        tmp_path,
        """
        if not op.get_context().as_sql:
            op.create_index("ix_items_note", "items", ["note"])
        """,
        'op.execute("DROP INDEX IF EXISTS ix_items_note")',
    )
    message = fails(checks.check_offline_matches_online, cfg, pg_server)
    assert message.startswith("Offline and online upgrades build different schemas")
    assert "-CREATE INDEX ix_items_note ON public.items USING btree (note);" in message
    waiver = 'schema_check_exceptions = {"offline-matches-online": "test: online only"}'
    source = Path(checks.history(cfg)[-1].path)
    source.write_text(
        source.read_text().replace("depends_on = None\n", f"depends_on = None\n{waiver}\n")
    )
    checks.check_offline_matches_online(
        history(tmp_path / "waived", a0002_change=source.read_text()), pg_server
    )


# 7. Schema snapshot ---------------------------------------------------------------


def test_a_stale_snapshot_is_caught_with_the_diff(tmp_path: Path, pg_server: PgServer) -> None:
    """A snapshot that no longer matches fails with the command to run and the diff."""
    cfg = history(tmp_path)
    stale = tmp_path / "schema.sql"
    stale.write_text(
        checks.render_snapshot(cfg, pg_server).replace("character varying(50)", "text")
    )
    message = fails(checks.check_snapshot, cfg, pg_server, stale)
    assert "is stale" in message.splitlines()[0]
    assert "Run `python -m tests.snapshot` and commit the file." in message.splitlines()[0]
    assert "-    name text NOT NULL," in message
    assert "+    name character varying(50) NOT NULL," in message


# 8. Migration lint ----------------------------------------------------------------

DANGEROUS = """
op.create_index("ix_items_note", "items", ["note"])
op.add_column("items", sa.Column("rank", sa.BigInteger(), nullable=False))
op.alter_column("items", "name", type_=sa.String(40), existing_type=sa.String(50))
"""


def test_a_dangerous_revision_is_caught_by_squawk(tmp_path: Path) -> None:
    """A blocking index, a required column and a rewriting type change are each reported."""
    message = fails(checks.check_lint, data_history(tmp_path, DANGEROUS))
    assert message.startswith("squawk found 3 operation(s) that lock or rewrite a live table")
    assert "revision 0002 (a0002_change.py), SQL line" in message
    for rule in (
        "require-concurrent-index-creation",
        "adding-required-field",
        "changing-column-type",
    ):
        assert f": {rule}: " in message
    assert "CREATE INDEX ix_items_note ON items (note);" in message
    assert "revision 0001" not in message


def test_a_reviewed_lint_exception_covers_its_revision_only(tmp_path: Path) -> None:
    """A widening waived with "lint:changing-column-type" passes; the same SQL elsewhere fails."""
    widen = 'op.alter_column("items", "name", type_=sa.String(80), existing_type=sa.String(50))'
    waiver = (
        'schema_check_exceptions = {"lint:changing-column-type": "varchar widening: no rewrite"}'
    )
    cfg = history(
        tmp_path,
        a0002_widen=revision("0002", "0001", widen, module=waiver),
        a0003_again=revision("0003", "0002", widen.replace("80", "90").replace("50", "80")),
    )
    message = fails(checks.check_lint, cfg)
    assert message.startswith("squawk found 1 operation(s)")
    assert "revision 0003 (a0003_again.py)" in message and "0002" not in message.split("\n", 1)[1]


# 9. Revisions stand alone ----------------------------------------------------------


def test_a_revision_importing_the_models_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct import is found in the source; an import through a helper when loading alone."""
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "limits_9002.py").write_text("from models.task import TITLE_MAX as LIMIT\n")
    monkeypatch.syspath_prepend(str(helpers))
    cfg = history(
        tmp_path,
        a0002_direct=revision("0002", "0001", "pass", imports="from models.task import TITLE_MAX"),
        a0003_indirect=revision("0003", "0002", "pass", imports="import limits_9002"),
    )
    message = fails(checks.check_revisions_stand_alone, cfg)
    assert message.startswith("Revisions depend on application code")
    assert "a0002_direct.py:5 imports models.task" in message
    assert "a0003_indirect.py cannot be loaded without application code" in message
    assert "0001_base" not in message


# 10. The command line builds what the checks build --------------------------------

PRIORITY = """
op.add_column("items", sa.Column("priority", sa.Enum("low", "medium", "high",
    name="priority", native_enum=False, create_constraint=True),
    server_default="medium", nullable=False))
"""


def test_checks_with_another_naming_convention_are_caught(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enum case of issue 9: in-process runs given another convention than the command
    line (as the old env.py did) name the enum's CHECK differently, and the check says so."""
    cfg = data_history(tmp_path, PRIORITY, 'op.drop_column("items", "priority")')
    checks.check_cli_matches_checks(cfg, pg_server)
    monkeypatch.setattr(models.naming, "NAMING_CONVENTION", {"ix": "ix_%(column_0_label)s"})
    message = fails(checks.check_cli_matches_checks, cfg, pg_server)
    assert message.startswith("The command line builds another schema than the checks")
    assert "-    CONSTRAINT priority CHECK" in message
    assert "+    CONSTRAINT ck_items_priority CHECK" in message


# 11. One transaction or rerunnable ---------------------------------------------------


def test_a_revision_mixing_ddl_with_a_concurrent_build_is_refused(tmp_path: Path) -> None:
    """Ordinary DDL plus a CONCURRENTLY build in one revision is named, with the way out."""
    cfg = data_history(
        tmp_path,
        """
        op.add_column("items", sa.Column("rank", sa.BigInteger()))
        create_index_concurrently("ix_items_rank", "items", "rank")
        """,
        'drop_index_concurrently("ix_items_rank")\nop.drop_column("items", "rank")',
        module="from migrations.ops import create_index_concurrently, drop_index_concurrently",
    )
    message = fails(checks.check_one_transaction_or_rerunnable, cfg)
    assert message.startswith("2 revision step(s) can be left half-applied")
    assert (
        "revision 0002 (a0002_change.py) upgrade mixes DDL in its transaction "
        "(ALTER TABLE items ADD COLUMN rank BIGINT" in message
    )
    assert (
        "Split it: the ordinary DDL in one revision, the CONCURRENTLY build in the next" in message
    )


def test_an_autocommit_step_that_cannot_be_rerun_is_refused(tmp_path: Path) -> None:
    """A CONCURRENTLY build without IF NOT EXISTS fails on a retry: refused, named."""
    cfg = data_history(
        tmp_path,
        """
        with op.get_context().autocommit_block():
            op.execute("CREATE INDEX CONCURRENTLY ix_items_note ON items (note)")
        """,
        """
        with op.get_context().autocommit_block():
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_items_note")
        """,
    )
    message = fails(checks.check_one_transaction_or_rerunnable, cfg)
    assert (
        "revision 0002 (a0002_change.py) upgrade runs CREATE INDEX CONCURRENTLY ix_items_note"
        in message
    )
    assert "without IF [NOT] EXISTS" in message


def test_rerunnable_autocommit_steps_pass(tmp_path: Path) -> None:
    """A VALIDATE and a batched backfill in autocommit blocks, nothing else: accepted."""
    cfg = data_history(
        tmp_path,
        """
        with op.get_context().autocommit_block():
            op.execute("ALTER TABLE items VALIDATE CONSTRAINT ck_items_name_not_empty")
            op.execute("UPDATE items SET note = name WHERE note IS NULL AND id <= 1000")
        """,
    )
    checks.check_one_transaction_or_rerunnable(cfg)


# 12. Reviewed exceptions -------------------------------------------------------------


def test_an_exception_without_reason_or_with_an_unknown_key_fails(tmp_path: Path) -> None:
    """An empty reason, an unknown check id and an unknown squawk rule are each named."""
    waiver = (
        'schema_check_exceptions = {"data-survives": " ", "speed": "x", "lint:no-such-rule": "x"}'
    )
    cfg = data_history(tmp_path, "pass", module=waiver)
    message = fails(checks.check_exceptions_are_reviewed, cfg)
    assert message.startswith("schema_check_exceptions has 3 problem(s)")
    assert "a0002_change.py): 'data-survives' has no reason" in message
    assert "a0002_change.py): 'speed' is not a check id" in message
    assert "revision 0002: 'lint:no-such-rule' is not a squawk rule" in message
    checks.check_exceptions_are_reviewed(history(tmp_path / "ok"))  # nothing declared: passes
