"""10. Fail closed (issue 18): what setting the user in every transaction costs the list and
the writes (before and after, same run), what the precondition costs an update, and the
side channels that remain, measured."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, pool, text
from sqlmodel import Session

from bench.data import load_tasks, user_id
from bench.harness import Sizes, median, pct
from bench.report import Table
from models import (
    Settings,
    TaskCreate,
    TaskUpdate,
    create_task,
    delete_task,
    get_task,
    list_tasks,
    make_engine,
    update_task,
)
from models.security import APP_ROLE, UNSET_USER, bind_user
from tests.support import PgServer, migrate

ROWS_MAX = 100_000  # enough for a heavy user's full page; the list's scaling is section 4
BEFORE, AFTER, CONTROL = "before", "after", "before (a second engine)"
WRITER = "bench-writer"


def interleaved(calls: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, Any]:
    """Wall times of each call, taking turns call by call (drift and the neighbours' load
    hit every series alike), after warmup rounds."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(runs):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            samples[label].append(time.perf_counter() - start)
    return samples


def operations(engine: Engine, owner: str) -> dict[str, Callable[[], object]]:
    """The app's calls, a new Session each, as a request makes them."""
    made: list[int] = []

    def empty_unbound() -> None:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            session.commit()

    def list_bound() -> None:
        with Session(engine) as session:
            bind_user(session, owner)
            list_tasks(session, owner, limit=50)

    def list_unbound() -> None:
        with Session(engine) as session:  # get_session: the function binds for the call
            list_tasks(session, owner, limit=50)

    def create() -> None:
        with Session(engine) as session:
            made.append(create_task(session, WRITER, TaskCreate(title="t")).id or 0)

    def update() -> None:
        with Session(engine) as session:
            update_task(session, WRITER, made[-1], TaskUpdate(complete=True))

    def delete() -> None:
        with Session(engine) as session:
            delete_task(session, WRITER, made.pop())

    return {
        "empty transaction, unbound session": empty_unbound,
        "list_tasks, bound session (get_user_session)": list_bound,
        "list_tasks, unbound session (get_session)": list_unbound,
        "create_task": create,
        "update_task": update,
        "delete_task": delete,
    }


def precondition(engine: Engine, sizes: Sizes) -> tuple[list[float], list[float]]:
    """(blind update, update with expected_updated_at) wall times on the same task."""
    with Session(engine) as session:
        task = create_task(session, WRITER, TaskCreate(title="guarded"))
    state = {"seen": task.updated_at}

    def blind() -> None:
        with Session(engine) as session:
            update_task(session, WRITER, task.id or 0, TaskUpdate(complete=True))

    def guarded() -> None:
        with Session(engine) as session:
            done = update_task(
                session,
                WRITER,
                task.id or 0,
                TaskUpdate(complete=False),
                expected_updated_at=state["seen"],
            )
            assert done is not None
            state["seen"] = done.updated_at

    def reread() -> None:  # the blind update moved updated_at: the client reads again
        with Session(engine) as session:
            found = get_task(session, WRITER, task.id or 0)
            state["seen"] = found.updated_at if found else None

    series = interleaved(
        {"blind": blind, "reread": reread, "guarded": guarded}, sizes.query_runs, sizes.warmup
    )
    return series["blind"], series["guarded"]


def reset_cost(server: PgServer, dbname: str, runs: int) -> tuple[float, float]:
    """(p50 extra ms of the unbound reset sent with the statement, p50 extra ms of it as a
    round trip of its own): `SELECT 1` against `UNSET_USER; SELECT 1` against
    set_config + `SELECT 1`, taking turns on one connection of the app role, no pool and no
    ORM in between (what the end-to-end rows above cannot resolve on a busy machine)."""
    app = replace(server, user=APP_ROLE, password=None)
    engine = create_engine(app.url(dbname), poolclass=pool.NullPool)
    conn = engine.raw_connection()  # psycopg2, the app's driver
    plain: list[float] = []
    merged: list[float] = []
    separate: list[float] = []
    try:
        cur = conn.cursor()
        for i in range(runs):
            for sink, statements in (
                (plain, ["SELECT 1"]),
                (merged, [UNSET_USER + "SELECT 1"]),
                (separate, [UNSET_USER, "SELECT 1"]),
            ):
                start = time.perf_counter()
                for statement in statements:
                    cur.execute(statement)
                cur.fetchall()
                sink.append(time.perf_counter() - start)
            if i % 100 == 99:
                conn.rollback()
    finally:
        conn.close()
        engine.dispose()
    base = median(plain)
    return (median(merged) - base) * 1000, (median(separate) - base) * 1000


def side_channels(server: PgServer, dbname: str) -> list[str]:
    """What another session of the app role sees, measured: pg_stat_activity's text of a
    running statement (psycopg2's client-side binding, psycopg 3's server-side binding,
    track_activities off for the role), and the planner's row estimates."""
    app = replace(server, user=APP_ROLE, password=None)
    admin = create_engine(server.url(dbname), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    watcher = create_engine(app.url(dbname), poolclass=pool.NullPool)
    seen_sql = text(
        "SELECT coalesce(query, '') FROM pg_stat_activity WHERE usename = current_user "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "AND query LIKE '%pg_sleep%'"
    )

    def seen_by_watcher(run: Callable[[], object]) -> str:
        run()
        with watcher.connect() as conn:
            return " | ".join(conn.execute(seen_sql).scalars()) or "(nothing)"

    statement = "SELECT pg_sleep(0), 'divorce lawyer call' AS title"
    client = create_engine(app.url(dbname), poolclass=pool.NullPool)
    with client.connect() as conn:
        psycopg2_text = seen_by_watcher(lambda: conn.exec_driver_sql(statement))
    with psycopg.connect(app.dsn(dbname)) as conn3:
        psycopg3_text = seen_by_watcher(
            lambda: conn3.execute("SELECT pg_sleep(0), %s AS title", ("divorce lawyer call",))
        )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER ROLE {APP_ROLE} SET track_activities = off")
    try:
        with client.connect() as conn:
            off_text = seen_by_watcher(lambda: conn.exec_driver_sql(statement))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER ROLE {APP_ROLE} RESET track_activities")
    with watcher.begin() as conn:
        conn.execute(text("SELECT set_config('app.user_id', 'mallory', true)"))
        estimates = {
            who: conn.execute(
                text("EXPLAIN (FORMAT JSON) SELECT * FROM tasks WHERE user_id = :u"), {"u": who}
            ).scalar_one()[0]["Plan"]["Plan Rows"]
            for who in (user_id(1), "nobody")
        }
    for engine in (admin, watcher, client):
        engine.dispose()
    return [
        "Side channels, measured as `todo_app` bound to a user who owns no rows (`mallory`), "
        "while another `todo_app` session runs a statement holding a title:",
        "",
        f"- `pg_stat_activity.query`, psycopg2 (binds on the client): `{psycopg2_text}`",
        f"- psycopg 3, server-side binding: `{psycopg3_text}`",
        f"- psycopg2 with `ALTER ROLE {APP_ROLE} SET track_activities = off`: `{off_text}`",
        f"- planner estimate (`EXPLAIN`) of another user's rows, under RLS: {user_id(1)} "
        f"{estimates[user_id(1)]:,} rows, a user with none {estimates['nobody']:,} "
        "(the statistics of the whole table: how many tasks a user has)",
    ]


def run(server: PgServer, sizes: Sizes) -> Table:
    rows = min(max(sizes.rows), ROWS_MAX)
    table = Table(
        "10. Fail closed (issue 18)",
        f"{rows:,} tasks at head ({sizes.users} users, Zipf-skewed, as in 4), as `{APP_ROLE}` "
        "through row-level security. *before*: the app engine without the per-transaction "
        "user (`make_engine(..., admin=True)`, which skips it); *after*: the app engine, "
        "whose every transaction sets its user ('' when unbound) before its first "
        "statement. A new Session per call; the two engines take turns call by call, "
        f"{sizes.warmup} warm-up rounds, then {sizes.query_runs} rounds. The list is the "
        f"heaviest user's first page of 50. Goal: <= 0.05 ms more per unbound transaction. "
        "*noise*: a second *before* engine, in the same turns: what two identical engines "
        "(each with its own server connections) differ by.",
        [
            "operation",
            "before p50",
            "before p99",
            "after p50",
            "after p99",
            "after - before p50",
            "noise p50",
        ],
    )
    with server.database("failclosed") as name:
        migrate(server.url(name))
        load_tasks(server.dsn(name), rows, sizes.users)
        url = replace(server, user=APP_ROLE, password=None).url(name)
        engines = {
            BEFORE: make_engine(url, Settings(), admin=True),
            AFTER: make_engine(url, Settings()),
            CONTROL: make_engine(url, Settings(), admin=True),
        }
        try:
            ops = {label: operations(engine, user_id(1)) for label, engine in engines.items()}
            for op in ops[AFTER]:
                calls = {label: ops[label][op] for label in engines}
                series = interleaved(calls, sizes.query_runs, sizes.warmup)
                before, after = series[BEFORE], series[AFTER]
                table.rows.append(
                    [
                        op,
                        f"{median(before) * 1000:.3f}",
                        f"{pct(before, 99) * 1000:.3f}",
                        f"{median(after) * 1000:.3f}",
                        f"{pct(after, 99) * 1000:.3f}",
                        f"{(median(after) - median(before)) * 1000:+.3f} ms",
                        f"{(median(series[CONTROL]) - median(before)) * 1000:+.3f} ms",
                    ]
                )
            merged, separate = reset_cost(server, name, max(sizes.query_runs * 20, 50))
            table.notes.append(
                f"- The unbound reset alone (`set_config('app.user_id', '', true)`), on one "
                f"connection, {max(sizes.query_runs * 20, 50):,} turns: **+{merged:.4f} ms** "
                f"at p50 sent in front of the transaction's first statement (what the app "
                f"does: one round trip), +{separate:.4f} ms as a round trip of its own."
            )
            blind, guarded = precondition(engines[AFTER], sizes)
            table.notes.append(
                f"- `update_task` with `expected_updated_at` (one guarded UPDATE in a CTE) vs "
                f"blind, same task, taking turns: p50 {median(guarded) * 1000:.3f} vs "
                f"{median(blind) * 1000:.3f} ms, p99 {pct(guarded, 99) * 1000:.3f} vs "
                f"{pct(blind, 99) * 1000:.3f} ms."
            )
            table.notes += ["", *side_channels(server, name)]
        finally:
            for engine in engines.values():
                engine.dispose()
    return table
