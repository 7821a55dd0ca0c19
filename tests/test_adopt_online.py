"""Adoption on a live database: a process killed at any step leaves a database the same
command finishes; writers go on during it; the `alembic` process does what the tests do
in-process (docs/adopting.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import URL

from bench import adopt as bench_adopt
from bench.harness import SMOKE
from migrations.adoption.shapes import SHAPES
from models.local import pg_program
from tests.checks.common import history, schema_ddl
from tests.legacy.run import (
    adopt,
    as_utc,
    execute,
    expected,
    legacy_columns,
    scalar,
    task_rows,
)
from tests.legacy.writers import Writer, generate
from tests.support import PgServer, alembic_config, head

if TYPE_CHECKING:
    from tests.legacy.fixtures import CopyOf

pytest_plugins = ("tests.legacy.fixtures",)
VOLATILE = ("--", "\\restrict", "\\unrestrict", "SET ", "SELECT pg_catalog.set_config")
L3 = "L3/varchar"
FIX: dict[str, Any] = {"adopt_fix": "priority-case"}  # its rows hold 'HIGH', as the app wrote it


def crash_points() -> list[str]:
    """A point in each kind of state an adoption can be killed in (convert.py): a build
    begun, a build done, the trigger on, a copy begun, inside the swap, after it."""
    first = history(alembic_config())[0].revision
    return [f"build {first}", "built", "synced", "copy 1", "swap", "swapped"]


def killed_at(url: URL, point: str) -> int:
    """Adopt in a child process (fork: nothing to import again) that SIGKILLs itself at
    `point`; its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            adopt(url, adopt_batch="5", adopt_crash_at=point, **FIX)
        finally:
            os._exit(3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the adoption killed at {point!r} did not end within 60 s")


def test_a_kill_at_any_step_then_the_same_command_finishes(
    pg_server: PgServer, copy_of: CopyOf, fresh_ddl: str
) -> None:
    """SIGKILL at each step boundary in turn (and inside the swap's transaction), the same
    command run again after each: every kill leaves every row (in the legacy table before
    the swap, converted after it), and the last run ends at head with a fresh head's
    pg_dump and every row mapped; the other tools' tables beside it keep their rows byte
    for byte (pg_dump --data-only of them, before and after)."""
    name = copy_of(L3, foreign=True)
    url = pg_server.url(name)
    legacy_rows = task_rows(url)
    neighbours = foreign_data(pg_server, name)
    adopted_rows = as_utc(expected(legacy_rows, fixes=("priority-case",)))

    def adopted() -> dict[int, dict[str, Any]]:
        return legacy_columns(task_rows(url), legacy_rows)

    for point in crash_points():
        status = killed_at(url, point)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, point
        swapped = scalar(pg_server, name, "SELECT to_regclass('alembic_version')") is not None
        rows = adopted() if swapped else task_rows(url)
        assert rows == (adopted_rows if swapped else legacy_rows), point
    adopt(url, adopt_batch="5", **FIX)
    assert scalar(pg_server, name, "SELECT version_num FROM alembic_version") == head()
    assert schema_ddl(pg_server, name) == fresh_ddl
    assert adopted() == adopted_rows
    assert foreign_data(pg_server, name) == neighbours


ROWS = 100_000
# The concurrency proof runs on L2 (what differs between shapes is the values' SQL, not
# the steps); the 1M-row figures are L3's (bench/adopt.py).
L2 = "L2/varchar"


def test_writers_go_on_while_100k_rows_are_adopted(pg_server: PgServer, copy_of: CopyOf) -> None:
    """Two writers insert, update and delete (2 ms apart) while 100k legacy rows are
    adopted (to the shape's target revision): no write fails, none waits longer than the
    deploy's lock_timeout, and every write is in the adopted table (the deleted rows gone)."""
    name = copy_of(L2)
    execute(pg_server, name, generate(ROWS))
    url, dsn = pg_server.url(name), pg_server.dsn(name)
    legacy = int(str(scalar(pg_server, name, "SELECT count(*) FROM tasks")))
    stop = threading.Event()
    writers = [Writer(dsn, seed, 2, ROWS, stop, pause=0.002) for seed in (0, 1)]
    for writer in writers:
        writer.start()
    time.sleep(0.1)
    target = next(s.target for s in SHAPES if s.name == L2)
    try:
        adopt(url, target=target, **FIX)
        time.sleep(0.1)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert [w.error for w in writers] == [None, None]
    assert all(len(w.waits) > 10 for w in writers)
    assert max(w.longest for w in writers) < 5.0  # MIGRATION_LOCK_TIMEOUT_SECONDS
    inserted = sum(len(w.inserted) for w in writers)
    deleted = sum(len(w.deleted) for w in writers)
    count = scalar(pg_server, name, "SELECT count(*) FROM tasks")
    assert count == legacy + inserted - deleted
    for writer in writers:
        touched = [*writer.inserted, *writer.titled, *writer.deleted]
        found = dict(
            rows_of(pg_server, name, "SELECT id, title FROM tasks WHERE id = ANY(%s)", touched)
        )
        assert found == {**writer.inserted, **writer.titled}


def test_the_alembic_process_adopts_under_load_as_the_tests_do(
    pg_server: PgServer, head_template: str
) -> None:
    """The real `alembic -x adopt=true ... upgrade head` process (the benchmark's smoke run,
    bench/adopt.py: a legacy L3 while writers write) goes through every step and builds
    the pg_dump of a fresh head, as the in-process runs of the other tests do."""
    with pg_server.database("fresh", template=head_template) as fresh:
        want = schema_ddl(pg_server, fresh)
    seen: list[tuple[str, object]] = []

    def adopted(name: str) -> None:
        version = scalar(pg_server, name, "SELECT version_num FROM alembic_version")
        seen.append((schema_ddl(pg_server, name), version))

    table = bench_adopt.run(pg_server, SMOKE, adopted)
    assert seen == [(want, head())]
    assert [row[0] for row in table.rows[:-2]] == [label for label, _ in bench_adopt.STEPS]


def rows_of(server: PgServer, dbname: str, sql: str, ids: list[int]) -> list[tuple[int, str]]:
    """The rows a query with one parameter (a list of ids) returns."""
    with psycopg.connect(server.dsn(dbname)) as conn:
        return [(int(i), str(t)) for i, t in conn.execute(sql, (ids,))]


def foreign_data(server: PgServer, dbname: str) -> str:
    """pg_dump --data-only of the other tools' tables (tests/legacy/sql/foreign_tables.sql)."""
    tables = ["user", "session", "account", "verification", "conversations", "messages"]
    out = subprocess.run(
        [
            pg_program("pg_dump"),
            "--data-only",
            *(f"--table=public.{t}" for t in tables),
            server.dsn(dbname),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(line for line in out.stdout.splitlines() if not line.startswith(VOLATILE))
