"""5. Online change under load: writers' longest stall while the list-query index is built."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bench.data import load_tasks, user_id
from bench.harness import Sizes, ms
from bench.report import Table
from tests.support import PgServer, migrate, run_alembic

INDEX = "ix_bench_plain ON tasks (user_id, created_at DESC, id DESC)"
INSERT = "INSERT INTO tasks (user_id, title) VALUES (%s, %s)"
UPDATE = "UPDATE tasks SET complete = NOT complete WHERE id = %s"


@dataclass
class Writer:
    """One connection that inserts and updates tasks until told to stop."""

    dsn: str
    max_id: int
    seed: int
    stop: threading.Event
    writes: int = 0
    longest: float = 0.0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self.write()
        except BaseException as exc:
            self.error = exc
            self.stop.set()

    def write(self) -> None:
        rng = random.Random(self.seed)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                start = time.perf_counter()
                if rng.random() < 0.5:
                    conn.execute(INSERT, (user_id(rng.randint(1, 100)), "written under load"))
                else:
                    conn.execute(UPDATE, (rng.randint(1, self.max_id),))
                self.longest = max(self.longest, time.perf_counter() - start)
                self.writes += 1


def under_load(
    dsn: str, sizes: Sizes, rows: int, ddl: Callable[[], None]
) -> tuple[float, list[Writer]]:
    """Run ddl while sizes.writers writers write: (ddl seconds, the writers)."""
    stop = threading.Event()
    writers = [Writer(dsn, rows, seed, stop) for seed in range(sizes.writers)]
    threads = [threading.Thread(target=w.run) for w in writers]
    for thread in threads:
        thread.start()
    time.sleep(sizes.around)
    start = time.perf_counter()
    ddl()
    took = time.perf_counter() - start
    time.sleep(sizes.around)
    stop.set()
    for thread in threads:
        thread.join()
    for writer in writers:
        if writer.error is not None:
            raise RuntimeError("a writer failed") from writer.error
    return took, writers


def run(server: PgServer, sizes: Sizes) -> Table:
    rows = max(sizes.rows)
    with server.database("online") as name:
        url, dsn = server.url(name), server.dsn(name)
        migrate(url, "0001")
        load_tasks(dsn, rows, sizes.users)

        def alembic_0002() -> None:
            done = run_alembic(
                "upgrade", "0002", env={"DATABASE_URL": dsn}, cold=not sizes.warm_processes
            )
            if done.returncode != 0:
                raise RuntimeError(f"alembic upgrade 0002 failed:\n{done.stderr}")

        def plain() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"CREATE INDEX {INDEX}")

        pause = 2 * sizes.around
        results = {
            f"no DDL (baseline, {pause:g} s)": under_load(
                dsn, sizes, rows, lambda: time.sleep(pause)
            )
        }
        results["`alembic upgrade 0002` (ours: CONCURRENTLY)"] = under_load(
            dsn, sizes, rows, alembic_0002
        )
        migrate(url, "0001", down=True, allow_data_loss=True)
        results["plain `CREATE INDEX` of the first of its indexes"] = under_load(
            dsn, sizes, rows, plain
        )
    table = Table(
        "5. Online change under load",
        f"{rows:,} tasks at revision 0001; {sizes.writers} writer threads (one connection "
        "each, autocommit) insert and update tasks (half each, random rows) without pause; "
        f"the DDL starts {sizes.around:g} s after them and they stop {sizes.around:g} s after it "
        "ends. "
        "Stall = the longest single write. Ours runs the real revision as a deploy would "
        "(`alembic upgrade 0002` as a process, from 0001); then `alembic downgrade 0001` and "
        "a plain `CREATE INDEX` of the first of its two indexes. Goal: longest stall <= 100 "
        "ms with ours, against about the build time with the plain one.",
        ["DDL under load", "DDL s", "writes", "longest stall per writer ms", "worst ms"],
    )
    for label, (took, writers) in results.items():
        stalls = [w.longest for w in writers]
        table.rows.append(
            [
                label,
                f"{took:.2f}",
                f"{sum(w.writes for w in writers):,}",
                ", ".join(ms(s) for s in stalls),
                f"**{ms(max(stalls))}**",
            ]
        )
    return table
