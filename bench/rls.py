"""9. The list as the app role, through row-level security: list_tasks (revision 0012's
definer functions) beside the same query under the policies alone, beside the owner's
query without policies (a reference) and the upstream app's naive one, in one run."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session

from bench.data import FIVE, RARE_TAG, load_tasks, user_id
from bench.harness import Sizes, median, ms, pct, ratio
from bench.listing import captured
from bench.plans import (
    allow_auto_explain,
    explain_all,
    index_conditions,
    nested_plans,
    page_plan,
    plan_engine,
    rows_read,
    shape,
    touches_tasks,
)
from bench.report import Table
from models import Settings, list_tasks, make_engine
from models.cursor import seal, unseal
from models.listing import ListQuery, _context, _secret
from models.security import APP_ROLE, bind_user
from models.task import Priority, TaskRead
from tests.support import PgServer, migrate

BUDGET = 3.0  # seconds per series at most (then fewer than query_runs, at least 20)
WARMUP_FACTOR = 10  # a fresh connection's caches (policies, plans) warm up over many calls
PAGE = 50
HEAVY = user_id(1)
LIST, POLICIES, OWNER, NAIVE = (
    "list_tasks (0012)",
    "policies only (v1.1's query)",
    "owner, no policy (reference)",
    "upstream: ILIKE + OFFSET",
)
# The variants of issue 19: label -> list_tasks' arguments.
VARIANTS: dict[str, dict[str, Any]] = {
    "no filter": {},
    f"search, 5 matches ({FIVE})": {"search": FIVE},
    "search, 1% (milk)": {"search": "milk"},
    "tags, 20% (urgent)": {"tags": ["urgent"]},
    f"tags, 5 ({RARE_TAG})": {"tags": [RARE_TAG]},
    "priority=high": {"priority": "high"},
    "by priority, middle page": {"sort_by": "priority", "sort_order": "asc", "middle": True},
}
SORTS = ("created_at", "due_date", "priority", "title")
SET_USER = text("SELECT set_config('app.user_id', :u, true)")
KEY_TYPE = {"created_at": "timestamptz", "due_date": "timestamptz", "title": "text"}


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


@dataclass
class Query:
    """One list request: list_tasks' arguments, and the cursor's position if it has one."""

    arguments: dict[str, Any]
    after: tuple[Any, int] | None = None

    @property
    def sort_by(self) -> str:
        return str(self.arguments.get("sort_by", "created_at"))

    @property
    def desc(self) -> bool:
        return bool(self.arguments.get("sort_order", "desc") == "desc")


def plain_sql(query: Query, count: bool = False) -> tuple[str, dict[str, Any]]:
    """The query as v1.1 sent it (one statement on tasks, filters in its WHERE; a search of
    3+ characters through a MATERIALIZED CTE), without the definer functions."""
    where: list[str] = ["user_id = %(u)s"]
    params: dict[str, Any] = {"u": HEAVY}
    args = query.arguments
    if "priority" in args:
        where.append("priority = CAST(%(priority)s AS task_priority)")
        params["priority"] = args["priority"]
    if "tags" in args:
        where.append("tags && CAST(%(tags)s AS text[])")
        params["tags"] = args["tags"]
    if "search" in args:
        where.append("(title ILIKE %(pattern)s OR description ILIKE %(pattern)s)")
        params["pattern"] = f"%{args['search']}%"
    if count:
        return f"SELECT count(*) FROM tasks WHERE {' AND '.join(where)}", params
    key, direction = query.sort_by, "DESC" if query.desc else "ASC"
    if query.after is not None:
        cast = KEY_TYPE.get(key, "task_priority")
        past = "<" if query.desc else ">"
        where.append(f"({key}, id) {past} (CAST(%(key)s AS {cast}), %(id)s)")
        params.update(key=str(query.after[0]), id=query.after[1])
    order = f"ORDER BY {key} {direction}, id {direction} LIMIT {PAGE + 1}"
    if len(args.get("search", "")) >= 3:
        return (
            f"WITH m AS MATERIALIZED (SELECT * FROM tasks WHERE {' AND '.join(where)}) "
            f"SELECT * FROM m {order}",
            params,
        )
    return f"SELECT * FROM tasks WHERE {' AND '.join(where)} {order}", params


def naive_sql(search: str) -> list[tuple[str, dict[str, Any]]]:
    """The upstream app's search (its get_tasks_filtered, paged with OFFSET) and its count."""
    where = "user_id = %(u)s AND (title ILIKE %(p)s OR description ILIKE %(p)s)"
    params = {"u": HEAVY, "p": f"%{search}%"}
    return [
        (
            f"SELECT * FROM tasks WHERE {where} ORDER BY created_at DESC LIMIT {PAGE} OFFSET 0",
            params,
        ),
        (f"SELECT count(*) FROM tasks WHERE {where}", params),
    ]


def run_sql(engine: Engine, statements: list[tuple[str, dict[str, Any]]], bind: bool) -> None:
    """Run the statements in a new Session (bound to the user for the app role), the page's
    rows validated as list_tasks does (TaskRead), so that only the queries differ."""
    with Session(engine) as session:
        if bind:
            bind_user(session, HEAVY)
        for sql, params in statements:
            found = session.connection().exec_driver_sql(sql, params)
            if sql.startswith("SELECT count"):
                found.scalar_one()
            else:
                [TaskRead.model_validate(dict(row)) for row in found.mappings()]


def list_statements(engine: Engine, query: Query, count: bool) -> list[tuple[str, Any]]:
    """The statements list_tasks sends for this query (page, then the count if asked)."""
    with Session(engine) as session, captured(engine) as sent:
        list_tasks(session, HEAVY, with_count=count, **cursor_arguments(session, query))
    return [(sql, params) for sql, params in sent if touches_tasks(sql)]


def cursor_arguments(session: Session, query: Query) -> dict[str, Any]:
    """list_tasks' arguments, with the query's position sealed into a cursor."""
    args = dict(query.arguments)
    if query.after is not None:
        context = _context(HEAVY, ListQuery.model_validate(args))
        args["cursor"] = seal(_secret(session), context, query.after[0], query.after[1])
    return args


def inner_plan(engine: Engine, query: Query) -> dict[str, Any]:
    """The plan of the page query list_tasks ran (auto_explain: tasks_page_ids' own, or the
    direct read's), as the app role."""

    def call() -> None:
        with Session(engine) as session:
            list_tasks(session, HEAVY, **cursor_arguments(session, query))

    return page_plan(nested_plans(engine, call))


def describe(root: dict[str, Any], tasks: int) -> tuple[str, str, str]:
    """(plan chain, what the index condition holds beyond user_id, rows read of the user's)."""
    conditions = index_conditions(root)
    narrow = [c for c in conditions if "user_id" not in c or " AND " in c]
    cond = "; ".join(sorted({c.split(":", 1)[0] for c in narrow})) if narrow else "user_id only"
    return shape(root), cond, f"{rows_read(root):,} of {tasks:,}"


def middle(engine: Engine, sort_by: str, desc: bool) -> tuple[Any, int]:
    """The heaviest owner's middle row in this order: (sort key, id)."""
    direction = "DESC" if desc else "ASC"
    with engine.connect() as conn:
        conn.execute(SET_USER, {"u": HEAVY})
        row = conn.execute(
            text(
                f"SELECT {sort_by}, id FROM tasks WHERE user_id = :u AND {sort_by} IS NOT NULL "
                f"ORDER BY {sort_by} {direction}, id {direction} "
                "OFFSET (SELECT count(*) / 2 FROM tasks WHERE user_id = :u) LIMIT 1"
            ),
            {"u": HEAVY},
        ).one()
        conn.rollback()
    return (Priority(row[0]) if sort_by == "priority" else row[0]), row[1]


def run(server: PgServer, sizes: Sizes) -> list[Table]:
    rows = max(sizes.rows)
    runs = max(3, min(sizes.query_runs, 30))
    with server.database("rls") as name:
        migrate(server.url(name), "0008")  # the v1.1 columns; the indexes built after COPY
        load_tasks(server.dsn(name), rows, sizes.users, v11=True)
        migrate(server.url(name))
        allow_auto_explain(server)
        owner = make_engine(server.url(name), Settings(), admin=True)  # the reference
        app = make_engine(replace(server, user=APP_ROLE, password=None).url(name), Settings())
        planner = plan_engine(server, name)
        try:
            with owner.connect() as conn:
                tasks = conn.execute(
                    text("SELECT count(*) FROM tasks WHERE user_id = :u"), {"u": HEAVY}
                ).scalar_one()
            tables = [
                candidates(owner, app, planner, tasks, rows, sizes, runs),
                sorts(app, planner, owner, tasks, rows, sizes, runs),
            ]
            tables[0].notes += costs(app, sizes)
        finally:
            for engine in (owner, app, planner):
                engine.dispose()
    return tables


def candidates(
    owner: Engine, app: Engine, planner: Engine, tasks: int, rows: int, sizes: Sizes, runs: int
) -> Table:
    table = Table(
        "9a. The list as the app role: candidates side by side",
        f"One table of {rows:,} rows at head ({sizes.users} users, Zipf-skewed; v1.1 columns as "
        f"in 8, and five of the heaviest owner's tasks holding `{FIVE}` and the tag "
        f"`{RARE_TAG}`); the heaviest owner ({tasks:,} tasks), a page of {PAGE}. "
        f"*{LIST}*: `list_tasks` as `{APP_ROLE}`: a search, tags or the priority sort's "
        "keyset from `tasks_page_ids` (SECURITY DEFINER) and the rows by id through the "
        "policies, every other page through the policies directly; the count from "
        f"`tasks_count`. *{POLICIES}*: the same page as "
        f"one plain statement on `tasks` as `{APP_ROLE}`, the policies alone. *{OWNER}*: that "
        "statement as the tables' owner, whom no policy restricts (a reference only). "
        f"*{NAIVE}*: the upstream app's search (ILIKE, ORDER BY, LIMIT/OFFSET) and its "
        f"count, as `{APP_ROLE}`. Each call a new Session (the app role's bound to the user). "
        "Plan: the page query's node chain (for list_tasks the one it ran, by auto_explain: "
        "inside the function where it used it), what its index condition holds beyond "
        "`user_id`, and the rows it read. "
        f"Server = median EXPLAIN ANALYZE Planning + Execution Time ({runs} runs); p50/p99 = "
        f"call wall time, the candidates taking turns ({sizes.warmup * WARMUP_FACTOR} warm-up "
        f"rounds, up to {sizes.query_runs} rounds). `+ count`: the page and its count.",
        [
            *("variant", "candidate", "plan", "index condition narrows to", "rows read"),
            *("server ms", "p50 ms", "p99 ms", f"p50 vs {LIST}"),
        ],
    )
    for label, arguments in VARIANTS.items():
        args = {k: v for k, v in arguments.items() if k != "middle"}
        query = Query({**args, "limit": PAGE})
        if arguments.get("middle"):
            query.after = middle(owner, query.sort_by, query.desc)
        for count in (False, True):
            if count and arguments.get("middle"):
                continue
            measure_variant(
                table, label + (" + count" if count else ""), query, count,
                (owner, app, planner), tasks, sizes, runs,
            )  # fmt: skip
    return table


def measure_variant(
    table: Table,
    label: str,
    query: Query,
    count: bool,
    engines: tuple[Engine, Engine, Engine],
    tasks: int,
    sizes: Sizes,
    runs: int,
) -> None:
    owner, app, planner = engines
    plain = [plain_sql(query)] + ([plain_sql(query, count=True)] if count else [])

    def listed() -> None:
        with Session(app) as session:
            list_tasks(session, HEAVY, with_count=count, **cursor_arguments(session, query))

    calls: dict[str, Callable[[], None]] = {
        LIST: listed,
        POLICIES: lambda: run_sql(app, plain, bind=True),
        OWNER: lambda: run_sql(owner, plain, bind=False),
    }
    search = query.arguments.get("search")
    if search and query.after is None:
        calls[NAIVE] = lambda: run_sql(app, naive_sql(search), bind=True)
    series = interleaved(calls, sizes)
    base = median(series[LIST])
    for candidate in calls:
        if candidate == LIST:
            server, _ = explain_all(app, HEAVY, list_statements(app, query, count), runs)
            root = inner_plan(planner, query)
        else:
            engine = owner if candidate == OWNER else app
            sql = naive_sql(str(search)) if candidate == NAIVE else plain
            server, root = explain_all(engine, HEAVY, sql, runs)
        chain, cond, read = describe(root, tasks)
        p50 = median(series[candidate])
        table.rows.append(
            [
                *(label, candidate, chain, cond, read, ms(server), ms(p50)),
                *(ms(pct(series[candidate], 99)), ratio(p50, base)),
            ]
        )


def sorts(
    app: Engine, planner: Engine, owner: Engine, tasks: int, rows: int, sizes: Sizes, runs: int
) -> Table:
    table = Table(
        "9b. Every sort as the app role: the page without its count",
        f"`list_tasks` as `{APP_ROLE}`, heaviest owner ({tasks:,} tasks of {rows:,}), no "
        f"filter, a page of {PAGE}: the first page, and the page after the owner's middle task "
        f"(a cursor). Server = median Planning + Execution Time of the statements list_tasks "
        f"sends ({runs} runs; a definer function's query included); plan = the page query "
        "(the function's, for the priority sort's later pages). Goal: <= 0.5 ms at the "
        "server for every sort.",
        ["sort", "order", "page", "plan", "rows read", "server ms", "p50 ms", "p99 ms"],
    )
    for sort_by in SORTS:
        for order in ("asc", "desc"):
            for page in ("first", "middle"):
                query = Query({"sort_by": sort_by, "sort_order": order, "limit": PAGE})
                if page == "middle":
                    query.after = middle(owner, sort_by, order == "desc")

                def call(query: Query = query) -> None:
                    with Session(app) as session:
                        list_tasks(session, HEAVY, **cursor_arguments(session, query))

                series = interleaved({"list": call}, replace(sizes, warmup=sizes.warmup // 5))
                server, _ = explain_all(app, HEAVY, list_statements(app, query, False), runs)
                chain, _, read = describe(inner_plan(planner, query), tasks)
                samples = series["list"]
                table.rows.append(
                    [
                        *(sort_by, order, page, chain, read, ms(server)),
                        *(ms(median(samples)), ms(pct(samples, 99))),
                    ]
                )
    return table


def costs(engine: Engine, sizes: Sizes) -> list[str]:
    """The cursor's sealing and opening, and set_config per transaction."""
    query = ListQuery(sort_by="title", limit=PAGE)
    context = _context(HEAVY, query)
    with Session(engine) as session:
        secret = _secret(session)
    title, n = "x" * 200, max(sizes.query_runs * 20, 1000)
    start = time.perf_counter()
    cursors = [seal(secret, context, title, i) for i in range(n)]
    sealed = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for cursor in cursors:
        unseal(secret, context, cursor)
    opened = (time.perf_counter() - start) / n
    bound, unbound, server = set_config_cost(engine, sizes)
    return [
        f"- The cursor (AES-SIV, models/cursor.py), a 200-character title sort key: sealing "
        f"{sealed * 1e6:.1f} µs, opening {opened * 1e6:.1f} µs (mean of {n:,}). Goal <= 0.05 ms.",
        f"- `set_config('app.user_id', ..., true)` per transaction: p50 {bound - unbound:.3f} ms "
        f"(empty transaction bound {bound:.3f} ms vs unbound {unbound:.3f} ms); server "
        f"execution of `SELECT set_config(...)`: {server:.4f} ms.",
    ]


def set_config_cost(engine: Engine, sizes: Sizes) -> tuple[float, float, float]:
    """(bound p50, unbound p50, server ms) of a SELECT 1 transaction."""

    def transaction(bind: bool) -> Callable[[], None]:
        def call() -> None:
            with Session(engine) as session:
                if bind:
                    bind_user(session, HEAVY)
                session.execute(text("SELECT 1"))
                session.commit()

        return call

    runs = replace(sizes, query_runs=max(sizes.query_runs * 5, 20))
    series = interleaved({"bound": transaction(True), "unbound": transaction(False)}, runs)
    with engine.connect() as conn:
        found = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) SELECT set_config('app.user_id', 'u', true)")
        )
        server = found.scalar_one()[0]["Execution Time"]
        conn.rollback()
    return median(series["bound"]) * 1000, median(series["unbound"]) * 1000, server
