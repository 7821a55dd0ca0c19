"""The CI schema checks (tests/checks/) pass on this project's own history: each check
once, so a broken revision fails each check once. That they can fail is proven on small
synthetic histories in tests/test_check_proofs.py."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import pytest_alembic
import pytest_alembic.tests as builtin_tests
from alembic.config import Config
from sqlalchemy import create_engine, pool

from tests import checks
from tests.checks.common import models_metadata
from tests.snapshot import main as snapshot_main
from tests.support import ROOT, PgServer, alembic_config, head

pytestmark = pytest.mark.schema


@pytest.fixture(scope="module")
def cfg() -> Config:
    """The project's own alembic configuration (one per module: revisions load once)."""
    return alembic_config()


def test_history_has_one_head(cfg: Config) -> None:
    """1. The project's history has exactly one head: the last revision from base."""
    assert checks.check_single_head(cfg) == checks.history(cfg)[-1].revision == head()


def test_models_match_the_migrations(cfg: Config, pg_server: PgServer) -> None:
    """2. After upgrade head, nothing differs from the models (CHECKs and enums included)."""
    checks.check_models_match(cfg, pg_server)


def test_the_models_are_every_module_of_models() -> None:
    """2. The checks compare with every module of models/, not only models/task.py."""
    metadata = models_metadata()
    assert "tasks" in metadata.tables
    for module in ("models.task", "models.crud", "models.db", "models.naming"):
        assert module in sys.modules


def test_stairway(cfg: Config, pg_server: PgServer) -> None:
    """3. Every revision from base: upgrade, downgrade (nothing left behind), upgrade."""
    checks.check_stairway(cfg, pg_server)


def test_downgrade_to_base_leaves_no_trace(cfg: Config, pg_server: PgServer) -> None:
    """4. head -> base, one revision at a time, gives back every earlier schema."""
    checks.check_downgrade_leaves_no_trace(cfg, pg_server)


def test_rows_from_every_revision_survive_to_head(cfg: Config, pg_server: PgServer) -> None:
    """5. Rows stored after each revision are unchanged after every later one."""
    checks.check_data_survives(cfg, pg_server)


def test_offline_sql_builds_the_same_schema(cfg: Config, pg_server: PgServer) -> None:
    """6. `alembic upgrade head --sql` applied by psql gives the online upgrade's schema."""
    checks.check_offline_matches_online(cfg, pg_server)


def test_committed_snapshot_is_current(cfg: Config, pg_server: PgServer) -> None:
    """7. migrations/schema.sql is exactly the DDL that `alembic upgrade head` builds today."""
    checks.check_snapshot(cfg, pg_server)


def test_snapshot_command_regenerates_and_checks(
    pg_server: PgServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """7. `python -m tests.snapshot` writes the committed file; --check exits 1 when stale."""
    monkeypatch.setenv("TEST_DATABASE_URL", pg_server.dsn())
    monkeypatch.delenv("DATABASE_URL", raising=False)
    out = tmp_path / "schema.sql"
    assert snapshot_main(["--output", str(out)]) == 0
    assert out.read_text() == checks.SNAPSHOT.read_text()
    out.write_text("-- stale\n")
    assert snapshot_main(["--check", "--output", str(out)]) == 1
    assert "is stale" in capsys.readouterr().err


def test_every_revision_passes_squawk(cfg: Config) -> None:
    """8. squawk finds nothing dangerous in any revision's own offline SQL."""
    checks.check_lint(cfg)


def test_every_switched_off_squawk_rule_has_a_reason() -> None:
    """8. .squawk.toml switches rules off for every revision, each with a comment saying why
    (one revision waives a rule in its own schema_check_exceptions instead)."""
    config = (ROOT / ".squawk.toml").read_text()
    excluded = tomllib.loads(config).get("excluded_rules", [])
    for rule in excluded:
        assert re.search(rf"^\s*# {re.escape(rule)}: \S", config, re.M), rule


def test_revisions_import_no_application_code(cfg: Config) -> None:
    """9. No revision imports models/, sqlmodel, tests/ or bench/, directly or indirectly."""
    checks.check_revisions_stand_alone(cfg)


def test_the_command_line_builds_what_the_checks_build(cfg: Config, pg_server: PgServer) -> None:
    """10. A real `alembic upgrade head` process builds, byte for byte, the checks' schema."""
    checks.check_cli_matches_checks(cfg, pg_server)


def test_each_revision_is_one_transaction_or_rerunnable(cfg: Config) -> None:
    """11. No revision mixes transactional DDL with autocommit (CONCURRENTLY) steps."""
    checks.check_one_transaction_or_rerunnable(cfg)


def test_declared_exceptions_are_reviewed(cfg: Config) -> None:
    """12. Every schema_check_exceptions entry names a known check and gives a reason."""
    checks.check_exceptions_are_reviewed(cfg)


BUILTIN = [
    "test_single_head_revision",
    "test_upgrade",
    "test_model_definitions_match_ddl",
    "test_up_down_consistency",
]


def run_builtin(names: list[str], cfg: Config, server: PgServer) -> None:
    """Run pytest-alembic's built-in tests, in order, with one runner on a fresh database."""
    with server.database("pytest_alembic") as dbname:
        engine = create_engine(server.url(dbname), poolclass=pool.NullPool)
        try:
            config = pytest_alembic.Config.from_raw_config(cfg)
            with pytest_alembic.runner(config=config, engine=engine) as alembic_runner:
                for name in names:
                    getattr(builtin_tests, name)(alembic_runner)
        finally:
            engine.dispose()


def test_pytest_alembic_builtin_tests_pass(pg_server: PgServer) -> None:
    """pytest-alembic's built-in tests run against this project's env.py unchanged, and pass
    (one runner, one database: each of them leaves it as it found it)."""
    run_builtin(BUILTIN, alembic_config(), pg_server)
