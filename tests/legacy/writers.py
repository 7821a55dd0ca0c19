"""Writers for the proofs and the benchmark of adoption: rows generated in one statement,
and threads that write without pause while an adoption runs."""

from __future__ import annotations

import random
import threading
import time

import psycopg


def generate(rows: int, *, phase3: bool = False) -> str:
    """INSERT ... SELECT generate_series: `rows` legacy tasks (with the Phase III columns)."""
    extra = (
        ", due_date, recurring, tags",
        ", CASE WHEN g % 5 = 0 THEN timestamp '2026-01-01' END, "
        "CASE WHEN g % 5 = 0 THEN 'weekly' ELSE 'none' END, "
        "CASE WHEN g % 7 = 0 THEN ARRAY['work', 'home'] ELSE '{}' END",
    )
    columns, values = extra if phase3 else ("", "")
    return (
        "INSERT INTO tasks (user_id, title, description, complete, priority, created_at, "
        f"updated_at{columns}) SELECT 'user ' || g % 1000, 'task ' || g, CASE WHEN g % 3 = 0 "
        "THEN NULL ELSE 'notes' END, g % 2 = 0, (ARRAY['low', 'medium', 'high'])[g % 3 + 1], "
        "timestamp '2025-01-01' + g * interval '1 minute', "
        f"timestamp '2025-01-01' + g * interval '1 minute'{values} "
        f"FROM generate_series(1, {rows}) g"
    )


class Writer(threading.Thread):
    """Inserts, updates and deletes tasks, `pause` apart (autocommit; statements valid on the
    legacy table and on the adopted one), recording what it did and how long each write took.

    Writer `seed` of `count` updates and deletes only the ids seed, seed + count, ... below
    `rows`, so no two writers touch the same row."""

    def __init__(
        self,
        dsn: str,
        seed: int,
        count: int,
        rows: int,
        stop: threading.Event,
        pause: float = 0.0,
    ) -> None:
        super().__init__()
        self.pause = pause  # seconds between two writes
        self.dsn, self.seed, self.count, self.rows, self.stop = dsn, seed, count, rows, stop
        self.rng = random.Random(seed)
        self.inserted: dict[int, str] = {}
        self.titled: dict[int, str] = {}
        self.deleted: set[int] = set()
        self.waits: list[tuple[float, float]] = []  # (end, seconds) of every write
        self.error: BaseException | None = None

    @property
    def longest(self) -> float:
        return max((seconds for _, seconds in self.waits), default=0.0)

    def run(self) -> None:
        try:
            # psycopg 3 told not to prepare statements, as psycopg2 (the app's driver) does
            # not: a statement prepared on the server before the swap fails once after it
            # when its result holds a column whose type changed (docs/adopting.md).
            with psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None) as conn:
                while not self.stop.is_set():
                    self.write(conn)
                    time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc

    def write(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        n, choice = len(self.waits), self.rng.random()
        start = time.perf_counter()
        if choice < 0.4:
            title = f"written {self.seed}/{n}"
            row = conn.execute(
                "INSERT INTO tasks (user_id, title, complete, created_at, updated_at) "
                "VALUES ('writer', %s, false, now(), now()) RETURNING id",
                (title,),
            ).fetchone()
            assert row is not None
            self.inserted[int(str(row[0]))] = title
        else:
            id_ = self.count * self.rng.randrange(1, self.rows // self.count) + self.seed
            if choice < 0.9:
                title = f"renamed {self.seed}/{n}"
                conn.execute("UPDATE tasks SET title = %s WHERE id = %s", (title, id_))
                if id_ not in self.deleted:
                    self.titled[id_] = title
            else:
                conn.execute("DELETE FROM tasks WHERE id = %s", (id_,))
                self.deleted.add(id_)
                self.titled.pop(id_, None)
        end = time.perf_counter()
        self.waits.append((end, end - start))
