"""8. Contract v1.1 at scale: writer stall per revision, every list variant, search, count,
keyset against OFFSET, and round trips per write, before and after."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col

from bench.data import load_tasks, share, user_id
from bench.harness import Sizes, median, ms
from bench.listing import captured, shape
from bench.online import under_load
from bench.report import Table
from models import (
    Settings,
    Task,
    TaskCreate,
    TaskUpdate,
    create_task,
    delete_task,
    list_tasks,
    make_engine,
    update_task,
)
from models.listing import ListQuery, _encode
from models.security import bound_user
from tests.support import PgServer, migrate, run_alembic

REVISIONS = ("0003", "0004", "0005", "0006", "0007", "0008", "0009")
HEAVY = user_id(1)
# The v1.1 columns of every task, varied so that each filter matches a realistic share:
# priority a third each, 1 in 4 without due date, tags in five patterns ("urgent" 20%),
# "milk" in 1% of the titles. Filled before 0009 builds its indexes (as a real table's
# rows would have them by the time of a later index build).
FILL = """
UPDATE tasks SET
    priority = (ARRAY['low', 'medium', 'high'])[1 + id % 3]::task_priority,
    due_date = CASE WHEN id % 4 = 0 THEN NULL ELSE created_at + (id % 30) * interval '1 day' END,
    tags = (ARRAY['{}', '{work}', '{home,errand}', '{work,urgent}', '{someday}'])
        [1 + id % 5]::text[],
    title = title || CASE WHEN id % 100 = 0 THEN ' buy milk' ELSE '' END
"""
FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "status=pending": {"status": "pending"},
    "priority=high": {"priority": "high"},
    "tags=[urgent]": {"tags": ["urgent"]},
    "search=milk": {"search": "milk"},
    "due_after": {"due_after": "2025-06-01T00:00:00Z"},
}
SORTS = ("created_at", "due_date", "priority", "title")


def measured(sizes: Sizes) -> tuple[str, ...]:
    """The revisions whose stall is measured: all, or the last sizes.stall_revisions."""
    return REVISIONS[-sizes.stall_revisions :] if sizes.stall_revisions else REVISIONS


def stalls(sizes: Sizes, rows: int, dsn: str) -> list[list[str]]:
    """Each new revision run as a deploy would, alone, while writers write (FILL before 0009).
    The database is at the revision before the first one measured."""
    pause = 2 * sizes.around
    took, writers = under_load(dsn, sizes, rows, lambda: time.sleep(pause))
    baseline = f"no DDL (baseline, {pause:g} s)"
    result = [
        [
            baseline,
            f"{took:.2f}",
            f"{sum(w.writes for w in writers):,}",
            ms(max(w.longest for w in writers)),
        ]
    ]
    for rev in measured(sizes):
        if rev == "0009":
            fill(dsn)

        def upgrade(rev: str = rev) -> None:
            done = run_alembic("upgrade", rev, env={"DATABASE_URL": dsn}, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"alembic upgrade {rev} failed:\n{done.stderr}")

        took, writers = under_load(dsn, sizes, rows, upgrade)
        worst = max(w.longest for w in writers)
        result.append(
            [
                f"`alembic upgrade {rev}`",
                f"{took:.2f}",
                f"{sum(w.writes for w in writers):,}",
                f"**{ms(worst)}**",
            ]
        )
    return result


def fill(dsn: str) -> None:
    """The v1.1 columns of every task (FILL), then VACUUM ANALYZE."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL)
        conn.execute("VACUUM ANALYZE tasks")


def explain(engine: Engine, statement: str, params: Any, runs: int) -> tuple[str, float]:
    """The plan's node chain and the median server Execution Time (s) of statement."""
    times, plan = [], {}
    with engine.connect() as conn:
        for _ in range(runs):
            found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params)
            plan = found.scalar_one()[0]
            times.append(plan["Execution Time"] / 1000)
    return shape(plan["Plan"]), median(times)


def timed(call: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return median(samples)


def variants(engine: Engine, runs: int) -> list[list[str]]:
    """Every sort x order x filter for the heaviest owner: plan, server p50, call p50."""
    result = []
    for sort_by in SORTS:
        for order in ("asc", "desc"):
            for label, filters in FILTERS.items():
                args = {"sort_by": sort_by, "sort_order": order, "limit": 50, **filters}

                def call(args: dict[str, Any] = args) -> None:
                    with Session(engine) as session:
                        list_tasks(session, HEAVY, with_count=False, **args)

                call()
                with captured(engine) as sent:
                    call()
                statement, params = next(s for s in sent if "FROM tasks" in s[0])
                plan, server = explain(engine, statement, params, runs)
                result.append([sort_by, order, label, plan, ms(server), ms(timed(call, runs))])
    return result


def count_and_search(engine: Engine, runs: int) -> list[list[str]]:
    """The total count, and the search with its count, for the heaviest owner."""
    rows = []
    cases: list[tuple[str, dict[str, Any]]] = [
        ("count, no filter", {}),
        ("count, search=milk", {"search": "milk"}),
    ]
    for label, filters in cases:
        with Session(engine) as session, captured(engine) as sent:
            list_tasks(session, HEAVY, limit=1, **filters)
        statement, params = next(s for s in sent if "count(" in s[0])
        plan, server = explain(engine, statement, params, runs)
        rows.append([label, plan, ms(server), ""])

    def search() -> None:
        with Session(engine) as session:
            list_tasks(session, HEAVY, search="milk", limit=50)

    rows.append(["list_tasks(search=milk), page + count", "", "", ms(timed(search, runs))])
    return rows


def keyset_vs_offset(engine: Engine, runs: int) -> list[list[str]]:
    """Page 1,000 (pages of 50, newest first) by cursor and by OFFSET (an earlier page
    if the owner has fewer tasks: smoke runs)."""
    with engine.connect() as conn:
        total = conn.execute(
            sa.text("SELECT count(*) FROM tasks WHERE user_id = :u"), {"u": HEAVY}
        ).scalar_one()
        offset = 50 * max(1, min(999, total // 50 - 1))
        last = conn.execute(
            sa.text(
                "SELECT created_at, id FROM tasks WHERE user_id = :u "
                "ORDER BY created_at DESC, id DESC OFFSET :o LIMIT 1"
            ),
            {"u": HEAVY, "o": offset - 1},
        ).one()
    cursor = _encode(ListQuery(limit=50), last.created_at, last.id)
    with Session(engine) as session, captured(engine) as sent:
        page = list_tasks(session, HEAVY, limit=50, cursor=cursor, with_count=False)
    statement, params = next(s for s in sent if "FROM tasks" in s[0])
    keyset = explain(engine, statement, params, runs)
    first_id = page.tasks[0].id
    sql = (
        "SELECT * FROM tasks WHERE user_id = %(u)s ORDER BY created_at DESC, id DESC "
        "LIMIT 50 OFFSET %(o)s"
    )
    with engine.connect() as conn:
        same = conn.exec_driver_sql(sql, {"u": HEAVY, "o": offset}).first()
    assert same is not None and same.id == first_id, "keyset and OFFSET disagree"
    by_offset = explain(engine, sql, {"u": HEAVY, "o": offset}, runs)
    return [
        [f"keyset (cursor), page {offset // 50 + 1:,}", keyset[0], ms(keyset[1])],
        [f"OFFSET {offset:,}", by_offset[0], ms(by_offset[1])],
    ]


def v1_writes(engine: Engine, owner: str) -> None:
    """create, update and delete as v1.0's models/crud.py did them, one request each."""
    by_id = sa.select(Task).where(col(Task.id) == sa.bindparam("id"), col(Task.user_id) == owner)
    with Session(engine) as session:  # create_task: add, commit, refresh
        task = Task.model_validate({"title": "t"}, update={"user_id": owner})
        session.add(task)
        session.commit()
        session.refresh(task)
        task_id = task.id
    with Session(engine) as session:  # update_task: get_task, change, commit, refresh
        found = session.execute(by_id, {"id": task_id}).scalar_one()
        found.sqlmodel_update({"complete": True})
        session.add(found)
        session.commit()
        session.refresh(found)
    with Session(engine) as session:  # delete_task: get_task, delete, commit
        session.delete(session.execute(by_id, {"id": task_id}).scalar_one())
        session.commit()


def v11_writes(engine: Engine, owner: str) -> None:
    """The same three requests through today's models/crud.py."""
    with Session(engine) as session:
        task_id = create_task(session, owner, TaskCreate(title="t")).id or 0
    with Session(engine) as session:
        update_task(session, owner, task_id, TaskUpdate(complete=True))
    with Session(engine) as session:
        delete_task(session, owner, task_id)


def round_trips(engine: Engine) -> list[list[str]]:
    """Statements and COMMITs sent for one create, one update and one delete request."""
    result = []
    for label, writes in (
        ("v1.0 (ORM: add/commit/refresh)", v1_writes),
        ("v1.1 (one statement ... RETURNING, for its owner)", v11_writes),
    ):
        sent: list[str] = []

        def record(*args: Any, sent: list[str] = sent) -> None:
            sent.append(str(args[2]).split()[0].upper())

        def commit(*args: Any, sent: list[str] = sent) -> None:
            sent.append("COMMIT")

        def begin(session: OrmSession, *args: Any, sent: list[str] = sent) -> None:
            if bound_user(session) is not None:  # models/security.py sets the user first
                sent.append("SET_CONFIG")

        event.listen(engine, "before_cursor_execute", record)
        event.listen(engine, "commit", commit)
        event.listen(OrmSession, "after_begin", begin)
        try:
            writes(engine, "rt")
        finally:
            event.remove(engine, "before_cursor_execute", record)
            event.remove(engine, "commit", commit)
            event.remove(OrmSession, "after_begin", begin)
        result.append([label, str(len(sent)), " ".join(sent)])
    return result


def run(server: PgServer, sizes: Sizes) -> list[Table]:
    rows = max(sizes.rows)
    runs = max(3, min(sizes.query_runs, 30))
    with server.database("contract") as name:
        url, dsn = server.url(name), server.dsn(name)
        migrate(url, "0002")
        load_tasks(dsn, rows, sizes.users)
        first = REVISIONS.index(measured(sizes)[0])
        if first > 0:  # a smoke run: the earlier revisions in-process, unmeasured
            migrate(url, REVISIONS[first - 1])
        stall_rows = stalls(sizes, rows, dsn)
        migrate(url)  # later revisions: list_tasks is head's code, whatever they add
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE tasks")
        engine = make_engine(url, Settings(), admin=True)  # the owner: a privileged figure
        try:
            tables = [
                Table(
                    "8a. Writer stall per contract revision",
                    f"{rows:,} tasks loaded at 0002 (v1.0), their v1.1 columns filled before "
                    "0009 (FILL); each new revision run alone as a "
                    f"deploy would (`alembic upgrade <rev>`, a process), while {sizes.writers} "
                    "writers insert and update without pause (as in 5). Stall = the longest "
                    "single write. Goal: <= 100 ms per revision.",
                    ["revision", "s", "writes", "worst stall ms"],
                    stall_rows,
                ),
                Table(
                    "8b. Every list variant, heaviest owner",
                    f"Owner rank 1 (~{round(rows * share(1, sizes.users)):,} tasks) of "
                    f"{rows:,}, v1.1 columns filled before 0009 (FILL in bench/contract.py); "
                    "page of "
                    f"50, no count; server = median EXPLAIN ANALYZE Execution Time of the "
                    f"first statement list_tasks sent ({runs} runs); call = list_tasks wall "
                    "time through the app's engine. Goal: a bounded plan (Limit > Index "
                    "Scan), server p50 <= 1 ms.",
                    ["sort", "order", "filter", "plan", "server p50 ms", "call p50 ms"],
                    variants(engine, runs),
                ),
                Table(
                    "8c. Count and search, heaviest owner",
                    f"{runs} runs each. Goal: p50 <= 10 ms each.",
                    ["what", "plan", "server p50 ms", "call p50 ms"],
                    count_and_search(engine, runs),
                ),
                Table(
                    "8d. Page 1,000: keyset against OFFSET",
                    f"Pages of 50, newest first, heaviest owner; {runs} runs each; both return "
                    "the same first row (asserted).",
                    ["page 1,000 by", "plan", "server p50 ms"],
                    keyset_vs_offset(engine, runs),
                ),
                Table(
                    "8e. Round trips per create + update + delete",
                    "Statements (and COMMITs) sent for one create, one update and one delete, "
                    "each in its own request, SET_CONFIG being the user's set_config that "
                    "row-level security needs per transaction (revision 0010); the pool's "
                    "pre-ping and psycopg2's BEGIN come on top, the same for both.",
                    ["code", "sent", "what"],
                    round_trips(engine),
                ),
            ]
        finally:
            engine.dispose()
    return tables
