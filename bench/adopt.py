"""11. Adoption of a legacy database (L3) under write load: each step's time and the longest
time a writer waited during it; beside it, the in-place ALTER TABLE it avoids."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy import create_engine, pool, text

from bench.harness import Sizes, ms
from bench.report import Table
from tests import zygote
from tests.legacy.build import build
from tests.legacy.run import execute
from tests.legacy.writers import Writer, generate
from tests.support import ROOT, PgServer, clean_env

SHAPE = "L3/varchar"
COMMAND = ["-x", "adopt=true", "-x", "adopt-fix=priority-case", "upgrade", "head"]
# The log line that ends each step (stderr of the command), in order.
STEPS = [
    ("start the command, take the lock, recognise the shape", "Adoption: table tasks is"),
    ("data check (one read-only scan)", "Data check:"),
    ("build the target revision's schema beside it", "built revision"),
    ("sync trigger on the legacy table", "is now mirrored"),
    ("copy the rows (batches of 5,000)", "copied; swapping"),
    ("swap the tables (ACCESS EXCLUSIVE), record the revision", "swapped:"),
    ("the ordinary revisions after it, to head", None),
]
# What adoption avoids: converting the table in place, one ALTER TABLE (a rewrite under
# ACCESS EXCLUSIVE, every index rebuilt), on a copy of the same legacy database.
IN_PLACE = """
CREATE TYPE task_priority AS ENUM ('low', 'medium', 'high');
CREATE TYPE task_recurring AS ENUM ('none', 'daily', 'weekly', 'monthly', 'yearly');
ALTER TABLE tasks ALTER COLUMN priority DROP DEFAULT, ALTER COLUMN recurring DROP DEFAULT;
ALTER TABLE tasks
  ALTER COLUMN id TYPE bigint,
  ALTER COLUMN user_id TYPE varchar(255),
  ALTER COLUMN created_at TYPE timestamptz USING created_at AT TIME ZONE 'UTC',
  ALTER COLUMN updated_at TYPE timestamptz USING updated_at AT TIME ZONE 'UTC',
  ALTER COLUMN due_date TYPE timestamptz USING due_date AT TIME ZONE 'UTC',
  ALTER COLUMN recurring_end_date TYPE timestamptz USING recurring_end_date AT TIME ZONE 'UTC',
  ALTER COLUMN priority TYPE task_priority USING lower(priority)::task_priority,
  ALTER COLUMN recurring TYPE task_recurring USING recurring::task_recurring;
"""


def adopt_under_load(
    dsn: str, rows: int, writers: int, around: float, warm: bool = False
) -> tuple[list[tuple[float, str]], list[Writer], float, float]:
    """The adoption command as a process while `writers` write: (each stderr line with the
    time it arrived, the writers, start, end)."""
    stop = threading.Event()
    threads = [Writer(dsn, seed, writers, rows, stop) for seed in range(writers)]
    for thread in threads:
        thread.start()
    time.sleep(around)
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    process: zygote.Child | subprocess.Popen[str]
    env = clean_env({"DATABASE_URL": dsn})
    if warm:  # the smoke run: forked from the tests' zygote (imports done)
        process = zygote.start(
            ["-m", "alembic", *COMMAND],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    else:
        process = subprocess.Popen(
            [sys.executable, "-m", "alembic", *COMMAND],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.perf_counter(), line.rstrip()))
    end = time.perf_counter()
    time.sleep(around)
    stop.set()
    for thread in threads:
        thread.join()
    if process.wait() != 0:
        raise RuntimeError("adoption failed:\n" + "\n".join(line for _, line in lines))
    for thread in threads:
        if thread.error is not None:
            raise RuntimeError("a writer failed") from thread.error
    return lines, threads, start, end


def in_place_seconds(server: PgServer, template: str) -> float:
    """The in-place conversion's ALTER TABLE, timed on a copy of the legacy database."""
    with server.database("in_place", template=template) as name:
        engine = create_engine(server.url(name), poolclass=pool.NullPool)
        try:
            with engine.begin() as conn:
                *types, alter = [s for s in IN_PLACE.split(";") if s.strip()]
                for statement in types:
                    conn.execute(text(statement))
                started = time.perf_counter()
                conn.execute(text(alter))
                return time.perf_counter() - started
        finally:
            engine.dispose()


def run(server: PgServer, sizes: Sizes, adopted: Callable[[str], None] | None = None) -> Table:
    """The benchmark; `adopted(dbname)` (tests) sees the adopted database before it goes."""
    rows = max(sizes.rows)
    with server.database("adopt_legacy") as template:
        build(server.url(template), SHAPE)
        execute(server, template, generate(rows, phase3=True))
        execute(server, template, "ANALYZE tasks")
        reference = in_place_seconds(server, template)
        with server.database("adopt", template=template) as name:
            lines, writers, start, end = adopt_under_load(
                server.dsn(name), rows, sizes.writers, sizes.around, sizes.warm_processes
            )
            if adopted is not None:
                adopted(name)
    table = Table(
        "11. Adopting a legacy database under write load",
        f"{rows:,} legacy rows in the shape {SHAPE} (create_all() + the app's hand scripts "
        "001 and 008, tests/legacy/), plus the fixture's rows; `alembic -x adopt=true -x "
        "adopt-fix=priority-case upgrade head` as a process, while "
        f"{sizes.writers} writer threads (one connection each, autocommit, as the table's "
        "owner: the legacy table has no grants for the app role) insert, update and delete "
        "tasks without pause. A step ends at its log line; stall = the longest single write "
        "that overlapped the step. The in-place row is one ALTER TABLE doing the same "
        "conversion on a copy, timed alone: every writer waits for all of it.",
        ["step", "s", "writes", "longest writer stall ms"],
    )
    waits = [w for writer in writers for w in writer.waits]
    begin = start
    for label, marker in STEPS:
        found = next((t for t, line in lines if marker and marker in line), None)
        finish = end if marker is None else found
        if finish is None:
            raise RuntimeError(f"no log line {marker!r}:\n" + "\n".join(x for _, x in lines))
        during = [s for t, s in waits if t > begin and t - s < finish]
        stall = max(during, default=0.0)
        table.rows.append([label, f"{finish - begin:.2f}", f"{len(during):,}", ms(stall)])
        begin = finish
    during = [s for t, s in waits if start < t and t - s < end]
    table.rows.append(
        ["**total**", f"**{end - start:.2f}**", f"{len(during):,}", f"**{ms(max(during))}**"]
    )
    table.rows.append(
        [
            "in place instead: one ALTER TABLE (rewrite, indexes rebuilt)",
            f"{reference:.2f}",
            "-",
            f"{ms(reference)} (all of it)",
        ]
    )
    return table
