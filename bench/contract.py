"""8. Contract v1.1 at scale: writer stall per revision, every list variant, search, count,
keyset against OFFSET, and round trips per write, before and after."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col

from bench.data import FILL, load_tasks, share, user_id
from bench.harness import Sizes, median, ms
from bench.listing import captured
from bench.online import under_load
from bench.plans import (
    allow_auto_explain,
    explain_all,
    nested_plans,
    page_plan,
    plan_engine,
    rows_read,
    shape,
    touches_tasks,
)
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
from models.cursor import seal
from models.listing import ListQuery, _context, _secret
from models.security import APP_ROLE, bound_user
from tests.support import PgServer, migrate, run_alembic

REVISIONS = ("0003", "0004", "0005", "0006", "0007", "0008", "0009")
HEAVY = user_id(1)
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
            done = run_alembic(
                "upgrade",
                rev,
                env={"DATABASE_URL": dsn},
                timeout=900,
                cold=not sizes.warm_processes,
            )
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


SET_USER = "SELECT set_config('app.user_id', %(user)s, true)"


def statements(engine: Engine, call: Callable[[], object]) -> list[tuple[str, Any]]:
    """The list's statements (page, count) that call() sends on engine."""
    with captured(engine) as sent:
        call()
    return [(sql, params) for sql, params in sent if touches_tasks(sql)]


def server(engine: Engine, call: Callable[[], object], runs: int) -> float:
    """The median server time (s: planning + execution, a definer function's own query
    included) of the statements call() sends, as engine's role, for the heaviest owner."""
    return explain_all(engine, HEAVY, statements(engine, call), runs)[0]


def inner(planner: Engine, arguments: dict[str, Any], count: bool = False) -> dict[str, Any]:
    """The plan of the page (or the count) query that list_tasks ran, nested in a definer
    function or not, as the app role, by auto_explain."""

    def call() -> None:
        with Session(planner) as session:
            list_tasks(session, HEAVY, **arguments)

    plans = nested_plans(planner, call)
    if count:
        return next(p.root for p in plans if "SELECT count(*)" in p.query)
    return page_plan(plans)


def timed(call: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return median(samples)


def variants(app: Engine, planner: Engine, runs: int) -> list[list[str]]:
    """Every sort x order x filter for the heaviest owner as the app role: the plan of the
    page query, rows read, server p50, call p50."""
    result = []
    for sort_by in SORTS:
        for order in ("asc", "desc"):
            for label, filters in FILTERS.items():
                args = {"sort_by": sort_by, "sort_order": order, "limit": 50, **filters}

                def call(args: dict[str, Any] = args) -> None:
                    with Session(app) as session:
                        list_tasks(session, HEAVY, **args)

                call()
                at_server = server(app, call, runs)
                root = inner(planner, args)
                result.append(
                    [
                        *(sort_by, order, label, shape(root), f"{rows_read(root):,}"),
                        *(ms(at_server), ms(timed(call, runs))),
                    ]
                )
    return result


def count_and_search(app: Engine, planner: Engine, runs: int) -> list[list[str]]:
    """The total count, and the search with its count, for the heaviest owner."""
    rows = []
    cases: list[tuple[str, dict[str, Any]]] = [
        ("count, no filter", {}),
        ("count, search=milk", {"search": "milk"}),
    ]
    for label, filters in cases:
        args = {"limit": 1, "with_count": True, **filters}

        def count(args: dict[str, Any] = args) -> None:
            with Session(app) as session:
                list_tasks(session, HEAVY, **args)

        at_server = server(app, count, runs)
        root = inner(planner, args, count=True)
        rows.append([label, shape(root), ms(at_server), ""])

    def search() -> None:
        with Session(app) as session:
            list_tasks(session, HEAVY, search="milk", limit=50, with_count=True)

    rows.append(["list_tasks(search=milk), page + count", "", "", ms(timed(search, runs))])
    return rows


def keyset_vs_offset(app: Engine, runs: int) -> list[list[str]]:
    """Page 1,000 (pages of 50, newest first) by cursor and by OFFSET (an earlier page
    if the owner has fewer tasks: smoke runs), as the app role."""
    with app.connect() as conn:
        conn.exec_driver_sql(SET_USER, {"user": HEAVY})
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
        conn.rollback()
    with Session(app) as session:
        context = _context(HEAVY, ListQuery(limit=50))
        cursor = seal(_secret(session), context, last.created_at, last.id)
    first: list[int] = []

    def page() -> None:
        with Session(app) as session:
            found = list_tasks(session, HEAVY, limit=50, cursor=cursor)
            first[:] = [found.tasks[0].id]

    keyset = server(app, page, runs)
    sql = (
        "SELECT * FROM tasks WHERE user_id = %(u)s ORDER BY created_at DESC, id DESC "
        "LIMIT 50 OFFSET %(o)s"
    )
    with app.connect() as conn:
        conn.exec_driver_sql(SET_USER, {"user": HEAVY})
        same = conn.exec_driver_sql(sql, {"u": HEAVY, "o": offset}).first()
        conn.rollback()
    assert same is not None and [same.id] == first, "keyset and OFFSET disagree"
    by_offset = explain_all(app, HEAVY, [(sql, {"u": HEAVY, "o": offset})], runs)[0]
    return [
        [f"keyset (cursor), page {offset // 50 + 1:,}", "list_tasks", ms(keyset)],
        [f"OFFSET {offset:,}", "one statement under the policies", ms(by_offset)],
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
    runs = max(1, min(sizes.query_runs, 30))
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
        allow_auto_explain(server)
        app = make_engine(replace(server, user=APP_ROLE, password=None).url(name), Settings())
        planner = plan_engine(server, name)
        # 8e counts statements, not time: as the owner, where v1.0's unbound ORM writes run.
        owner = make_engine(url, Settings(), admin=True)
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
                    f"{rows:,}, v1.1 columns filled before 0009 (FILL in bench/data.py); "
                    f"page of 50, no count, as `{APP_ROLE}` through the policies. Plan: the "
                    "page query list_tasks ran (auto_explain; inside `tasks_page_ids` for a "
                    "search, tags or the priority sort's keyset), rows read = rows its scans "
                    "returned or filtered out; server = median EXPLAIN ANALYZE Planning + "
                    "Execution Time of the statements list_tasks sent (a definer function's "
                    f"query included, {runs} runs); call = list_tasks wall time through the "
                    "app's engine. Goal: a bounded plan, server p50 <= 1 ms.",
                    [
                        *("sort", "order", "filter", "plan", "rows read"),
                        *("server p50 ms", "call p50 ms"),
                    ],
                    variants(app, planner, runs),
                ),
                Table(
                    "8c. Count and search, heaviest owner",
                    f"As `{APP_ROLE}`; plan: the count query that `tasks_count` ran; {runs} "
                    "runs each. Goal: p50 <= 10 ms each.",
                    ["what", "plan", "server p50 ms", "call p50 ms"],
                    count_and_search(app, planner, runs),
                ),
                Table(
                    "8d. Page 1,000: keyset against OFFSET",
                    f"Pages of 50, newest first, heaviest owner, as `{APP_ROLE}`; {runs} runs "
                    "each; both return the same first row (asserted).",
                    ["page 1,000 by", "how", "server p50 ms"],
                    keyset_vs_offset(app, runs),
                ),
                Table(
                    "8e. Round trips per create + update + delete",
                    "Statements (and COMMITs) sent for one create, one update and one delete, "
                    "each in its own request, SET_CONFIG being the user's set_config that "
                    "row-level security needs per transaction (revision 0010); the pool's "
                    "pre-ping and psycopg2's BEGIN come on top, the same for both.",
                    ["code", "sent", "what"],
                    round_trips(owner),
                ),
            ]
        finally:
            for engine in (app, planner, owner):
                engine.dispose()
    return tables
