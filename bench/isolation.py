"""2. Per-test isolation: our rollback against a template clone and create_all/drop_all."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

from sqlalchemy import Engine, create_engine
from sqlmodel import Session, SQLModel

from bench.harness import Sizes, median, ms, pct, ratio
from bench.report import Table
from models import TaskCreate, create_task
from tests.support import PgServer, migrate

# A strategy sets a test up, runs the test's work, tears it down: returns the seconds spent
# in set-up + teardown only (the work itself, one create_task, is not counted).
Strategy = Callable[[], float]


def work(session: Session) -> None:
    """What each "test" does: one insert and commit through the data-access layer."""
    create_task(session, "alice", TaskCreate(title="isolation"))


def rollback(engine: Engine) -> Strategy:
    """Ours (tests/conftest.py): a transaction per test, commits become savepoints, rollback."""

    def once() -> float:
        start = time.perf_counter()
        with engine.connect() as connection:
            transaction = connection.begin()
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                ready = time.perf_counter()
                work(session)
                done = time.perf_counter()
            transaction.rollback()
        return ready - start + time.perf_counter() - done

    return once


def template_clone(server: PgServer, template: str) -> Strategy:
    """pytest-postgresql's default: CREATE DATABASE ... TEMPLATE per test, dropped after."""

    def once() -> float:
        start = time.perf_counter()
        with ExitStack() as stack:
            name = stack.enter_context(server.database("clone", template=template))
            engine = create_engine(server.url(name))
            stack.callback(engine.dispose)
            session = stack.enter_context(Session(engine))
            ready = time.perf_counter()
            work(session)
            done = time.perf_counter()
        return ready - start + time.perf_counter() - done

    return once


def create_all(engine: Engine) -> Strategy:
    """For comparison only: SQLModel.metadata.create_all per test, drop_all after.

    What create_all cannot make (the extensions of 0009, the function tasks_tags_valid()
    of 0007 that one CHECK calls) is created once, up front, outside the timing.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS btree_gin")
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION tasks_tags_valid(text[]) RETURNS boolean "
            "LANGUAGE sql IMMUTABLE AS 'SELECT true'"
        )

    def once() -> float:
        start = time.perf_counter()
        SQLModel.metadata.create_all(engine)
        with Session(engine) as session:
            ready = time.perf_counter()
            work(session)
            done = time.perf_counter()
        SQLModel.metadata.drop_all(engine)
        return ready - start + time.perf_counter() - done

    return once


def measure(strategy: Strategy, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        strategy()
    return [strategy() for _ in range(runs)]


def run(server: PgServer, sizes: Sizes) -> Table:
    """Time set-up + teardown per test for the three strategies on the same server."""
    few = max(1, sizes.isolation_runs // 10)
    with server.database("iso_tpl") as template, server.database("iso_empty") as empty:
        migrate(server.url(template))
        ours_engine = create_engine(server.url(template))
        empty_engine = create_engine(server.url(empty))
        try:
            results = {
                "transaction + savepoint rollback (ours)": (
                    measure(rollback(ours_engine), sizes.isolation_runs, sizes.warmup)
                ),
                "CREATE DATABASE ... TEMPLATE, DROP (pytest-postgresql)": (
                    measure(template_clone(server, template), few, sizes.warmup)
                ),
                "create_all / drop_all (comparison only)": (
                    measure(create_all(empty_engine), few, sizes.warmup)
                ),
            }
        finally:
            ours_engine.dispose()
            empty_engine.dispose()
    ours = median(next(iter(results.values())))
    table = Table(
        "2. Per-test isolation",
        "Set-up + teardown per test, on the same server and migrated schema; each test does "
        "one `create_task` (insert + commit), which is not counted. Ours: connect from the "
        f"pool, BEGIN, a savepoint Session, ROLLBACK, {sizes.isolation_runs} tests; "
        f"the others {few} tests each; {sizes.warmup} warm-up tests before each. "
        "Goal: ours p50 <= 2 ms.",
        ["strategy", "tests", "p50 ms", "p99 ms", "p50 vs ours"],
    )
    for label, samples in results.items():
        p50 = median(samples)
        table.rows.append(
            [label, str(len(samples)), ms(p50), ms(pct(samples, 99)), ratio(p50, ours)]
        )
    return table
