"""4. The list query: v1.0's list at revision 0001's indexes (before) and head's (after), 10k to
1M rows, as the app role through the policies (the owner's figure beside it, a reference)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import Engine, event, text
from sqlmodel import Session

from bench.data import load_tasks, share, user_id
from bench.harness import Sizes, median, ms, pct, ratio
from bench.report import Table
from models import Settings, make_engine
from models.security import APP_ROLE, bind_user
from tests.support import PgServer, migrate

SET_USER = text("SELECT set_config('app.user_id', :u, true)")
BUDGET = 3.0  # seconds of list_tasks calls per case at most (then fewer than query_runs)
RANKS = {"heaviest": 1, "typical": 100}  # owners by rank: most tasks, and a median-ish one
# A planner setting for storage where random reads cost about as much as sequential ones
# (SSDs, a cached working set); measured at head on the largest table only.
SSD = "head, random_page_cost=1.1"


@dataclass(frozen=True)
class Case:
    rows: int
    who: str
    complete: bool | None


@dataclass
class Result:
    plan: str
    server: float  # EXPLAIN ANALYZE execution time as the app role, median (s)
    client: list[float]  # wall times as the app role (s)
    owner: list[float]  # the same calls as the tables' owner, no policy (s): a reference
    explain: str


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and parameters) that the engine sends while inside."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def shape(node: dict[str, Any]) -> str:
    """The plan's node chain, outermost first: 'Limit > Index Scan'."""
    names = [node["Node Type"]]
    while node.get("Plans"):
        node = node["Plans"][0]
        names.append(node["Node Type"])
    return " > ".join(names)


V1_COLUMNS = ("id", "user_id", "title", "description", "complete", "created_at", "updated_at")


def list_v1(session: Session, owner: str, complete: bool | None) -> list[Any]:
    """The v1.0 list query (newest first, page of 50), as list_tasks sent it before v1.1.

    Kept here so that this benchmark times one fixed statement with revision 0001's
    indexes and with head's (benchmark 8 measures today's list_tasks).
    """
    tasks = sa.table("tasks", *(sa.column(c) for c in V1_COLUMNS))
    stmt = sa.select(*tasks.c).where(tasks.c.user_id == owner)
    if complete is not None:
        stmt = stmt.where(tasks.c.complete == complete)
    stmt = stmt.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(50)
    return list(session.execute(stmt))


def measure(app: Engine, owner: Engine, case: Case, sizes: Sizes) -> Result:
    """list_v1 for the case's owner: as the app role (bound to the user) and as the tables'
    owner, taking turns call by call; the app role's plan and server time."""
    user = user_id(RANKS[case.who])

    def call(engine: Engine, bind: bool) -> None:
        with Session(engine) as session:
            if bind:
                bind_user(session, user)
            list_v1(session, user, case.complete)

    for _ in range(sizes.warmup):
        call(app, True)
        call(owner, False)
    client: list[float] = []
    reference: list[float] = []
    deadline = time.perf_counter() + BUDGET
    least = min(20, sizes.query_runs)
    while len(client) < sizes.query_runs and (
        len(client) < least or time.perf_counter() < deadline
    ):
        for engine, bind, samples in ((app, True, client), (owner, False, reference)):
            start = time.perf_counter()
            call(engine, bind)
            samples.append(time.perf_counter() - start)
    with captured(app) as sent:
        call(app, True)
    statement, params = next(s for s in sent if "FROM tasks" in s[0])
    server: list[float] = []
    with app.connect() as conn:
        conn.execute(SET_USER, {"u": user})
        for _ in range(max(5, sizes.query_runs // 20)):
            found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params)
            plan = found.scalar_one()[0]
            server.append(plan["Execution Time"] / 1000)
        text = conn.exec_driver_sql(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", params
        ).scalars()
        explain = "\n".join(text)
        conn.rollback()
    return Result(shape(plan["Plan"]), median(server), client, reference, explain)


INDEXES = """
SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'
AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'tasks'::regclass)
"""


def index_definitions(dsn: str) -> dict[str, str]:
    """The tasks table's indexes (not those of constraints): name -> CREATE INDEX."""
    with psycopg.connect(dsn) as conn:
        return {name: sql for name, sql in conn.execute(INDEXES).fetchall()}


def use_indexes(dsn: str, wanted: dict[str, str]) -> None:
    """Give tasks exactly these indexes (built on the loaded rows), then ANALYZE."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in index_definitions(dsn).keys() - wanted.keys():
            conn.execute(f"DROP INDEX {name}")
        for name in wanted.keys() - index_definitions(dsn).keys():
            conn.execute(wanted[name])
        conn.execute("ANALYZE tasks")


def measure_size(
    server: PgServer, rows: int, sizes: Sizes, variants: tuple[str, ...]
) -> dict[tuple[Case, str], Result]:
    """Load rows at head, measure with the indexes of revision 0001, then with head's.

    The table is head's (list_tasks is head's code, whatever columns later revisions add);
    only the indexes differ, as revision 0001 and head build them.
    """
    cases = [Case(rows, who, c) for who in RANKS for c in (None, False)]
    results: dict[tuple[Case, str], Result] = {}
    with server.database("listing") as name, server.database("listing_0001") as at_0001:
        migrate(server.url(at_0001), "0001")
        url = server.url(name)
        app_url = replace(server, user=APP_ROLE, password=None).url(name)
        migrate(url, "head")  # head's table and list_tasks; 0001's indexes for "0001"
        built = {"0001": index_definitions(server.dsn(at_0001))}
        built["head"] = index_definitions(server.dsn(name))
        load_tasks(server.dsn(name), rows, sizes.users)
        for revision in variants:
            if revision in built:
                use_indexes(server.dsn(name), built[revision])
            ssd = {"connect_args": {"options": "-c random_page_cost=1.1"}}
            tuned = ssd if revision == SSD else {}
            app = make_engine(app_url, Settings(), admin=False, **tuned)
            owner = make_engine(url, Settings(), admin=True, **tuned)  # the reference
            try:
                for case in cases:
                    results[case, revision] = measure(app, owner, case, sizes)
            finally:
                app.dispose()
                owner.dispose()
    return results


def run(server: PgServer, sizes: Sizes) -> Table:
    results: dict[tuple[Case, str], Result] = {}
    for rows in sizes.rows:
        ssd = (SSD,) if rows == max(sizes.rows) else ()
        results.update(measure_size(server, rows, sizes, ("0001", "head", *ssd)))
    table = Table(
        "4. The list query",
        "The v1.0 list query (`list_v1`: what `list_tasks(session, user, complete=...)` sent "
        "before contract v1.1; page of 50, newest first) "
        f"through the app's engine (`make_engine`) as `{APP_ROLE}`, through the policies, a "
        "new Session per call bound to the user; the same calls as the tables' owner (no "
        f"policy) take turns with them, a reference only (`owner p50`); {sizes.users} "
        "users, Zipf-skewed (user rank 1 owns ~10% of all tasks, rank 100 ~0.1%), oldest first "
        "(ids grow with created_at, spread over two years), loaded with "
        f"COPY, then VACUUM ANALYZE. Per case: {sizes.warmup} warm-up calls, then up to "
        f"{sizes.query_runs} calls (at most ~{BUDGET:g} s, at least 20); server ms = median "
        "Execution Time of EXPLAIN ANALYZE, as the app role, of the exact statement it sent "
        "(v1.0's list query). 0001 is head's table with the indexes revision 0001 builds "
        "(before the composite ones), head with head's; on the largest table head is measured "
        f"again with the planner setting random_page_cost=1.1 (`{SSD}`, the server's default "
        "is 4). Goal at head: an index scan with no Sort, server p50 <= 1 ms, under 1.5x "
        "growth from the smallest to the largest table.",
        [
            *("rows", "user (tasks)", "complete", "revision", "plan", "server ms", "calls"),
            *("p50 ms", "p99 ms", "p50 vs 0001", "owner p50 ms"),
        ],
    )
    for (case, revision), result in results.items():
        before = median(results[case, "0001"].client)
        p50 = median(result.client)
        tasks = round(case.rows * share(RANKS[case.who], sizes.users))
        table.rows.append(
            [
                f"{case.rows:,}",
                f"rank {RANKS[case.who]} (~{tasks:,})",
                "any" if case.complete is None else str(case.complete).lower(),
                revision,
                result.plan,
                ms(result.server),
                str(len(result.client)),
                ms(p50),
                ms(pct(result.client, 99)),
                ratio(before, p50) if revision != "0001" else "",
                ms(median(result.owner)),
            ]
        )
    small, large = min(sizes.rows), max(sizes.rows)
    for who in RANKS if small < large else ():
        for complete in (None, False):
            a = results[Case(small, who, complete), "head"]
            b = results[Case(large, who, complete), "head"]
            c = results[Case(large, who, complete), SSD]
            table.notes.append(
                f"- growth {small:,} -> {large:,} rows at head, rank {RANKS[who]}, "
                f"complete={complete}: p50 {ratio(median(b.client), median(a.client))}, "
                f"server {ratio(b.server, a.server)}; with random_page_cost=1.1 at "
                f"{large:,}: p50 {ratio(median(c.client), median(a.client))}, "
                f"server {ratio(c.server, a.server)}"
            )
    for revision in ("0001", "head"):
        result = results[Case(large, "heaviest", None), revision]
        table.notes += [
            "",
            f"EXPLAIN ANALYZE as `{APP_ROLE}` at {revision}, {large:,} rows, rank 1, any:",
            "",
            "```",
            result.explain,
            "```",
        ]
    return table
