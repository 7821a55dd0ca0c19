"""7. CRUD through PgBouncer (transaction mode) against direct, in the same run."""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine
from sqlmodel import Session

from bench.harness import Sizes, median, ms, pct, ratio
from bench.report import Table
from models import TaskCreate, TaskUpdate, create_task, delete_task, get_task, update_task
from models.db import make_engine
from models.settings import Settings
from tests import pgbouncer as pgb
from tests.support import PgServer, migrate

OPS = ("create", "get", "update", "delete")
ROUNDS = 2  # direct and pooled alternate this many times, so drift hits both alike


def crud(engine: Engine, threads: int, rounds: int) -> dict[str, list[float]]:
    """`threads` users each run `rounds` of create, get, update, delete (a Session per
    call, as a request would); seconds per call, by operation."""
    times: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def timed(op: str, action: Callable[..., Any], *args: object) -> Any:
        start = time.perf_counter()
        with Session(engine) as session:
            result = action(session, *args)
        elapsed = time.perf_counter() - start
        with lock:
            times[op].append(elapsed)
        return result

    def user(n: int) -> None:
        owner = f"bench-{n}"
        for i in range(rounds):
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
        "7. CRUD through PgBouncer",
        "The app's engine (`make_engine`: pool 5 + 15, pre-ping) on the same database, "
        "directly and through Debian's PgBouncer in transaction mode (default_pool_size 20, "
        f"127.0.0.1) in front of it. N threads each run {sizes.crud_rounds} rounds of "
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
    with (
        server.database("bench_pooler") as dbname,
        tempfile.TemporaryDirectory(prefix="bench-pgb-") as tmp,
        pgb.running_pgbouncer(server, Path(tmp)) as bouncer,
    ):
        migrate(server.url(dbname))
        targets: dict[str, URL] = {"direct": server.url(dbname), "pooled": bouncer.url(dbname)}
        for threads in sizes.crud_threads:
            found: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in targets}
            for _ in range(ROUNDS):
                for name, url in targets.items():
                    engine = make_engine(url, Settings(), admin=True)  # privileged figure
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
