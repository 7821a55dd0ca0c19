"""With no DATABASE_URL, the main job runs on the embedded local PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from tests.support import run_alembic


def test_upgrade_head_on_the_embedded_default(tmp_path: Path) -> None:
    """`alembic upgrade head` then `alembic check` work with no URL; the data dir persists."""
    pgdata = tmp_path / "pgdata"
    env = {"DATABASE_URL": "", "LOCAL_PGDATA": str(pgdata)}
    up = run_alembic("upgrade", "head", env=env)
    assert up.returncode == 0, up.stderr
    assert f"Using the embedded PostgreSQL in {pgdata}" in up.stderr
    assert "Running upgrade  -> 0001" in up.stderr
    check = run_alembic("check", env=env)
    assert check.returncode == 0, check.stderr
    current = run_alembic("current", env=env)
    assert "(head)" in current.stdout
    assert (pgdata / "PG_VERSION").exists()
