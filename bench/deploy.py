"""3. Deploy time: `alembic upgrade head` as a process, against two floors."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.harness import Sizes, clock, median, ms, ratio
from bench.report import Table
from models.local import pg_program
from tests.checks import offline_sql
from tests.support import ROOT, PgServer, alembic_config, run_alembic

BARE_IMPORTS = "import sqlalchemy, alembic, sqlmodel"


def check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{done.args} failed:\n{done.stderr[-2000:]}")


def on_empty_database(server: PgServer, command: Callable[[str], None]) -> float:
    """Seconds that command takes on a new empty database (created and dropped untimed)."""
    with server.database("deploy") as name:
        return clock(lambda: command(server.dsn(name)))


def no_database(command: Callable[[str], None]) -> float:
    """Seconds that command takes (it needs no database)."""
    return clock(lambda: command(""))


def run(server: PgServer, sizes: Sizes) -> Table:
    """Time each command sizes.deploy_runs times, interleaved, after one warm-up round."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "upgrade.sql"
        script.write_text(offline_sql(alembic_config(), "head"))

        def alembic(dsn: str) -> None:
            check(run_alembic("upgrade", "head", env={"DATABASE_URL": dsn}, cold=True))

        def psql(dsn: str) -> None:
            check(
                subprocess.run(
                    [
                        pg_program("psql"),
                        "-X",
                        "-q",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-f",
                        str(script),
                        dsn,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            )

        def python(code: str) -> Callable[[str], None]:
            def command(dsn: str) -> None:
                check(
                    subprocess.run(
                        [sys.executable, "-c", code],
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                )

            return command

        commands = {
            "`alembic upgrade head` (empty database)": alembic,
            "floor: `psql -f` of `alembic upgrade head --sql`": psql,
            f"floor: `python -c '{BARE_IMPORTS}'`": python(BARE_IMPORTS),
        }
        if sizes.deploy_reference:
            commands["for reference: `python -c 'import models'`"] = python("import models")
        times: dict[str, list[float]] = {label: [] for label in commands}
        warmup = min(1, sizes.warmup)
        for round_ in range(warmup + sizes.deploy_runs):
            for label, command in commands.items():
                needs_db = not label.startswith(("floor: `python", "for reference"))
                took = on_empty_database(server, command) if needs_db else no_database(command)
                if round_ >= warmup:
                    times[label].append(took)
    p50 = {label: median(samples) for label, samples in times.items()}
    labels = list(commands)
    floor = max(p50[labels[1]], p50[labels[2]])
    table = Table(
        "3. Deploy time",
        f"Each command as a new process on a new empty database, {sizes.deploy_runs} runs "
        f"each, interleaved, after {warmup} warm-up round; median. Goal: `alembic upgrade "
        "head` within 1.3x of the larger floor.",
        ["command", "runs", "median ms", "min ms", "vs larger floor"],
    )
    for label, samples in times.items():
        table.rows.append(
            [label, str(len(samples)), ms(p50[label]), ms(min(samples)), ratio(p50[label], floor)]
        )
    return table
