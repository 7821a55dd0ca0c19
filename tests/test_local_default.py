"""With no DATABASE_URL, the main job runs on the embedded local PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from tests.support import head, run_python

# Three alembic commands in one process (the library's own CLI entry point), to pay for
# the interpreter start-up once: upgrade, then check and current against the same data.
THREE_COMMANDS = """
from alembic.config import main
for argv in (["upgrade", "head"], ["check"], ["current"]):
    main(argv=argv)
"""


def test_upgrade_head_on_the_embedded_default(memory_path: Path) -> None:
    """`alembic upgrade head`, `check` and `current` work with no URL; the data dir persists,
    and `python -m models.local` opens psql on it."""
    pgdata = memory_path / "pgdata"
    done = run_python("-c", THREE_COMMANDS, env={"LOCAL_PGDATA": str(pgdata)}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Using the embedded PostgreSQL in {pgdata}" in done.stderr
    assert "Running upgrade  -> 0001" in done.stderr
    assert "No new upgrade operations detected." in done.stdout
    assert "(head)" in done.stdout
    assert (pgdata / "PG_VERSION").exists()
    # The developer's SQL prompt reaches that same data (docs/workflow.md).
    prompt = ("-m", "models.local", "-At", "-c", "SELECT version_num FROM alembic_version")
    asked = run_python(*prompt, env={"LOCAL_PGDATA": str(pgdata)}, timeout=60)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert asked.stdout.strip() == head()
