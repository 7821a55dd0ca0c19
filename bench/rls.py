"""9. Row-level security: the list query with and without RLS, and setting the user per
transaction, in the same run on the same table."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session

from bench.data import load_tasks, share, user_id
from bench.harness import Sizes, median, ms, pct, ratio
from bench.listing import RANKS
from bench.report import Table
from models import Settings, list_tasks, make_engine
from models.security import APP_ROLE, bind_user
from tests.support import PgServer, migrate

BUDGET = 3.0  # seconds per series at most (then fewer than query_runs, at least 20)
WARMUP_FACTOR = 10  # a fresh connection's caches (policies, plans) warm up over many calls
WITHOUT, BOUND, WITH = "owner, no RLS", "owner, no RLS, set_config", "app role, RLS"


def shape(node: dict[str, Any]) -> str:
    """The plan's main node chain, outermost first, InitPlans (the policy's once-per-statement
    subquery) left out; `(user_id in Index Cond)` when the index range is per user."""
    names, per_user = [node["Node Type"]], False
    while True:
        per_user = per_user or "user_id" in node.get("Index Cond", "")
        main = [p for p in node.get("Plans", []) if p.get("Parent Relationship") != "InitPlan"]
        if not main:
            break
        node = main[0]
        names.append(node["Node Type"])
    return " > ".join(names) + (" (user_id in Index Cond)" if per_user else "")


def interleaved(calls: Mapping[str, Callable[[], object]], sizes: Sizes) -> dict[str, list[float]]:
    """Wall times of each call, taking turns call by call (so drift and neighbours' load hit
    every series alike): warm-up first, then up to query_runs rounds within BUDGET each."""
    for _ in range(sizes.warmup * WARMUP_FACTOR):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {label: [] for label in calls}
    deadline = time.perf_counter() + BUDGET * len(calls)
    rounds = 0
    while rounds < sizes.query_runs and (
        rounds < min(20, sizes.query_runs) or time.perf_counter() < deadline
    ):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            samples[label].append(time.perf_counter() - start)
        rounds += 1
    return samples


def listing(engine: Engine, owner: str, complete: bool | None, bind: bool) -> Callable[[], None]:
    def call() -> None:
        with Session(engine) as session:
            if bind:
                bind_user(session, owner)
            list_tasks(session, owner, complete=complete)

    return call


def list_sql(complete: bool | None) -> str:
    """The list query's SQL (as list_tasks builds it), for EXPLAIN."""
    return (
        "SELECT * FROM tasks WHERE user_id = :u"
        + ("" if complete is None else " AND complete = :c")
        + " ORDER BY created_at DESC, id DESC LIMIT 50"
    )


def explain_text(engine: Engine, owner: str) -> str:
    """EXPLAIN ANALYZE of the unfiltered list as the bound app role, as text."""
    with Session(engine) as session:
        bind_user(session, owner)
        found = session.execute(
            text(f"EXPLAIN (ANALYZE, COSTS OFF, BUFFERS) {list_sql(None)}"), {"u": owner}
        )
        return "\n".join(found.scalars())


def plan_of(engine: Engine, owner: str, complete: bool | None, bind: bool) -> tuple[str, float]:
    """(plan shape, median server ms of EXPLAIN ANALYZE) of the list statement, as that role."""
    sql = list_sql(complete)
    server = []
    with Session(engine) as session:
        if bind:
            bind_user(session, owner)
        for _ in range(7):
            found = session.execute(
                text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), {"u": owner, "c": complete}
            )
            plan = found.scalar_one()[0]
            server.append(plan["Execution Time"] / 1000)
    return shape(plan["Plan"]), median(server)


def run(server: PgServer, sizes: Sizes) -> Table:
    rows = max(sizes.rows)
    table = Table(
        "9. Row-level security",
        f"One table of {rows:,} rows at head ({sizes.users} users, Zipf-skewed, loaded as in "
        "4). The same `list_tasks` page (50, newest first) through the app's engine, a new "
        f"Session per call: *{WITHOUT}* connects as the tables' owner, a superuser, whom "
        f"PostgreSQL exempts from every policy; *{BOUND}* is the same with the session bound "
        "to the user, so each call also sends `set_config` first (its round trip, no policy); "
        f"*{WITH}* connects as `{APP_ROLE}`, bound: set_config and the policies. The three "
        f"series take turns call by call, {sizes.warmup * WARMUP_FACTOR} warm-up rounds then up to "
        f"{sizes.query_runs} rounds (at most ~{3 * BUDGET:g} s). Goal: RLS p50 <= 1.10x, "
        "plans still index scans. "
        "Then `set_config` alone: an empty transaction (`SELECT 1`) in a bound vs an "
        f"unbound session, taking turns, up to {sizes.query_runs * 5} rounds; goal <= 0.1 ms "
        "per transaction.",
        [
            "user (tasks)",
            "complete",
            "role",
            "plan",
            "server ms",
            "p50 ms",
            "p99 ms",
            "p50 vs no RLS",
            "p50 vs set_config only",
        ],
    )
    with server.database("rls") as name:
        migrate(server.url(name))
        load_tasks(server.dsn(name), rows, sizes.users)
        owner_engine = make_engine(server.url(name), Settings(), admin=True)
        app_engine = make_engine(
            replace(server, user=APP_ROLE, password=None).url(name), Settings()
        )
        try:
            for rank in RANKS.values():
                owner = user_id(rank)
                tasks = round(rows * share(rank, sizes.users))
                for complete in (None, False):
                    calls = {
                        WITHOUT: listing(owner_engine, owner, complete, bind=False),
                        BOUND: listing(owner_engine, owner, complete, bind=True),
                        WITH: listing(app_engine, owner, complete, bind=True),
                    }
                    series = interleaved(calls, sizes)
                    base, bound = median(series[WITHOUT]), median(series[BOUND])
                    engines = ((WITHOUT, owner_engine), (BOUND, owner_engine), (WITH, app_engine))
                    for label, engine in engines:
                        plan, server_s = plan_of(engine, owner, complete, bind=label != WITHOUT)
                        p50 = median(series[label])
                        table.rows.append(
                            [
                                f"rank {rank} (~{tasks:,})",
                                "any" if complete is None else "false",
                                label,
                                plan,
                                ms(server_s),
                                ms(p50),
                                ms(pct(series[label], 99)),
                                ratio(p50, base),
                                ratio(p50, bound) if label == WITH else "",
                            ]
                        )
            cost = set_config_cost(app_engine, sizes)
            table.notes.append(
                f"- `set_config('app.user_id', ..., true)` per transaction: p50 {cost[0]:.3f} ms "
                f"(empty transaction bound {cost[1]:.3f} ms vs unbound {cost[2]:.3f} ms); "
                f"server execution of `SELECT set_config(...)`: {cost[3]:.4f} ms."
            )
            table.notes += [
                "",
                f"EXPLAIN ANALYZE as `{APP_ROLE}`, {rows:,} rows, rank 1, any (the policy's "
                "subquery is an InitPlan, computed once; user_id stays the Index Cond):",
                "",
                "```",
                explain_text(app_engine, user_id(1)),
                "```",
            ]
        finally:
            owner_engine.dispose()
            app_engine.dispose()
    return table


def set_config_cost(engine: Engine, sizes: Sizes) -> tuple[float, float, float, float]:
    """(bound - unbound p50, bound p50, unbound p50, server ms) of a SELECT 1 transaction."""

    def transaction(bind: bool) -> Callable[[], None]:
        def call() -> None:
            with Session(engine) as session:
                if bind:
                    bind_user(session, "user00001")
                session.execute(text("SELECT 1"))
                session.commit()

        return call

    runs = replace(sizes, query_runs=max(sizes.query_runs * 5, 20))
    series = interleaved({"bound": transaction(True), "unbound": transaction(False)}, runs)
    bound, unbound = series["bound"], series["unbound"]
    with engine.connect() as conn:
        found = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) SELECT set_config('app.user_id', 'u', true)")
        )
        server = found.scalar_one()[0]["Execution Time"]
        conn.rollback()
    b, u = median(bound) * 1000, median(unbound) * 1000
    return b - u, b, u, server
