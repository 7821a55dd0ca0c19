"""Plans as the app role: the statements a call runs, nested ones included, as PostgreSQL
executed them (auto_explain, sent back to the client as NOTICEs), and how to read them.

The list's page runs inside `tasks_page_ids` (SECURITY DEFINER, revision 0012), so the
EXPLAIN of the statement the app sends shows only the function call; auto_explain with
`log_nested_statements` shows the query the function executed, with its actual rows.
The benchmark's throwaway server lets the app role set auto_explain's parameters (GRANT
SET ON PARAMETER, PostgreSQL 15+) for the plan engine's connections only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, create_engine, event, pool, text

from bench.harness import median
from models.security import APP_ROLE
from tests.support import PgServer

AUTO_EXPLAIN = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_timing": "on",
    "auto_explain.log_format": "json",
    "auto_explain.log_level": "notice",
}


def allow_auto_explain(server: PgServer) -> None:
    """Let the app role set auto_explain's parameters on its own connections (this
    throwaway server only; its other connections are not affected)."""
    admin = create_engine(server.url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in AUTO_EXPLAIN:
            conn.exec_driver_sql(f'GRANT SET ON PARAMETER "{name}" TO {APP_ROLE}')
    admin.dispose()


def plan_engine(server: PgServer, dbname: str) -> Engine:
    """An engine as the app role whose every statement's plan comes back as a NOTICE."""
    options = " ".join(f"-c {name}={value}" for name, value in AUTO_EXPLAIN.items())
    url = replace(server, user=APP_ROLE, password=None).url(dbname)
    return create_engine(url, poolclass=pool.NullPool, connect_args={"options": options})


@dataclass
class Plan:
    """One executed statement: its text, its plan tree (EXPLAIN JSON) and its time."""

    query: str
    root: dict[str, Any]
    ms: float


@contextmanager
def captured_plans(engine: Engine) -> Iterator[list[Plan]]:
    """The plans of every statement (nested ones too) that engine's connections run inside."""
    plans: list[Plan] = []

    def collect(conn: Any, *args: Any) -> None:
        notices = conn.connection.dbapi_connection.notices
        for notice in notices:
            _, marker, body = notice.partition("plan:\n")
            if marker:
                found = json.loads(body)
                plans.append(Plan(found["Query Text"], found["Plan"], _duration(notice)))
        del notices[:]

    event.listen(engine, "after_cursor_execute", collect)
    try:
        yield plans
    finally:
        event.remove(engine, "after_cursor_execute", collect)


def _duration(notice: str) -> float:
    head = notice.partition("duration:")[2].strip()
    return float(head.split()[0]) if head else 0.0


def nested_plans(engine: Engine, call: Callable[[], object]) -> list[Plan]:
    """The plans of the statements that call() runs on engine (inner ones first)."""
    with captured_plans(engine) as plans:
        call()
    return plans


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan tree, depth first (InitPlans and CTEs included)."""
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def shape(node: dict[str, Any]) -> str:
    """The plan's main node chain, outermost first ('Limit > Index Scan'): InitPlans (the
    policy's once-per-statement subquery) and one-row Results left out."""
    names = []
    while True:
        names.append(node["Node Type"])
        main = [p for p in node.get("Plans", []) if p.get("Parent Relationship") != "InitPlan"]
        if not main:
            break
        node = main[0]
    return " > ".join(name for name in names if name != "Result") or "Result"


def index_conditions(root: dict[str, Any]) -> list[str]:
    """The index conditions of every index scan in the plan, with the index's name."""
    return [
        f"{node['Index Name']}: {node['Index Cond']}"
        for node in nodes(root)
        if node.get("Index Cond") and node.get("Index Name")
    ]


def rows_read(root: dict[str, Any]) -> int:
    """Rows the plan's index and heap scans produced or removed by a filter: how much of
    the table it read (the user's whole list, or the matches and a page)."""
    total = 0
    for node in nodes(root):
        if "Scan" in node["Node Type"] and "Relation Name" in node:
            loops = node.get("Actual Loops", 1)
            kept = node.get("Actual Rows", 0) * loops
            total += int(kept + node.get("Rows Removed by Filter", 0))
            total += int(node.get("Rows Removed by Index Recheck", 0))
    return total


def page_plan(plans: list[Plan]) -> dict[str, Any]:
    """The plan of the list's page query among a call's plans: the one tasks_page_ids ran,
    or, for a list read through the policies directly, the statement itself (its first
    range, for the due date's two)."""
    return next(p.root for p in plans if "FROM public.tasks" in p.query or "FROM tasks " in p.query)


def touches_tasks(sql: str) -> bool:
    """A statement of the list (the page, its count, the definer functions), not set_config."""
    return "tasks" in sql and "set_config" not in sql


def explain_all(
    engine: Engine, user: str, statements: list[tuple[str, Any]], runs: int
) -> tuple[float, dict[str, Any]]:
    """(median server seconds of all the statements together, planning and execution, the
    first one's plan) as engine's role, user set in each transaction (the owner ignores it:
    no policy restricts the owner). Planning counts: a definer function plans its query
    inside its execution. Statements as the driver takes them (captured, or %(name)s)."""
    times: list[float] = []
    root: dict[str, Any] = {}
    for _ in range(runs):
        total = 0.0
        with engine.connect() as conn:
            conn.execute(text("SELECT set_config('app.user_id', :u, true)"), {"u": user})
            for i, (sql, params) in enumerate(statements):
                found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
                plan = found.scalar_one()[0]
                total += (plan["Planning Time"] + plan["Execution Time"]) / 1000
                root = plan["Plan"] if i == 0 else root
            conn.rollback()
        times.append(total)
    return median(times), root
