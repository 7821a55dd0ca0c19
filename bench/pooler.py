"""7. The list and CRUD through PgBouncer (transaction mode) against direct, in the same run,
as the app role through the policies."""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import URL, Engine
from sqlmodel import Session

from bench.harness import Sizes, median, ms, pct, ratio
from bench.report import Table
from models import (
    TaskCreate,
    TaskUpdate,
    create_task,
    delete_task,
    get_task,
    list_tasks,
    update_task,
)
from models.db import make_engine
from models.security import APP_ROLE
from models.settings import Settings
from tests import pgbouncer as pgb
from tests.support import PgServer, migrate

OPS = ("list", "create", "get", "update", "delete")
SEEDED = 60  # tasks each user has before the run: the list reads a page of 50 of them
SEED = """
INSERT INTO tasks (user_id, title, tags)
SELECT 'bench-' || n, 'seeded ' || i, ARRAY['t' || i %% 3]
FROM generate_series(0, %(users)s - 1) AS n, generate_series(1, %(tasks)s) AS i
"""
ROUNDS = 2  # direct and pooled alternate this many times, so drift hits both alike


def crud(engine: Engine, threads: int, rounds: int) -> dict[str, list[float]]:
    """`threads` users each run `rounds` of list (a page of 50, newest first, no count),
    create, get, update, delete (a Session per call, as a request would); seconds per call,
    by operation."""
    times: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def timed(op: str, action: Callable[..., Any], *args: object, **kwargs: object) -> Any:
        start = time.perf_counter()
        with Session(engine) as session:
            result = action(session, *args, **kwargs)
        elapsed = time.perf_counter() - start
        with lock:
            times[op].append(elapsed)
        return result

    def user(n: int) -> None:
        owner = f"bench-{n}"
        for i in range(rounds):
            timed("list", list_tasks, owner, limit=50)
            task_id = timed("create", create_task, owner, TaskCreate(title=f"t{i}")).id
            timed("get", get_task, owner, task_id)
            timed("update", update_task, owner, task_id, TaskUpdate(complete=True))
            timed("delete", delete_task, owner, task_id)

    workers = [threading.Thread(target=user, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return times


def run(server: PgServer, sizes: Sizes) -> Table:
    table = Table(
        "7. The list and CRUD through PgBouncer",
        f"The app's engine (`make_engine`: pool 5 + 15, pre-ping) as `{APP_ROLE}`, through the "
        "policies, on the same database, directly and through Debian's PgBouncer in "
        "transaction mode (default_pool_size 20, 127.0.0.1, logging in to the server as "
        f"`{APP_ROLE}`) in front of it. N threads, one user each ({SEEDED} tasks seeded), each "
        f"run {sizes.crud_rounds} rounds of list (`list_tasks`, a page of 50, no count), "
        "create, get, update, delete, a new Session per call; direct and pooled alternate "
        f"{ROUNDS} times and their calls are pooled. p50/p99 per call; `pooled / direct` "
        "compares the p50s.",
        [
            *("threads", "operation", "direct p50 ms", "direct p99 ms", "pooled p50 ms"),
            *("pooled p99 ms", "pooled / direct", "calls each"),
        ],
    )
    if pgb.binary() is None:
        table.notes.append(f"Not run: {pgb.MISSING}.")
        return table
    app_role = replace(server, user=APP_ROLE, password=None)
    with (
        server.database("bench_pooler") as dbname,
        tempfile.TemporaryDirectory(prefix="bench-pgb-") as tmp,
        pgb.running_pgbouncer(app_role, Path(tmp)) as bouncer,
    ):
        migrate(server.url(dbname))
        with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
            conn.execute(SEED, {"users": max(sizes.crud_threads), "tasks": SEEDED})
            conn.execute("VACUUM ANALYZE tasks")
        targets: dict[str, URL] = {
            "direct": app_role.url(dbname),
            "pooled": bouncer.url(dbname),
        }
        for threads in sizes.crud_threads:
            found: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in targets}
            for _ in range(ROUNDS):
                for name, url in targets.items():
                    engine = make_engine(url, Settings())  # the app role, as deployed
                    crud(engine, threads, sizes.warmup)  # warm the pool
                    for op, samples in crud(engine, threads, sizes.crud_rounds).items():
                        found[name][op] += samples
                    engine.dispose()
            for op in OPS:
                direct, pooled = found["direct"][op], found["pooled"][op]
                table.rows.append(
                    [
                        *(str(threads), op, ms(median(direct)), ms(pct(direct, 99))),
                        *(ms(median(pooled)), ms(pct(pooled, 99))),
                        *(ratio(median(pooled), median(direct)), str(len(direct))),
                    ]
                )
    return table
