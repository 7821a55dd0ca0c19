"""Users stay isolated under load through the real engine pool (5 + 15 connections)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlmodel import Session

from models import TaskCreate, TaskUpdate, create_task, delete_task, get_task, list_tasks
from models import update_task as update
from models.db import make_engine
from models.security import APP_ROLE
from models.settings import Settings
from tests.support import PgServer

THREADS = 20
ROUNDS = 15


def test_twenty_threads_of_mixed_crud_stay_isolated(
    pg_server: PgServer, head_template: str
) -> None:
    """20 threads of mixed CRUD as the app role: no pool timeout, no cross-user leak, every
    connection returned."""
    with pg_server.database(template=head_template) as name:
        app_role = replace(pg_server, user=APP_ROLE, password=None)
        engine = make_engine(app_role.url(name), Settings(), pool_timeout=10)
        foreign_ids: list[int] = []  # every task id created so far, by anyone

        def worker(n: int) -> list[str]:
            user, rng, problems = f"user-{n}", random.Random(n), []
            mine: list[int] = []
            for i in range(ROUNDS):
                with Session(engine) as session:
                    task = create_task(session, user, TaskCreate(title=f"{user} #{i}"))
                    assert task.id is not None
                    mine.append(task.id)
                    foreign_ids.append(task.id)
                    for seen in list_tasks(session, user, limit=100).tasks:
                        if seen.user_id != user:
                            problems.append(f"{user} listed {seen.user_id}'s task")
                    other = rng.choice(foreign_ids)
                    if other not in mine:
                        if get_task(session, user, other) is not None:
                            problems.append(f"{user} read task {other}")
                        if update(session, user, other, TaskUpdate(title="x")) is not None:
                            problems.append(f"{user} changed task {other}")
                        if delete_task(session, user, other):
                            problems.append(f"{user} deleted task {other}")
                    if i % 3 == 2:
                        assert delete_task(session, user, mine.pop(0))
            return problems

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(worker, range(THREADS)))
        assert [p for problems in results for p in problems] == []
        with Session(engine) as session:
            for n in range(THREADS):
                page = list_tasks(session, f"user-{n}", limit=100, with_count=True)
                assert len(page.tasks) == page.count == ROUNDS - ROUNDS // 3
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        engine.dispose()
