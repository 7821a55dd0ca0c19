"""New tables right the first time, and no data lost silently going up.

Autogenerate runs (in process) on small synthetic histories (tests/synthetic.py): a new
table made with models/base.py's TenantTableBase gets its trigger and passes every schema
check untouched; a SERIAL id is said at generation time, with the fix; a destructive
operation is marked in the file; and an upgrade that would drop or narrow stored data
refuses with the count and the flag.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from migrations.autogen import serial_id
from models.base import TenantTableBase
from models.naming import NAMING_CONVENTION
from tests import checks
from tests.support import ROOT, PgServer, alembic_config, revision
from tests.synthetic import base_metadata, history

# The tests' own models: a registry of their own, so SQLModel.metadata (the project's
# models, which env.py compares) never sees them.
_registry = registry(metadata=sa.MetaData(naming_convention=NAMING_CONVENTION))


class _Own(SQLModel, registry=_registry):
    pass


class WfNote(TenantTableBase, _Own, table=True):
    """A tenant table as a developer writes it with the base."""

    __tablename__ = "wf_notes"
    body: str = Field(max_length=500)


@dataclass
class Synthetic:
    """A database at a synthetic history's head (BASE: items), and its revisions' folder."""

    engine: Engine
    versions: Path
    server: PgServer

    def config(self, metadata: sa.MetaData | None = None, **attributes: Any) -> Config:
        """A fresh alembic config of the history (its revisions read anew; no ruff hooks)."""
        cfg = alembic_config(version_locations=str(self.versions))
        if not attributes.pop("hooks", False):
            cfg.set_section_option("post_write_hooks", "hooks", "")
        if metadata is not None:
            cfg.attributes["target_metadata"] = metadata
        cfg.attributes.update(attributes)
        return cfg

    def autogenerate(self, metadata: sa.MetaData, message: str, hooks: bool = False) -> list[Path]:
        """`alembic revision --autogenerate -m message`: the files it wrote (ruff formats
        them with hooks, as the project's alembic.ini says: two processes per file)."""
        before = set(self.versions.glob("*.py"))
        with self.engine.connect() as conn:
            cfg = self.config(metadata, connection=conn, hooks=hooks)
            command.revision(cfg, message, autogenerate=True, version_path=str(self.versions))
        return sorted(set(self.versions.glob("*.py")) - before)

    def migrate(self, target: str = "head", *, down: bool = False, **attributes: Any) -> None:
        with self.engine.connect() as conn:
            cfg = self.config(connection=conn, **attributes)
            (command.downgrade if down else command.upgrade)(cfg, target)

    def run(self, sql: str) -> Any:
        """Run one statement in its own transaction; its first value, if it returns rows."""
        with self.engine.begin() as conn:
            result = conn.execute(text(sql))
            return result.scalar() if result.returns_rows else None


@pytest.fixture
def synthetic(pg_server: PgServer, tmp_path: Path) -> Iterator[Synthetic]:
    """A synthetic history (BASE) migrated to its head on an empty database."""
    cfg = history(tmp_path)
    versions = Path(str(cfg.get_main_option("version_locations")))
    with pg_server.database("new") as name:
        engine = create_engine(pg_server.url(name), poolclass=pool.NullPool)
        space = Synthetic(engine, versions, pg_server)
        space.migrate()
        yield space
        engine.dispose()


def body(path: Path) -> str:
    """A written revision without its docstring, quotes as single quotes."""
    return path.read_text().split('"""', 2)[2].replace('"', "'")


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_tenant_table_from_the_base_passes_every_check_untouched(
    synthetic: Synthetic,
) -> None:
    """WfNote(TenantTableBase): autogenerate writes the table, its not-blank CHECK, its
    user_id index and its updated_at trigger (dropped again going down); the file is
    ruff-clean as written; squawk (8) and checks 2-7, 11 and 12 pass it unchanged (13, its
    row-level security, is declared apart). The model removed, the trigger goes first."""
    metadata, _ = base_metadata()
    WfNote.__table__.to_metadata(metadata)  # type: ignore[attr-defined]
    [written] = synthetic.autogenerate(metadata, "add wf_notes", hooks=True)
    lint = ruff("check", str(written))
    assert lint.returncode == 0, lint.stdout  # the long CHECK fits the line length
    upgrade, downgrade = body(written).split("def downgrade")
    assert "sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False)" in upgrade
    assert "name=op.f('ck_wf_notes_user_id_not_blank')" in upgrade
    assert "op.create_index(op.f('ix_wf_notes_user_id'), 'wf_notes', ['user_id']" in upgrade
    assert upgrade.index("op.create_table") < upgrade.index(
        "ops.create_updated_at_trigger('wf_notes')"
    )
    assert downgrade.index("ops.drop_updated_at_trigger('wf_notes')") < downgrade.index(
        "op.drop_table('wf_notes')"
    )
    assert "# DESTRUCTIVE: drops table wf_notes and its rows" in body(written)

    synthetic.migrate()
    synthetic.run("INSERT INTO wf_notes (user_id, body) VALUES ('a', 'x')")
    before = synthetic.run("SELECT created_at::text || updated_at::text FROM wf_notes")
    synthetic.run("UPDATE wf_notes SET body = 'y', created_at = now() - interval '1 day'")
    created, updated = synthetic.run(
        "SELECT ARRAY[created_at::text, updated_at::text] FROM wf_notes"
    )
    assert before.startswith(created) and not before.endswith(updated)  # kept, moved
    with pytest.raises(sa.exc.IntegrityError, match="ck_wf_notes_user_id_not_blank"):
        synthetic.run("INSERT INTO wf_notes (user_id, body) VALUES (' \t', 'x')")
    with synthetic.engine.connect() as conn:
        command.check(synthetic.config(metadata, connection=conn))

    cfg = synthetic.config()
    checks.check_models_match(cfg, synthetic.server, metadata)
    checks.check_lint(cfg)
    checks.check_stairway(cfg, synthetic.server, since="0001")  # up, down (no trace), up
    checks.check_data_survives(cfg, synthetic.server)
    checks.check_offline_matches_online(cfg, synthetic.server)
    checks.check_one_transaction_or_rerunnable(cfg)
    checks.check_exceptions_are_reviewed(cfg)

    metadata.remove(metadata.tables["wf_notes"])  # the model removed: its trigger goes first
    [removed] = synthetic.autogenerate(metadata, "no wf_notes")
    upgrade, downgrade = body(removed).split("def downgrade")
    assert upgrade.index("ops.drop_updated_at_trigger('wf_notes')") < upgrade.index(
        "op.drop_table('wf_notes')"
    )
    assert downgrade.index("op.create_table('wf_notes'") < downgrade.index(
        "ops.create_updated_at_trigger('wf_notes')"
    )


def test_a_serial_id_is_told_at_generation_time_with_the_fix(
    synthetic: Synthetic, caplog: pytest.LogCaptureFixture
) -> None:
    """A new table with SQLModel's ordinary integer id (SERIAL): a warning while
    autogenerate runs and a FIX comment above CREATE TABLE, both with the model fix."""
    metadata, _ = base_metadata()
    sa.Table("wf_plain", metadata, sa.Column("id", sa.Integer, primary_key=True))
    with caplog.at_level(logging.WARNING, logger="models"):
        [written] = synthetic.autogenerate(metadata, "plain")
    warning = "wf_plain.id is SERIAL (the lint, check 8, refuses it"
    assert warning in caplog.text and "models.base.TableBase" in caplog.text
    source = written.read_text()
    fix = source.split("def upgrade")[1].split("op.create_table")[0]
    assert "# FIX: wf_plain.id is SERIAL" in fix
    assert "sa.Identity(always=True), primary_key=True" in fix.replace("\n    # ", " ")
    big = sa.Table("b", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True))
    small = sa.Table(
        "s", sa.MetaData(), sa.Column("id", sa.Integer, sa.Identity(), primary_key=True)
    )
    assert str(serial_id(big)).startswith("b.id is BIGSERIAL")
    assert str(serial_id(small)).startswith("s.id is INTEGER")
    assert serial_id(WfNote.__table__) is None  # type: ignore[attr-defined]


def test_an_upgrade_that_drops_or_narrows_stored_values_refuses_unless_told(
    synthetic: Synthetic, caplog: pytest.LogCaptureFixture
) -> None:
    """A dropped column and a shorter varchar: autogenerate marks both DESTRUCTIVE (and
    warns); the upgrade refuses with the count and the flag; with the flag the values are
    cut and the column dropped. A numeric narrowing refuses the same way (values to be
    rounded); values it cannot store refuse even with the flag."""
    synthetic.run("INSERT INTO items (name, note) VALUES ('abcdefgh', 'n'), ('ab', NULL)")
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.String(5), nullable=False),
        sa.CheckConstraint("name <> ''", name="name_not_empty"),
    )
    with caplog.at_level(logging.WARNING, logger="models"):
        [written] = synthetic.autogenerate(metadata, "less")
    upgrade, downgrade = body(written).split("def downgrade")
    assert "# DESTRUCTIVE: narrows column items.name from VARCHAR(50) to VARCHAR(5);" in upgrade
    assert "# DESTRUCTIVE: drops column items.note and its values;" in upgrade
    assert "DESTRUCTIVE" not in downgrade
    assert caplog.text.count("DESTRUCTIVE: the revision") == 2
    with pytest.raises(CommandError) as refused:
        synthetic.migrate()
    assert str(refused.value) == (
        "upgrade of revision 0002 refused: it would narrow column items.name to VARCHAR(5) "
        "and lose its 1 value(s) longer than 5 characters; nothing was changed, the database "
        "is at 0001. To cut or round them, run: alembic -x allow-data-loss=true upgrade head "
        '(in Python: config.attributes["allow_data_loss"] = True)'
    )
    synthetic.run("UPDATE items SET name = 'abc' WHERE name = 'abcdefgh'")
    with pytest.raises(CommandError, match=r"drop column items.note and its 1 non-NULL value"):
        synthetic.migrate()
    synthetic.run("UPDATE items SET name = 'abcdefgh' WHERE name = 'abc'")
    synthetic.migrate(allow_data_loss=True)
    assert synthetic.run("SELECT string_agg(name, ',' ORDER BY id) FROM items") == "abcde,ab"

    amount = 'op.alter_column("items", "amount", type_=sa.Numeric({}), existing_type=None)'
    for n, (rev, upgrade_) in enumerate(
        [
            ("0003", 'op.add_column("items", sa.Column("amount", sa.Numeric(8, 2)))'),
            ("0004", amount.format("8, 1")),
            ("0005", amount.format("3, 1")),
        ]
    ):
        source = revision(rev, f"{2 + n:04d}", upgrade_)
        (synthetic.versions / f"{rev}.py").write_text(source)
    synthetic.migrate("0003")
    synthetic.run("UPDATE items SET amount = CASE name WHEN 'ab' THEN 12.34 ELSE 100 END")
    with pytest.raises(
        CommandError, match=r"lose its 1 value\(s\) with more than 1 dec"
    ) as refused:
        synthetic.migrate("+1")
    assert "allow-data-loss=true upgrade 0004 (in Python" in str(refused.value)  # not "+1"
    with pytest.raises(CommandError) as refused:
        synthetic.migrate(allow_data_loss=True)
    assert str(refused.value) == (
        "upgrade of revision 0005 refused: column items.amount holds 1 value(s) that "
        "NUMERIC(3, 1) cannot store; nothing was changed, the database is at 0004: change "
        "those values first, or keep a wider type; -x allow-data-loss=true cannot help"
    )
    assert synthetic.run("SELECT string_agg(amount::text, ',' ORDER BY id) FROM items") == (
        "100.0,12.3"
    )
